// The fake API server is what every Kubernetes-mode test trusts: here it is held to the
// behaviour the real kube-apiserver shows to @kubernetes/client-node.
import { waitFor } from '../wait-for.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import {
  KubeConfig,
  CoreV1Api,
  CoordinationV1Api,
  AuthenticationV1Api,
  CustomObjectsApi,
  Watch,
  ListWatch,
  ApiException,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { FakeApiServer } from './index.js';

let api: FakeApiServer;
let dir: string;
let kc: KubeConfig;
let core: CoreV1Api;

before(async () => {
  api = await FakeApiServer.start({ namespaces: ['istio-system'], bookmarkIntervalMs: 50 });
  dir = mkdtempSync(join(tmpdir(), 'fake-apiserver-'));
  kc = new KubeConfig();
  kc.loadFromFile(api.writeKubeconfig(join(dir, 'kubeconfig')));
  core = kc.makeApiClient(CoreV1Api);
});

after(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function apiError(p: Promise<unknown>): Promise<{ code: number; reason: string }> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ApiException, `expected ApiException, got ${String(e)}`);
    // The generated client drops bodies of codes its spec does not list (401).
    if (e.body === undefined) return { code: e.code, reason: '' };
    const body = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as {
      kind: string;
      reason: string;
      code: number;
    };
    assert.equal(body.kind, 'Status');
    assert.equal(body.code, e.code);
    return { code: e.code, reason: body.reason };
  }
  assert.fail('expected the call to fail');
}

test('CRUD on secrets: create, get, list, 409 AlreadyExists, 409 Conflict, 404 NotFound', async () => {
  const created = await core.createNamespacedSecret({
    namespace: 'istio-system',
    body: { metadata: { name: 's1', labels: { app: 'x' } }, stringData: { 'a.txt': 'hello' } },
  });
  assert.equal(created.kind, 'Secret');
  assert.equal(created.type, 'Opaque');
  assert.equal(Buffer.from(created.data!['a.txt']!, 'base64').toString(), 'hello');
  assert.ok(created.metadata?.uid);
  const rv1 = Number(created.metadata.resourceVersion);
  assert.ok(rv1 > 0);

  const read = await core.readNamespacedSecret({ name: 's1', namespace: 'istio-system' });
  assert.deepEqual(read.data, created.data);

  const list = await core.listNamespacedSecret({
    namespace: 'istio-system',
    labelSelector: 'app=x',
  });
  assert.deepEqual(
    list.items.map((s) => s.metadata?.name),
    ['s1'],
  );
  assert.ok(Number(list.metadata?.resourceVersion) >= rv1);
  const none = await core.listNamespacedSecret({
    namespace: 'istio-system',
    labelSelector: 'app=y',
  });
  assert.equal(none.items.length, 0);

  assert.deepEqual(
    await apiError(
      core.createNamespacedSecret({
        namespace: 'istio-system',
        body: { metadata: { name: 's1' } },
      }),
    ),
    { code: 409, reason: 'AlreadyExists' },
  );

  const updated = await core.replaceNamespacedSecret({
    name: 's1',
    namespace: 'istio-system',
    // eslint-disable-next-line @typescript-eslint/no-misused-spread -- client-node's models are plain data; its API takes object literals (eslint.config.js)
    body: { ...read, data: { b: Buffer.from('2').toString('base64') } },
  });
  assert.ok(Number(updated.metadata?.resourceVersion) > rv1);
  // The same update again carries the old resourceVersion: someone else won.
  assert.deepEqual(
    await apiError(
      core.replaceNamespacedSecret({ name: 's1', namespace: 'istio-system', body: read }),
    ),
    { code: 409, reason: 'Conflict' },
  );

  await core.deleteNamespacedSecret({ name: 's1', namespace: 'istio-system' });
  assert.deepEqual(
    await apiError(core.readNamespacedSecret({ name: 's1', namespace: 'istio-system' })),
    { code: 404, reason: 'NotFound' },
  );
  assert.deepEqual(
    await apiError(
      core.createNamespacedSecret({ namespace: 'no-such-ns', body: { metadata: { name: 'x' } } }),
    ),
    { code: 404, reason: 'NotFound' },
  );
});

