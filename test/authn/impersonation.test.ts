// Ambient mode's decision (src/authn/impersonation.ts), held to istiod's:
// security/pkg/server/ca/node_auth.go, ClusterNodeAuthorizer.authenticateImpersonation (the
// checks, in their order) and security/pkg/server/ca/server.go, CreateCertificate (how the
// metadata is read). The pods are an in-memory ClusterPods; the Kubernetes index itself is tested
// against the fake API server in test/kube/pod-index.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Caller } from '../../src/authn/authenticator.js';
import {
  impersonationUnavailable,
  NodeAuthorizer,
  parseTrustedNodeAccounts,
  requestedImpersonation,
  type ClusterPods,
  type PodDirectory,
  type PodFacts,
} from '../../src/authn/impersonation.js';
import { isCastellanError } from '../../src/errors.js';

/** Pods as `namespace/name` → facts, plus which (ns/sa@node) have a running pod. */
function clusterPods(pods: Record<string, PodFacts>, running: readonly string[]): ClusterPods {
  return {
    pod: (ns, name) => pods[`${ns}/${name}`],
    runsOnNode: (ns, sa, node) => running.includes(`${ns}/${sa}@${node}`),
  };
}

const ZTUNNEL_POD: PodFacts = { uid: 'uid-z1', serviceAccount: 'ztunnel', nodeName: 'node-a' };
const local = clusterPods({ 'istio-system/ztunnel-a': ZTUNNEL_POD }, [
  'app/web@node-a',
  'istio-system/ztunnel@node-a',
  'app/db@node-b',
]);
const remote = clusterPods(
  { 'istio-system/ztunnel-r': { uid: 'uid-r', serviceAccount: 'ztunnel', nodeName: 'r-1' } },
  ['app/db@r-1'],
);

/** Records which clusters were asked for; an unknown one is refused as src/kube refuses it. */
function directory(): PodDirectory & { asked: (string | undefined)[] } {
  const asked: (string | undefined)[] = [];
  return {
    asked,
    cluster: (id) => {
      asked.push(id);
      if (id === undefined) return Promise.resolve(local);
      if (id === 'west') return Promise.resolve(remote);
      return Promise.reject(
        Object.assign(new Error(`unknown cluster "${id}"`), { kind: 'impersonation-refused' }),
      );
    },
  };
}

const ztunnel: Caller = {
  authenticator: 'token-review',
  namespace: 'istio-system',
  serviceAccount: 'ztunnel',
  subject: 'system:serviceaccount:istio-system:ztunnel',
  podName: 'ztunnel-a',
  podUid: 'uid-z1',
};

function authorizer(pods: PodDirectory = directory()): NodeAuthorizer {
  return new NodeAuthorizer({
    trustDomain: 'cluster.local',
    trustedNodeAccounts: parseTrustedNodeAccounts(['istio-system/ztunnel'], 'test'),
    pods,
  });
}

/** The refusal's reason (for the log and the audit line), asserting its kind. */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(isCastellanError(e, 'impersonation-refused'), String(e));
    return e.message;
  }
  assert.fail('expected a refusal');
}

test('node_auth.go: a trusted node account gets a workload with a pod on its node, exactly that identity', async () => {
  const grant = await authorizer().authorize(
    ztunnel,
    'spiffe://cluster.local/ns/app/sa/web',
    undefined,
  );
  assert.deepEqual(grant, { spiffeId: 'spiffe://cluster.local/ns/app/sa/web', node: 'node-a' });
});

test('node_auth.go: refused for a caller that is not a trusted node account, before anything is looked up', async () => {
  const pods = directory();
  const web: Caller = { ...ztunnel, namespace: 'app', serviceAccount: 'web', podName: 'web-1' };
  assert.equal(
    await refusal(
      authorizer(pods).authorize(web, 'spiffe://cluster.local/ns/app/sa/db', undefined),
    ),
    'caller app/web is not a trusted node account (allowed to impersonate)',
  );
  assert.deepEqual(pods.asked, [], 'no pod lookup for an untrusted caller');
});

