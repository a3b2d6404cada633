// Ambient mode end to end: the real `castellan serve --kube` (spawned, compiled: npx tsc -p
// tsconfig.json first) against the in-process fake API server, asked as ztunnel asks
// (src/identity/caclient.rs: its own pod-bound token, `clusterid`, and the workload named in
// metadata.ImpersonatedIdentity). Held to istiod's security/pkg/server/ca/server.go
// (CreateCertificate) and node_auth.go (authenticateImpersonation). Every refusal is checked for
// its code and istiod's exact message, the authentication-failure metric, no certificate
// (the issuance counter does not move) and the precise reason in the audit line.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { isCastellanError } from '../../src/errors.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { cliPath } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import {
  caClient,
  opensslCsr,
  opensslUris,
  opensslVerify,
  type CaClient,
} from '../server/support/client.js';
import { runCli, startServe, type ServeProcess } from '../server/support/serve-process.js';

const NS = 'istio-system';
const TD = 'cluster.local';
const REFUSED = 'request impersonation authentication failure';
const id = (ns: string, sa: string): string => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

let api: FakeApiServer;
let west: FakeApiServer;
let dir: string;
let csr: string;
/**
 * --trusted-node-account istio-system/ztunnel, the west cluster by --remote-kubeconfig, and
 * --jwt-offline (a local token is then authenticated whatever cluster the request names).
 */
let ambient: ServeProcess;
/** Kubernetes mode without trusted node accounts. */
let plain: ServeProcess;
/** Local mode (no --kube). */
let local: ServeProcess;
const procs: ServeProcess[] = [];
const clients: CaClient[] = [];
/** Pod UIDs by namespace/name, as the API servers assigned them. */
const uids = new Map<string, string>();

function putPod(
  server: FakeApiServer,
  ns: string,
  name: string,
  serviceAccount: string,
  nodeName: string,
  phase = 'Running',
): string {
  const pod = server.putObject('pods', ns, {
    metadata: { name },
    spec: { serviceAccountName: serviceAccount, nodeName, containers: [{ name: 'c', image: 'i' }] },
    status: { phase },
  });
  uids.set(`${ns}/${name}`, pod.metadata.uid as string);
  return pod.metadata.uid as string;
}

/** ztunnel's token: its own service account, bound to its pod (projected, audience istio-ca). */
function podToken(
  server: FakeApiServer,
  ns: string,
  serviceAccount: string,
  pod: string,
  uid = uids.get(`${ns}/${pod}`)!,
): Promise<string> {
  return server.issuer.issueToken({
    namespace: ns,
    serviceAccount,
    audiences: ['istio-ca'],
    pod: { name: pod, uid },
  });
}

