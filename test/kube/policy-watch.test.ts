// Kubernetes mode's policy inputs against the fake API server: AuthorizationPolicies created,
// changed and deleted through the API (CustomObjectsApi, real HTTP) recompute the bundles of
// the workloads they select and no others; Pods and Namespaces come and go.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import {
  startPolicyWatch,
  type PolicyWatch,
  type PolicyWatchChange,
} from '../../src/kube/policy-watch.js';
import { systemClock } from '../../src/clock.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { DEFAULT_MESH } from '../../src/policy/mesh.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';
import { kubeConfigFor } from './helpers.js';

let api: FakeApiServer;
let watch: PolicyWatch;
let custom: CustomObjectsApi;
let core: CoreV1Api;
const compiler = new PolicyCompiler(DEFAULT_MESH);
const changes: PolicyWatchChange[] = [];
/** Bundles the compiler published since the last `take()`, by workload key. */
let published: string[] = [];
compiler.onBundle((b) => published.push(`${b.workload.namespace}/${b.workload.name}`));

function pod(ns: string, name: string, app: string, sa = app) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: ns, name, labels: { app } },
    spec: {
      serviceAccountName: sa,
      containers: [{ name: 'app', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] }],
    },
  };
}

function authz(ns: string, name: string, app: string, methods: string[]) {
  return {
    apiVersion: 'security.istio.io/v1beta1',
    kind: 'AuthorizationPolicy',
    metadata: { namespace: ns, name },
    spec: {
      selector: { matchLabels: { app } },
      rules: [{ to: [{ operation: { methods } }] }],
    },
  };
}

const hashes = (): Map<string, string> =>
  new Map(compiler.allBundles().map((b) => [`${b.workload.namespace}/${b.workload.name}`, b.hash]));

/** Waits for the watch to report a change to this object, and returns it. */
async function changeOf(kind: string, ns: string, name: string, deleted = false) {
  return waitFor(`${kind} ${ns}/${name}${deleted ? ' deleted' : ''}`, () =>
    changes.find(
      (c) => c.kind === kind && c.namespace === ns && c.name === name && c.deleted === deleted,
    ),
  );
}

function take(): string[] {
  const out = [...published].sort();
  published = [];
  changes.length = 0;
  return out;
}

before(async () => {
  api = await FakeApiServer.start({ namespaces: ['istio-system', 'shop', 'blog'] });
  for (const [ns, name, app] of [
    ['shop', 'web-1', 'web'],
    ['shop', 'web-2', 'web'],
    ['shop', 'db-1', 'db'],
    ['blog', 'web-1', 'web'],
  ] as const) {
    api.putObject('pods', ns, pod(ns, name, app));
  }
  const kc = kubeConfigFor(api);
  custom = kc.makeApiClient(CustomObjectsApi);
  core = kc.makeApiClient(CoreV1Api);
  watch = await startPolicyWatch({
    kubeConfig: kc,
    compiler,
    clock: systemClock,
    retryMs: 50,
    onChange: (c) => changes.push(c),
  });
  await watch.synced;
});

after(async () => {
  await watch.stop();
  await api.stop();
});