test('node_auth.go: refused for an identity that does not parse, or is not ours', async () => {
  for (const bad of [
    'web',
    'spiffe://cluster.local/ns/app/sa/web/extra',
    'spiffe://cluster.local/ns/App/sa/web',
    'spiffe://cluster.local/sa/web/ns/app',
  ]) {
    assert.match(
      await refusal(authorizer().authorize(ztunnel, bad, undefined)),
      /^impersonated identity ".*" is not valid: /,
    );
  }
  // istiod's spiffe.ParseIdentity accepts any trust domain; we do not sign another's identities.
  assert.equal(
    await refusal(
      authorizer().authorize(ztunnel, 'spiffe://other.example/ns/app/sa/web', undefined),
    ),
    'impersonated identity "spiffe://other.example/ns/app/sa/web" is not in trust domain "cluster.local"',
  );
});

test('the trust domain is asked on every request: a mesh config change reaches the next one', async () => {
  let trustDomain = 'cluster.local';
  const a = new NodeAuthorizer({
    trustDomain: () => trustDomain,
    trustedNodeAccounts: parseTrustedNodeAccounts(['istio-system/ztunnel'], 'test'),
    pods: directory(),
  });
  const grant = await a.authorize(ztunnel, 'spiffe://cluster.local/ns/app/sa/web', undefined);
  assert.equal(grant.spiffeId, 'spiffe://cluster.local/ns/app/sa/web');
  trustDomain = 'new.example';
  assert.equal(
    await refusal(a.authorize(ztunnel, 'spiffe://cluster.local/ns/app/sa/web', undefined)),
    'impersonated identity "spiffe://cluster.local/ns/app/sa/web" is not in trust domain "new.example"',
  );
  const moved = await a.authorize(ztunnel, 'spiffe://new.example/ns/app/sa/web', undefined);
  assert.equal(moved.spiffeId, 'spiffe://new.example/ns/app/sa/web');
});

test("node_auth.go: the caller's pod must exist with the token's UID and service account", async () => {
  const unbound: Caller = { ...ztunnel, podName: undefined, podUid: undefined };
  assert.match(
    await refusal(
      authorizer().authorize(unbound, 'spiffe://cluster.local/ns/app/sa/web', undefined),
    ),
    /names no pod \(a pod-bound service account token is needed\)/,
  );
  const gone: Caller = { ...ztunnel, podName: 'ztunnel-old' };
  assert.equal(
    await refusal(authorizer().authorize(gone, 'spiffe://cluster.local/ns/app/sa/web', undefined)),
    'caller pod istio-system/ztunnel-old not found',
  );
  // The pod was re-created under the same name: the token still names the old one.
  const stale: Caller = { ...ztunnel, podUid: 'uid-before' };
  assert.equal(
    await refusal(authorizer().authorize(stale, 'spiffe://cluster.local/ns/app/sa/web', undefined)),
    "caller pod istio-system/ztunnel-a found, but its UID uid-z1 is not the token's uid-before",
  );
  const otherSa = directory();
  otherSa.cluster = () =>
    Promise.resolve(
      clusterPods({ 'istio-system/ztunnel-a': { ...ZTUNNEL_POD, serviceAccount: 'other' } }, []),
    );
  assert.match(
    await refusal(
      authorizer(otherSa).authorize(ztunnel, 'spiffe://cluster.local/ns/app/sa/web', undefined),
    ),
    /runs as service account other, not the token's ztunnel/,
  );
});

test("node_auth.go: refused when no pod of the requested service account is on the caller's node", async () => {
  assert.equal(
    await refusal(
      authorizer().authorize(ztunnel, 'spiffe://cluster.local/ns/app/sa/db', undefined),
    ),
    'no pod of service account app/db runs on node "node-a"',
  );
});