before(async () => {
  [api, west] = await Promise.all([
    FakeApiServer.start({ namespaces: [NS, 'app'] }),
    FakeApiServer.start({ namespaces: [NS, 'app'] }),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'castellan-ambient-'));
  csr = opensslCsr('ec').csrPem;
  // Node a: ztunnel-a, web, and a batch pod that failed. Node b: ztunnel-b and db.
  putPod(api, NS, 'ztunnel-a', 'ztunnel', 'node-a');
  putPod(api, 'app', 'web-1', 'web', 'node-a');
  putPod(api, 'app', 'batch-1', 'batch', 'node-a', 'Failed');
  putPod(api, NS, 'ztunnel-b', 'ztunnel', 'node-b');
  putPod(api, 'app', 'db-1', 'db', 'node-b');
  // A ztunnel pod re-created under the same name: tokens bound to the first one are stale.
  uids.set('stale', putPod(api, NS, 'ztunnel-c', 'ztunnel', 'node-c'));
  api.deleteObject('pods', NS, 'ztunnel-c');
  putPod(api, NS, 'ztunnel-c', 'ztunnel', 'node-c');
  putPod(api, 'app', 'web-c', 'web', 'node-c');
  // The west cluster: its own ztunnel and db on node w-1.
  putPod(west, NS, 'ztunnel-w', 'ztunnel', 'w-1');
  putPod(west, 'app', 'db-w', 'db', 'w-1');

  const kube = (name: string): string[] => [
    '--kube',
    '--kubeconfig',
    api.writeKubeconfig(join(dir, `kubeconfig-${name}`)),
    '--data-dir',
    mkdtempSync(join(dir, `data-${name}-`)),
    '--log-level',
    'info',
  ];
  [ambient, plain, local] = await Promise.all([
    startServe([
      ...kube('ambient'),
      '--trusted-node-account',
      `${NS}/ztunnel`,
      '--jwt-offline',
      '--remote-kubeconfig',
      `west=${west.writeKubeconfig(join(dir, 'kubeconfig-west'))}`,
    ]),
    startServe(kube('plain')),
    startServe(['--data-dir', join(dir, 'local'), '--log-level', 'info']),
  ]);
  procs.push(ambient, plain, local);
});
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(procs.map((p) => p.stop()));
  await Promise.all([api.stop(), west.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

const kubeRoot = (): string =>
  Buffer.from(
    (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
      'root-cert.pem'
    ]!,
    'base64',
  ).toString();

function clientFor(p: ServeProcess): CaClient {
  const root = p === local ? readFileSync(join(dir, 'local', 'root-cert.pem'), 'utf8') : kubeRoot();
  const c = caClient(`127.0.0.1:${p.grpcPort}`, root);
  clients.push(c);
  return c;
}

/** CreateCertificate as ztunnel sends it: bearer token, clusterid, metadata.ImpersonatedIdentity. */
function askAs(
  client: CaClient,
  token: string,
  impersonate: string | undefined,
  clusterId = 'Kubernetes',
): Promise<string[]> {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('clusterid', clusterId);
  const request = {
    csr,
    validityDuration: 3600,
    ...(impersonate !== undefined
      ? { metadata: { fields: { ImpersonatedIdentity: { stringValue: impersonate } } } }
      : {}),
  };
  return new Promise((resolve, reject) =>
    client.CreateCertificate(request, md, (err, res) =>
      err ? reject(err) : resolve(res?.certChain ?? []),
    ),
  );
}

interface Counters {
  authnFailures: number;
  issued: number;
}

async function counters(p: ServeProcess): Promise<Counters> {
  const body = await (await fetch(`http://127.0.0.1:${p.monitoringPort}/metrics`)).text();
  const value = (name: string): number => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(body);
    assert.ok(m, `${name} in /metrics`);
    return Number(m[1]);
  };
  return {
    authnFailures: value('citadel_server_authentication_failure_count'),
    issued: value('citadel_server_success_cert_issuance_count'),
  };
}

/** The audit lines (`"audit":"csr"`) the server has written so far. */
function auditLines(p: ServeProcess): Record<string, unknown>[] {
  return p
    .stderr()
    .split('\n')
    .filter((l) => l.includes('"audit":"csr"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * Asks, expects istiod's refusal, and checks the metric, that nothing was issued and the audit
 * line's precise reason. Returns that line.
 */
async function expectRefused(
  p: ServeProcess,
  ask: () => Promise<string[]>,
  reason: RegExp,
): Promise<Record<string, unknown>> {
  const before = await counters(p);
  const seen = auditLines(p).length;
  const err = (await ask().then(
    (chain) =>
      assert.fail(`expected a refusal, got a certificate for ${opensslUris(chain[0]!).join(',')}`),
    (e: unknown) => e,
  )) as grpc.ServiceError;
  assert.equal(err.code, grpc.status.UNAUTHENTICATED, `${grpc.status[err.code]}: ${err.details}`);
  assert.equal(err.details, REFUSED);
  const after = await counters(p);
  assert.equal(
    after.authnFailures,
    before.authnFailures + 1,
    'counted as an authentication failure',
  );
  assert.equal(after.issued, before.issued, 'no certificate issued');
  const line = await waitFor('the audit line', () => auditLines(p).slice(seen)[0]);
  assert.equal(line['outcome'], 'refused');
  assert.equal(line['code'], 'UNAUTHENTICATED');
  assert.equal(line['serial'], undefined);
  assert.match(String(line['reason']), reason);
  return line;
}

describe('castellan serve --kube --trusted-node-account istio-system/ztunnel', () => {
  let client: CaClient;
  before(() => {
    client = clientFor(ambient);
  });

  test('allowed: ztunnel gets exactly the identity of a pod on its node; the audit line names both sides', async () => {
    const token = await podToken(api, NS, 'ztunnel', 'ztunnel-a');
    const before = await counters(ambient);
    const chain = await askAs(client, token, id('app', 'web'));
    assert.deepEqual(opensslUris(chain[0]!), [id('app', 'web')], 'the SAN ztunnel checks');
    opensslVerify(chain, kubeRoot());
    assert.equal((await counters(ambient)).issued, before.issued + 1);
    const line = await waitFor('the audit line', () =>
      auditLines(ambient).find(
        (l) => l['outcome'] === 'issued' && l['spiffeId'] === id('app', 'web'),
      ),
    );
    assert.equal(line['subject'], 'system:serviceaccount:istio-system:ztunnel');
    assert.deepEqual(line['impersonation'], {
      requested: id('app', 'web'),
      caller: id(NS, 'ztunnel'),
      pod: `${NS}/ztunnel-a`,
      node: 'node-a',
      cluster: 'Kubernetes',
    });
    // Without metadata, the same token still gets ztunnel's own identity.
    const own = await askAs(client, token, undefined);
    assert.deepEqual(opensslUris(own[0]!), [id(NS, 'ztunnel')]);
  });

  test('refused for a workload whose only pod runs on another node', async () => {
    const token = await podToken(api, NS, 'ztunnel', 'ztunnel-a');
    const line = await expectRefused(
      ambient,
      () => askAs(client, token, id('app', 'db')),
      /^impersonation-refused: no pod of service account app\/db runs on node "node-a" in cluster "Kubernetes"$/,
    );
    assert.equal(line['spiffeId'], undefined, 'nothing issued, not even the caller');
    assert.deepEqual(line['impersonation'], {
      requested: id('app', 'db'),
      caller: id(NS, 'ztunnel'),
      pod: `${NS}/ztunnel-a`,
      cluster: 'Kubernetes',
    });
  });

  test('refused for a workload whose pod on the node is in phase Failed', async () => {
    const token = await podToken(api, NS, 'ztunnel', 'ztunnel-a');
    await expectRefused(
      ambient,
      () => askAs(client, token, id('app', 'batch')),
      /no pod of service account app\/batch runs on node "node-a"/,
    );
  });

  test('refused for a caller that is not a trusted node account', async () => {
    const token = await podToken(api, 'app', 'web', 'web-1');
    await expectRefused(
      ambient,
      () => askAs(client, token, id('app', 'web')),
      /caller app\/web is not a trusted node account/,
    );
  });

  test('refused for a token of a pod since re-created (its UID no longer matches); a fresh token works', async () => {
    const stale = await podToken(api, NS, 'ztunnel', 'ztunnel-c', uids.get('stale'));
    await expectRefused(
      ambient,
      () => askAs(client, stale, id('app', 'web')),
      new RegExp(
        `caller pod ${NS}/ztunnel-c found in cluster "Kubernetes", but its UID \\S+ is not the token's ${uids.get('stale')}`,
      ),
    );
    const fresh = await podToken(api, NS, 'ztunnel', 'ztunnel-c');
    const chain = await askAs(client, fresh, id('app', 'web'));
    assert.deepEqual(opensslUris(chain[0]!), [id('app', 'web')]);
  });

  test('refused for a malformed identity and for one of another trust domain', async () => {
    const token = await podToken(api, NS, 'ztunnel', 'ztunnel-a');
    await expectRefused(
      ambient,
      () => askAs(client, token, 'app/web'),
      /impersonated identity "app\/web" is not valid/,
    );
    await expectRefused(
      ambient,
      () => askAs(client, token, 'spiffe://other.example/ns/app/sa/web'),
      /is not in trust domain "cluster\.local"/,
    );
  });

  test('multi-cluster: the node check runs in the cluster the clusterid names; an unknown cluster is refused', async () => {
    const westToken = await podToken(west, NS, 'ztunnel', 'ztunnel-w');
    const chain = await askAs(client, westToken, id('app', 'db'), 'west');
    assert.deepEqual(opensslUris(chain[0]!), [id('app', 'db')]);
    // A local token, authenticated offline, naming a cluster we have no kubeconfig for.
    const token = await podToken(api, NS, 'ztunnel', 'ztunnel-a');
    const line = await expectRefused(
      ambient,
      () => askAs(client, token, id('app', 'web'), 'nowhere'),
      /unknown cluster "nowhere": no kubeconfig for it/,
    );
    assert.equal((line['impersonation'] as Record<string, unknown>)['cluster'], 'nowhere');
  });
});

test('Kubernetes mode without trusted node accounts: impersonation is refused', async () => {
  const token = await podToken(api, NS, 'ztunnel', 'ztunnel-a');
  await expectRefused(
    plain,
    () => askAs(clientFor(plain), token, id('app', 'web')),
    /impersonation is not enabled: no trusted node accounts/,
  );
});

test('local mode: impersonation is always refused', async () => {
  const token = execFileSync(
    process.execPath,
    [
      cliPath,
      'token',
      '--namespace',
      NS,
      '--service-account',
      'ztunnel',
      '--data-dir',
      join(dir, 'local'),
    ],
    { encoding: 'utf8' },
  ).trim();
  await expectRefused(
    local,
    () => askAs(clientFor(local), token, id('app', 'web')),
    /impersonation is not enabled/,
  );
});

test("trusted node accounts: the flag (repeatable) or istiod's CA_TRUSTED_NODE_ACCOUNTS; bad entries and local mode refused", async () => {
  const parse = (raw: ServeFlags, env: NodeJS.ProcessEnv = {}) =>
    completeServeOptions(raw, env).kube?.trustedNodeAccounts;
  assert.deepEqual(parse({ kube: true }), []);
  assert.deepEqual(
    parse({ kube: true }, { CA_TRUSTED_NODE_ACCOUNTS: 'istio-system/ztunnel,kube-system/ztunnel' }),
    [
      { namespace: 'istio-system', serviceAccount: 'ztunnel' },
      { namespace: 'kube-system', serviceAccount: 'ztunnel' },
    ],
  );
  assert.deepEqual(
    parse(
      { kube: true, trustedNodeAccount: ['ambient/ztunnel'] },
      { CA_TRUSTED_NODE_ACCOUNTS: 'istio-system/ztunnel' },
    ),
    [{ namespace: 'ambient', serviceAccount: 'ztunnel' }],
    'the flag wins',
  );
  assert.throws(
    () => parse({ kube: true }, { CA_TRUSTED_NODE_ACCOUNTS: 'istio-system/ztunnel,ztunnel' }),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message.startsWith('CA_TRUSTED_NODE_ACCOUNTS: "ztunnel"'),
  );
  assert.throws(
    () => parse({ trustedNodeAccount: ['istio-system/ztunnel'] }),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message === '--trusted-node-account: needs --kube',
  );
  const r = await runCli([
    'serve',
    '--trusted-node-account',
    'istio-system/ztunnel',
    '--data-dir',
    join(dir, 'never'),
  ]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--trusted-node-account: needs --kube/);
});
