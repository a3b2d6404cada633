import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCastellanError } from '../../src/errors.js';
import {
  describeApiError,
  getJson,
  ifExists,
  isApiStatus,
  kubeConfigFromString,
  loadKubeConfig,
  makeClients,
} from '../../src/kube/client.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';

let api: FakeApiServer;
let dir: string;
before(async () => {
  api = await FakeApiServer.start();
  dir = mkdtempSync(join(tmpdir(), 'kube-client-'));
});
after(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('--kubeconfig PATH: clients reach the API server with its CA and token', async () => {
  const kc = loadKubeConfig({ kubeconfigPath: api.writeKubeconfig(join(dir, 'kc')) });
  const { core, server } = makeClients(kc);
  assert.equal(server, api.url);
  const ns = await core.readNamespace({ name: 'default' });
  assert.equal(ns.metadata?.name, 'default');
  const conf = (await getJson(kc, '/.well-known/openid-configuration')) as { issuer: string };
  assert.equal(conf.issuer, api.issuer.issuer);
});

test('in a pod: the service account files and KUBERNETES_SERVICE_HOST/PORT', async () => {
  const root = join(dir, 'pod');
  const env = api.writeInClusterFiles(root);
  const saved = {
    host: process.env.KUBERNETES_SERVICE_HOST,
    port: process.env.KUBERNETES_SERVICE_PORT,
  };
  const restore = (): void => {
    for (const [k, v] of [
      ['KUBERNETES_SERVICE_HOST', saved.host],
      ['KUBERNETES_SERVICE_PORT', saved.port],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  try {
    delete process.env.KUBERNETES_SERVICE_HOST;
    assert.throws(
      () => loadKubeConfig({ inClusterRoot: root }),
      (e) => isCastellanError(e, 'invalid-argument') && /--kubeconfig/.test(e.message),
    );
    Object.assign(process.env, env);
    const { core } = makeClients(loadKubeConfig({ inClusterRoot: root }));
    api.resetRequests();
    assert.equal((await core.readNamespace({ name: 'kube-system' })).metadata?.name, 'kube-system');
    assert.equal(api.count({ user: 'castellan-test' }), 1, "the pod's token was used");
  } finally {
    restore();
  }
});

test('bad kubeconfigs are refused with the file named', () => {
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'clusters: [ {');
  assert.throws(
    () => loadKubeConfig({ kubeconfigPath: bad }),
    (e) => isCastellanError(e, 'malformed') && e.message.startsWith(bad),
  );
  // A file that is not there (or not a file) is a flag pointing nowhere, not bad content.
  assert.throws(
    () => loadKubeConfig({ kubeconfigPath: join(dir, 'missing') }),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message.startsWith(join(dir, 'missing')) &&
      /cannot read kubeconfig: ENOENT/.test(e.message),
  );
  assert.throws(
    () => loadKubeConfig({ kubeconfigPath: dir }),
    (e) => isCastellanError(e, 'invalid-argument') && /EISDIR/.test(e.message),
  );
  assert.throws(
    () =>
      kubeConfigFromString('apiVersion: v1\nkind: Config\n', 'secret istio-system/remote key c2'),
    (e) =>
      isCastellanError(e, 'malformed') &&
      e.message.startsWith('secret istio-system/remote key c2') &&
      /no current cluster/.test(e.message),
  );
});

test('API errors: status codes and Status messages', async () => {
  const { core } = makeClients(kubeConfigFromString(api.kubeconfigYaml(), 'fake'));
  try {
    await core.readNamespacedSecret({ name: 'nope', namespace: 'default' });
    assert.fail('expected 404');
  } catch (e) {
    assert.ok(isApiStatus(e, 404));
    assert.ok(!isApiStatus(e, 409));
    assert.match(describeApiError(e), /^HTTP 404: secrets "nope" not found/);
  }
  api.failNext({ resource: 'namespaces', verb: 'get' }, 500);
  await assert.rejects(core.readNamespace({ name: 'default' }), (e) => isApiStatus(e, 500));
  assert.equal((await core.readNamespace({ name: 'default' })).metadata?.name, 'default');
  api.authorize = (r) => r.resource !== 'secrets';
  await assert.rejects(core.listNamespacedSecret({ namespace: 'default' }), (e) =>
    isApiStatus(e, 403),
  );
  api.authorize = undefined;
});

test('ifExists: the object, undefined on 404, any other failure thrown', async () => {
  const { core } = makeClients(kubeConfigFromString(api.kubeconfigYaml(), 'fake'));
  const read = (name: string) => () => core.readNamespace({ name });
  assert.equal((await ifExists(read('default')))?.metadata?.name, 'default');
  assert.equal(await ifExists(read('no-such-namespace')), undefined);
  api.failNext({ resource: 'namespaces', verb: 'get' }, 500);
  await assert.rejects(ifExists(read('default')), (e) => isApiStatus(e, 500));
});