test('multi-cluster: the node check runs in the cluster the clusterid names; an unknown one is refused', async () => {
  const pods = directory();
  const west: Caller = { ...ztunnel, podName: 'ztunnel-r', podUid: 'uid-r' };
  const grant = await authorizer(pods).authorize(
    west,
    'spiffe://cluster.local/ns/app/sa/db',
    'west',
  );
  assert.deepEqual(grant, { spiffeId: 'spiffe://cluster.local/ns/app/sa/db', node: 'r-1' });
  // The same caller in this cluster: its pod is not here.
  assert.match(
    await refusal(
      authorizer(pods).authorize(west, 'spiffe://cluster.local/ns/app/sa/db', undefined),
    ),
    /caller pod istio-system\/ztunnel-r not found/,
  );
  await assert.rejects(
    authorizer(pods).authorize(west, 'spiffe://cluster.local/ns/app/sa/db', 'nowhere'),
    /unknown cluster "nowhere"/,
  );
  assert.deepEqual(pods.asked, ['west', undefined, 'nowhere']);
});

test('without a node authorizer every impersonation is refused with the reason given', async () => {
  assert.equal(
    await refusal(
      impersonationUnavailable('local mode').authorize(
        ztunnel,
        'spiffe://cluster.local/ns/app/sa/web',
        undefined,
      ),
    ),
    'local mode',
  );
  assert.throws(
    () =>
      new NodeAuthorizer({
        trustDomain: 'cluster.local',
        trustedNodeAccounts: [],
        pods: directory(),
      }),
    /at least one trusted node account/,
  );
});

test("server.go: the identity is metadata.fields.ImpersonatedIdentity's string value; empty or absent asks for none", () => {
  const struct = (fields: Record<string, unknown>) => ({ fields });
  assert.equal(
    requestedImpersonation(
      struct({
        ImpersonatedIdentity: {
          kind: 'stringValue',
          stringValue: 'spiffe://cluster.local/ns/a/sa/b',
        },
      }),
    ),
    'spiffe://cluster.local/ns/a/sa/b',
  );
  assert.equal(requestedImpersonation(null), undefined, 'no metadata');
  assert.equal(requestedImpersonation(struct({})), undefined);
  assert.equal(
    requestedImpersonation(struct({ Other: { kind: 'stringValue', stringValue: 'x' } })),
    undefined,
  );
  assert.equal(
    requestedImpersonation(
      struct({ ImpersonatedIdentity: { kind: 'stringValue', stringValue: '' } }),
    ),
    undefined,
    "istiod: GetStringValue() == '' is no impersonation",
  );
  // Named, but not as a string: refused rather than answered with the caller's own identity.
  assert.throws(
    () =>
      requestedImpersonation(
        struct({ ImpersonatedIdentity: { kind: 'numberValue', numberValue: 1 } }),
      ),
    (e) =>
      isCastellanError(e, 'impersonation-refused') &&
      /is a numberValue, not a string/.test(e.message),
  );
});

test("trusted node accounts: namespace/serviceaccount, istiod's format; anything else refused, naming the source", () => {
  assert.deepEqual(
    parseTrustedNodeAccounts(
      [' istio-system/ztunnel', 'kube-system/ztunnel', 'istio-system/ztunnel'],
      'X',
    ),
    [
      { namespace: 'istio-system', serviceAccount: 'ztunnel' },
      { namespace: 'kube-system', serviceAccount: 'ztunnel' },
    ],
  );
  for (const bad of ['ztunnel', 'a/b/c', '/ztunnel', 'istio-system/', '', 'Istio/ztunnel']) {
    assert.throws(
      () => parseTrustedNodeAccounts([bad], 'CA_TRUSTED_NODE_ACCOUNTS'),
      (e) =>
        isCastellanError(e, 'invalid-argument') &&
        e.message.startsWith(`CA_TRUSTED_NODE_ACCOUNTS: "${bad}"`),
      bad,
    );
  }
});