test('the first list gives every pod a bundle; v1 is watched when both versions are served', () => {
  assert.deepEqual([...hashes().keys()].sort(), [
    'blog/web-1',
    'shop/db-1',
    'shop/web-1',
    'shop/web-2',
  ]);
  assert.deepEqual(watch.versions, {
    PeerAuthentication: 'v1',
    AuthorizationPolicy: 'v1',
    RequestAuthentication: 'v1',
  });
  const b = compiler.bundle('shop', 'web-1')!;
  assert.equal(b.workload.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
  take();
});

test('an AuthorizationPolicy created, changed, re-targeted and deleted through the API', async () => {
  const group = 'security.istio.io';
  const before = hashes();
  // Created as v1beta1: the server stores one object and the v1 watch sees it.
  await custom.createNamespacedCustomObject({
    group,
    version: 'v1beta1',
    namespace: 'shop',
    plural: 'authorizationpolicies',
    body: authz('shop', 'web-allow', 'web', ['GET']),
  });
  let c = await changeOf('AuthorizationPolicy', 'shop', 'web-allow');
  assert.equal(c.recomputed, 2, 'only the two shop web pods were recomputed');
  assert.deepEqual(take(), ['shop/web-1', 'shop/web-2']);
  const created = hashes();
  assert.notEqual(created.get('shop/web-1'), before.get('shop/web-1'));
  assert.equal(created.get('shop/db-1'), before.get('shop/db-1'));
  assert.equal(created.get('blog/web-1'), before.get('blog/web-1'), 'same labels, other namespace');

  // Changed: the same two.
  await custom.replaceNamespacedCustomObject({
    group,
    version: 'v1',
    namespace: 'shop',
    plural: 'authorizationpolicies',
    name: 'web-allow',
    body: {
      ...authz('shop', 'web-allow', 'web', ['GET', 'POST']),
      apiVersion: 'security.istio.io/v1',
      metadata: {
        namespace: 'shop',
        name: 'web-allow',
        resourceVersion: api.getObject(
          'authorizationpolicies.security.istio.io',
          'shop',
          'web-allow',
        )!.metadata.resourceVersion as string,
      },
    },
  });
  c = await changeOf('AuthorizationPolicy', 'shop', 'web-allow');
  assert.equal(c.recomputed, 2);
  assert.deepEqual(take(), ['shop/web-1', 'shop/web-2']);
  assert.ok(JSON.stringify(compiler.bundle('shop', 'web-1')).includes('"POST"'));

  // Re-targeted to the db pod: the old selection (to drop it) and the new one.
  const current = api.getObject('authorizationpolicies.security.istio.io', 'shop', 'web-allow')!;
  await custom.replaceNamespacedCustomObject({
    group,
    version: 'v1',
    namespace: 'shop',
    plural: 'authorizationpolicies',
    name: 'web-allow',
    body: { ...authz('shop', 'web-allow', 'db', ['GET']), metadata: current.metadata },
  });
  c = await changeOf('AuthorizationPolicy', 'shop', 'web-allow');
  assert.equal(c.recomputed, 3);
  assert.deepEqual(take(), ['shop/db-1', 'shop/web-1', 'shop/web-2']);
  assert.equal(hashes().get('shop/web-1'), before.get('shop/web-1'), 'back to no policy');

  await custom.deleteNamespacedCustomObject({
    group,
    version: 'v1',
    namespace: 'shop',
    plural: 'authorizationpolicies',
    name: 'web-allow',
  });
  c = await changeOf('AuthorizationPolicy', 'shop', 'web-allow', true);
  assert.equal(c.recomputed, 1);
  assert.deepEqual(take(), ['shop/db-1']);
  assert.deepEqual(hashes(), before);
});

test('a PeerAuthentication in the root namespace recomputes every workload', async () => {
  await custom.createNamespacedCustomObject({
    group: 'security.istio.io',
    version: 'v1',
    namespace: 'istio-system',
    plural: 'peerauthentications',
    body: {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { namespace: 'istio-system', name: 'default' },
      spec: { mtls: { mode: 'STRICT' } },
    },
  });
  const c = await changeOf('PeerAuthentication', 'istio-system', 'default');
  assert.equal(c.recomputed, 4);
  assert.equal(take().length, 4);
  assert.ok(JSON.stringify(compiler.bundle('blog', 'web-1')).includes('STRICT'));
});

test('a RequestAuthentication reaches the bundles of the pods it selects (JWT rules for check)', async () => {
  await custom.createNamespacedCustomObject({
    group: 'security.istio.io',
    version: 'v1',
    namespace: 'shop',
    plural: 'requestauthentications',
    body: {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { namespace: 'shop', name: 'jwt' },
      spec: {
        selector: { matchLabels: { app: 'db' } },
        jwtRules: [{ issuer: 'https://issuer.example', spaceDelimitedClaims: ['roles'] }],
      },
    },
  });
  const c = await changeOf('RequestAuthentication', 'shop', 'jwt');
  assert.equal(c.recomputed, 1);
  assert.deepEqual(take(), ['shop/db-1']);
  const rules = compiler.bundle('shop', 'db-1')!.requestAuthentication.rules;
  assert.deepEqual(
    rules.map((r) => [r.policy, r.issuer, r.spaceDelimitedClaims]),
    [['shop/jwt', 'https://issuer.example', ['permission', 'roles', 'scope']]],
  );
  assert.deepEqual(compiler.bundle('shop', 'web-1')!.requestAuthentication.rules, []);
});

test('pods: a status-only update recomputes nothing; a new pod gets a bundle; deleted ones lose it', async () => {
  const cur = api.getObject('pods', 'shop', 'web-1')!;
  api.putObject('pods', 'shop', { ...cur, status: { phase: 'Running', podIP: '10.0.0.9' } });
  api.putObject('pods', 'shop', pod('shop', 'web-3', 'web'));
  await changeOf('Pod', 'shop', 'web-3');
  assert.equal(changes.filter((x) => x.name === 'web-1').length, 0, 'status change ignored');
  assert.deepEqual(take(), ['shop/web-3']);

  await core.deleteNamespacedPod({ namespace: 'shop', name: 'web-3' });
  await changeOf('Pod', 'shop', 'web-3', true);
  assert.equal(compiler.bundle('shop', 'web-3'), undefined);

  await core.deleteNamespace({ name: 'blog' });
  await changeOf('Namespace', 'blog', 'blog', true);
  assert.equal(compiler.bundle('blog', 'web-1'), undefined);
  assert.ok(compiler.bundle('shop', 'web-1'));
});

/**
 * A fresh API server holding pod shop/web-1 and policy shop/a selecting it, after `prepare`;
 * a watch on it with a fresh compiler, stopped (with the server) after `body`.
 */
async function withOwnServer(
  prepare: (server: FakeApiServer) => void,
  body: (server: FakeApiServer, w: PolicyWatch, c: PolicyCompiler) => Promise<void>,
): Promise<void> {
  const server = await FakeApiServer.start({ namespaces: ['istio-system', 'shop'] });
  try {
    prepare(server);
    server.putObject('pods', 'shop', pod('shop', 'web-1', 'web'));
    server.putObject(
      'authorizationpolicies.security.istio.io',
      'shop',
      authz('shop', 'a', 'web', ['GET']),
    );
    const c = new PolicyCompiler(DEFAULT_MESH);
    const w = await startPolicyWatch({
      kubeConfig: kubeConfigFor(server),
      compiler: c,
      clock: systemClock,
      retryMs: 50,
    });
    try {
      await body(server, w, c);
    } finally {
      await w.stop();
    }
  } finally {
    await server.stop();
  }
}

const policyApplied = (c: PolicyCompiler): boolean =>
  JSON.stringify(c.bundle('shop', 'web-1') ?? null).includes('shop/a');

test('v1beta1 is watched where the API server does not serve v1', async () => {
  await withOwnServer(
    // An Istio before 1.22 (no v1): the v1 list is not found.
    (old) =>
      old.failNext({ path: '/apis/security.istio.io/v1/authorizationpolicies', verb: 'list' }, 404),
    async (old, w, c) => {
      await w.synced;
      assert.deepEqual(w.versions, {
        PeerAuthentication: 'v1',
        AuthorizationPolicy: 'v1beta1',
        RequestAuthentication: 'v1',
      });
      await waitFor(
        'a v1beta1 watch',
        () =>
          old.count({
            path: '/apis/security.istio.io/v1beta1/authorizationpolicies',
            verb: 'watch',
          }) > 0,
      );
      await waitFor('policy applied', () => policyApplied(c));
    },
  );
});

test('without permission to list policies the watch still starts (and retries), pods still count', async () => {
  await withOwnServer(
    (locked) => locked.failNext({ group: 'security.istio.io', verb: 'list' }, 403, 2),
    async (_locked, w, c) => {
      assert.deepEqual(w.versions, {
        PeerAuthentication: 'v1',
        AuthorizationPolicy: 'v1',
        RequestAuthentication: 'v1',
      });
      await waitFor('policy applied after retry', () => policyApplied(c));
    },
  );
});