test('merge and JSON patches; a patch with a stale resourceVersion conflicts', async () => {
  const cm = await core.createNamespacedConfigMap({
    namespace: 'default',
    body: { metadata: { name: 'p1' }, data: { a: '1', b: '2' } },
  });
  const merged = await core.patchNamespacedConfigMap(
    { name: 'p1', namespace: 'default', body: { data: { a: null, c: '3' } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  assert.deepEqual(merged.data, { b: '2', c: '3' });
  const strategic = await core.patchNamespacedConfigMap(
    { name: 'p1', namespace: 'default', body: { metadata: { labels: { l: 'v' } } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
  );
  assert.deepEqual(strategic.metadata?.labels, { l: 'v' });
  assert.deepEqual(strategic.data, { b: '2', c: '3' });
  const json = await core.patchNamespacedConfigMap({
    name: 'p1',
    namespace: 'default',
    body: [{ op: 'replace', path: '/data/b', value: 'two' }],
  });
  assert.deepEqual(json.data, { b: 'two', c: '3' });
  assert.deepEqual(
    await apiError(
      core.patchNamespacedConfigMap(
        {
          name: 'p1',
          namespace: 'default',
          body: { metadata: { resourceVersion: cm.metadata?.resourceVersion }, data: { z: '1' } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    ),
    { code: 409, reason: 'Conflict' },
  );
});

test('an unknown bearer token gets 401; requests are counted per verb and resource', async () => {
  const bad = new KubeConfig();
  bad.loadFromString(api.kubeconfigYaml({ token: 'nope' }));
  const badCore = bad.makeApiClient(CoreV1Api);
  assert.equal((await apiError(badCore.listNamespace())).code, 401);

  api.resetRequests();
  await core.listNamespace();
  await core.readNamespace({ name: 'default' });
  await core.readNamespace({ name: 'default' });
  assert.equal(api.count({ verb: 'list', resource: 'namespaces' }), 1);
  assert.equal(api.count({ verb: 'get', resource: 'namespaces', name: 'default' }), 2);
  assert.equal(api.count(), 3);
});

test('Watch streams ADDED, MODIFIED, DELETED from a resourceVersion', async () => {
  const list = await core.listNamespacedConfigMap({ namespace: 'istio-system' });
  const events: string[] = [];
  let done: unknown = 'not yet';
  const req = await new Watch(kc).watch(
    '/api/v1/namespaces/istio-system/configmaps',
    { resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
    (type, obj: V1ConfigMap) => {
      if (type !== 'BOOKMARK') events.push(`${type} ${obj.metadata?.name} ${obj.data?.k ?? ''}`);
      else events.push('BOOKMARK');
    },
    (err) => {
      done = err;
    },
  );
  await core.createNamespacedConfigMap({
    namespace: 'istio-system',
    body: { metadata: { name: 'w1' }, data: { k: '1' } },
  });
  await core.createNamespacedConfigMap({
    namespace: 'default',
    body: { metadata: { name: 'elsewhere' } },
  });
  await core.patchNamespacedConfigMap(
    { name: 'w1', namespace: 'istio-system', body: { data: { k: '2' } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  await core.deleteNamespacedConfigMap({ name: 'w1', namespace: 'istio-system' });
  await waitFor('DELETED', () => (events.includes('DELETED w1 2') ? true : undefined));
  await waitFor('a bookmark', () => (events.includes('BOOKMARK') ? true : undefined));
  assert.deepEqual(
    events.filter((e) => e !== 'BOOKMARK'),
    ['ADDED w1 1', 'MODIFIED w1 2', 'DELETED w1 2'],
  );
  req.abort();
  await waitFor('done', () => (done !== 'not yet' ? true : undefined));
});

test('a watch from a compacted resourceVersion gets a 410 Expired ERROR event', async () => {
  const list = await core.listNamespacedConfigMap({ namespace: 'default' });
  await core.createNamespacedConfigMap({
    namespace: 'default',
    body: { metadata: { name: 'c410' } },
  });
  api.store.compact();
  const events: { type: string; obj: { code?: number; reason?: string } }[] = [];
  let finished = false;
  await new Watch(kc).watch(
    '/api/v1/namespaces/default/configmaps',
    { resourceVersion: list.metadata?.resourceVersion },
    (type, obj: { code?: number; reason?: string }) => events.push({ type, obj }),
    () => {
      finished = true;
    },
  );
  await waitFor('the watch to end', () => (finished ? true : undefined));
  assert.equal(events.length, 1);
  assert.equal(events[0]?.type, 'ERROR');
  assert.equal(events[0].obj.code, 410);
  assert.equal(events[0].obj.reason, 'Expired');
});

test('ListWatch (informer) follows changes and relists after 410', async () => {
  const ns = 'informer-ns';
  api.createNamespace(ns);
  const listFn = () => core.listNamespacedSecret({ namespace: ns });
  const lw = new ListWatch<V1Secret>(
    `/api/v1/namespaces/${ns}/secrets`,
    new Watch(kc),
    listFn,
    false,
  );
  const seen: string[] = [];
  lw.on('add', (s) => seen.push(`add ${s.metadata?.name}`));
  lw.on('update', (s) => seen.push(`update ${s.metadata?.name}`));
  lw.on('delete', (s) => seen.push(`delete ${s.metadata?.name}`));
  api.putObject('secrets', ns, { metadata: { name: 'before' } });
  await lw.start();
  await waitFor('initial list', () => (seen.includes('add before') ? true : undefined));
  await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'live' } } });
  await waitFor('add from watch', () => (seen.includes('add live') ? true : undefined));

  // A server-side close, then (in the same tick, before the client can re-watch) a change
  // and a compaction: the informer's resume gets 410, it relists and sees what it missed.
  const lists = api.count({ verb: 'list', resource: 'secrets', namespace: ns });
  api.endWatches();
  api.putObject('secrets', ns, { metadata: { name: 'missed' } });
  api.store.compact();
  await waitFor('the missed object', () => (seen.includes('add missed') ? true : undefined));
  await waitFor('the re-watch', () => (api.openWatches > 0 ? true : undefined));
  api.endWatches();
  api.deleteObject('secrets', ns, 'before');
  api.store.compact();
  await waitFor('delete after relist', () => (seen.includes('delete before') ? true : undefined));
  assert.ok(
    api.count({ verb: 'list', resource: 'secrets', namespace: ns }) > lists,
    `lists ${lists} -> ${api.count({ verb: 'list', resource: 'secrets', namespace: ns })} ${JSON.stringify(api.requests.filter((r) => r.resource === 'secrets').map((r) => r.verb + ' ' + r.query.toString()))}`,
  );
  await lw.stop();
});

test('TokenReview verifies the tokens the issuer signs: user, groups, pod extras, audiences, expiry', async () => {
  let now = Date.now();
  const local = await FakeApiServer.start({ now: () => now });
  try {
    const lkc = new KubeConfig();
    lkc.loadFromString(local.kubeconfigYaml());
    const authn = lkc.makeApiClient(AuthenticationV1Api);
    const token = await local.issuer.issueToken({
      namespace: 'foo',
      serviceAccount: 'bar',
      audiences: ['istio-ca'],
      expiresInSeconds: 600,
      pod: { name: 'pod-1', uid: 'uid-1' },
    });
    const ok = await authn.createTokenReview({
      body: { spec: { token, audiences: ['istio-ca'] } },
    });
    assert.equal(ok.status?.authenticated, true);
    assert.equal(ok.status.user?.username, 'system:serviceaccount:foo:bar');
    assert.ok(ok.status.user.groups?.includes('system:serviceaccounts'));
    assert.deepEqual(ok.status.user.extra?.['authentication.kubernetes.io/pod-name'], ['pod-1']);
    assert.deepEqual(ok.status.audiences, ['istio-ca']);

    const wrongAud = await authn.createTokenReview({
      body: { spec: { token, audiences: ['other'] } },
    });
    assert.notEqual(wrongAud.status?.authenticated, true);
    assert.match(wrongAud.status?.error ?? '', /audiences/);

    now += 601_000;
    const expired = await authn.createTokenReview({
      body: { spec: { token, audiences: ['istio-ca'] } },
    });
    assert.notEqual(expired.status?.authenticated, true);
    assert.match(expired.status?.error ?? '', /expired/);

    local.setTokenReviewHandler(({ token: t }) =>
      t === 'magic'
        ? { authenticated: true, user: { username: 'system:serviceaccount:a:b' } }
        : undefined,
    );
    const magic = await authn.createTokenReview({ body: { spec: { token: 'magic' } } });
    assert.equal(magic.status?.user?.username, 'system:serviceaccount:a:b');
    const garbage = await authn.createTokenReview({ body: { spec: { token: 'garbage' } } });
    assert.notEqual(garbage.status?.authenticated, true);
    assert.equal(local.count({ verb: 'create', resource: 'tokenreviews' }), 5);
  } finally {
    await local.stop();
  }
});

test('service account issuer discovery: openid-configuration and a JWKS that verifies issued tokens', async () => {
  const headers = { authorization: `Bearer ${api.token}` };
  // Node's fetch cannot take a CA: go through the https module with the fake's CA.
  const { request } = await import('node:https');
  const get = (path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request(`${api.url}${path}`, { ca: api.caPem, headers }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  const conf = JSON.parse((await get('/.well-known/openid-configuration')).body) as {
    issuer: string;
    jwks_uri: string;
  };
  assert.equal(conf.issuer, 'https://kubernetes.default.svc.cluster.local');
  assert.equal(new URL(conf.jwks_uri).pathname, '/openid/v1/jwks');
  const jwks = JSON.parse((await get(new URL(conf.jwks_uri).pathname)).body) as {
    keys: { kid: string }[];
  };
  const token = await api.issuer.issueToken({ namespace: 'ns', serviceAccount: 'sa' });
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks as never), {
    issuer: conf.issuer,
  });
  assert.equal(payload.sub, 'system:serviceaccount:ns:sa');
  // A rotated key no longer verifies old tokens unless kept.
  await api.issuer.rotateKey(false);
  const jwks2 = JSON.parse((await get('/openid/v1/jwks')).body) as { keys: { kid: string }[] };
  assert.notEqual(jwks2.keys[0]?.kid, jwks.keys[0]?.kid);
});

test('stop() cuts the server off; start() brings it back on the same port with its state', async () => {
  const local = await FakeApiServer.start();
  try {
    const lkc = new KubeConfig();
    lkc.loadFromString(local.kubeconfigYaml());
    const lcore = lkc.makeApiClient(CoreV1Api);
    await lcore.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'kept' } },
    });
    const port = local.port;
    let watchEnded = false;
    await new Watch(lkc).watch(
      '/api/v1/namespaces/default/configmaps',
      {},
      () => {},
      () => {
        watchEnded = true;
      },
    );
    await local.stop();
    await waitFor('the watch to be cut', () => (watchEnded ? true : undefined));
    await assert.rejects(lcore.readNamespacedConfigMap({ name: 'kept', namespace: 'default' }));
    await local.start();
    assert.equal(local.port, port);
    const cm = await lcore.readNamespacedConfigMap({ name: 'kept', namespace: 'default' });
    assert.equal(cm.metadata?.name, 'kept');
  } finally {
    await local.stop();
  }
});

test('leases, events, and security.istio.io objects served in v1 and v1beta1', async () => {
  const coord = kc.makeApiClient(CoordinationV1Api);
  const lease = await coord.createNamespacedLease({
    namespace: 'istio-system',
    body: {
      metadata: { name: 'castellan-leader' },
      spec: { holderIdentity: 'a', leaseDurationSeconds: 15 },
    },
  });
  assert.equal(lease.spec?.holderIdentity, 'a');
  assert.equal(lease.kind, 'Lease');
  assert.equal(lease.apiVersion, 'coordination.k8s.io/v1');

  const ev = await core.createNamespacedEvent({
    namespace: 'istio-system',
    body: {
      metadata: { generateName: 'cacerts.' },
      involvedObject: { kind: 'Secret', name: 'cacerts', namespace: 'istio-system' },
      reason: 'CALoadFailed',
      message: 'm',
      type: 'Warning',
    },
  });
  assert.match(ev.metadata.name ?? '', /^cacerts\./);

  const custom = kc.makeApiClient(CustomObjectsApi);
  await custom.createNamespacedCustomObject({
    group: 'security.istio.io',
    version: 'v1',
    namespace: 'default',
    plural: 'peerauthentications',
    body: {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'default' },
      spec: { mtls: { mode: 'STRICT' } },
    },
  });
  const beta = (await custom.getNamespacedCustomObject({
    group: 'security.istio.io',
    version: 'v1beta1',
    namespace: 'default',
    plural: 'peerauthentications',
    name: 'default',
  })) as { apiVersion: string; spec: unknown };
  assert.equal(beta.apiVersion, 'security.istio.io/v1beta1');
  assert.deepEqual(beta.spec, { mtls: { mode: 'STRICT' } });
  const list = (await custom.listNamespacedCustomObject({
    group: 'security.istio.io',
    version: 'v1',
    namespace: 'default',
    plural: 'peerauthentications',
  })) as { items: { kind: string }[] };
  assert.equal(list.items[0]?.kind, 'PeerAuthentication');
});

test('deleting a namespace deletes what it holds; in-cluster files load with loadFromCluster', async () => {
  api.createNamespace('doomed');
  api.putObject('configmaps', 'doomed', { metadata: { name: 'x' } });
  await core.deleteNamespace({ name: 'doomed' });
  assert.equal(api.getObject('configmaps', 'doomed', 'x'), undefined);

  const root = join(dir, 'pod');
  const env = api.writeInClusterFiles(root);
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const ikc = new KubeConfig();
    ikc.loadFromCluster(root);
    const ns = await ikc.makeApiClient(CoreV1Api).readNamespace({ name: 'istio-system' });
    assert.equal(ns.status?.phase, 'Active');
  } finally {
    process.env.KUBERNETES_SERVICE_HOST = saved.KUBERNETES_SERVICE_HOST;
    process.env.KUBERNETES_SERVICE_PORT = saved.KUBERNETES_SERVICE_PORT;
    if (saved.KUBERNETES_SERVICE_HOST === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    if (saved.KUBERNETES_SERVICE_PORT === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
  }
});

test('discovery and server-side tables, as kubectl reads them', async () => {
  const get = (path: string, accept = 'application/json'): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${api.url}${path}`,
        { ca: api.caPem, headers: { Accept: accept, Authorization: `Bearer ${api.token}` } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            assert.equal(res.statusCode, 200, path);
            resolve(JSON.parse(text) as Record<string, unknown>);
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  assert.deepEqual((await get('/api'))['versions'], ['v1']);
  const groups = (await get('/apis'))['groups'] as { name: string; preferredVersion: unknown }[];
  const security = groups.find((g) => g.name === 'security.istio.io');
  assert.deepEqual(security?.preferredVersion, {
    groupVersion: 'security.istio.io/v1',
    version: 'v1',
  });
  const core = (await get('/api/v1'))['resources'] as {
    name: string;
    namespaced: boolean;
    shortNames?: string[];
  }[];
  assert.deepEqual(
    core.find((r) => r.name === 'configmaps'),
    {
      name: 'configmaps',
      singularName: 'configmap',
      namespaced: true,
      kind: 'ConfigMap',
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
      shortNames: ['cm'],
    },
  );
  const reviews = (await get('/apis/authentication.k8s.io/v1'))['resources'] as {
    verbs: string[];
  }[];
  assert.deepEqual(reviews[0]?.verbs, ['create']);

  api.putObject('secrets', 'istio-system', {
    metadata: { name: 'tabled' },
    data: { a: 'YQ==', b: 'Yg==' },
  });
  const table = await get(
    '/api/v1/namespaces/istio-system/secrets/tabled',
    'application/json;as=Table;v=v1;g=meta.k8s.io,application/json',
  );
  assert.equal(table['kind'], 'Table');
  assert.deepEqual(
    (table['columnDefinitions'] as { name: string }[]).map((c) => c.name),
    ['Name', 'Type', 'Data', 'Age'],
  );
  const row = (table['rows'] as { cells: unknown[]; object: { kind: string } }[])[0];
  assert.deepEqual(row?.cells.slice(0, 3), ['tabled', 'Opaque', 2]);
  assert.match(String(row.cells[3]), /^\d+s$/);
  assert.equal(row.object.kind, 'PartialObjectMetadata');
  // Without as=Table: the object itself.
  assert.equal((await get('/api/v1/namespaces/istio-system/secrets/tabled'))['kind'], 'Secret');
});
