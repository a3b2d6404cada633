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
  const kc = loadKubeConfig({ kubeconfigPath: api.writeKubeconfig(join(dir, 'kc')), env: {} });
  const { core, server } = makeClients(kc);
  assert.equal(server, api.url);
  const ns = await core.readNamespace({ name: 'default' });
  assert.equal(ns.metadata?.name, 'default');
  const conf = (await getJson(kc, '/.well-known/openid-configuration')) as { issuer: string };
  assert.equal(conf.issuer, api.issuer.issuer);
});

test('in a pod: the service account files and KUBERNETES_SERVICE_HOST/PORT from the given environment', async () => {
  const root = join(dir, 'pod');
  const env = api.writeInClusterFiles(root);
  for (const partial of [{}, { KUBERNETES_SERVICE_HOST: env['KUBERNETES_SERVICE_HOST'] }]) {
    assert.throws(
      () => loadKubeConfig({ inClusterRoot: root, env: partial }),
      (e) => isCastellanError(e, 'invalid-argument') && /--kubeconfig/.test(e.message),
      JSON.stringify(partial),
    );
  }
  const kc = loadKubeConfig({ inClusterRoot: root, env });
  const { core, server } = makeClients(kc);
  assert.equal(server, api.url);
  api.resetRequests();
  assert.equal((await core.readNamespace({ name: 'kube-system' })).metadata?.name, 'kube-system');
  assert.equal(api.count({ user: 'castellan-test' }), 1, "the pod's token was used");
});

test('in a pod with an IPv6 service address: the host is bracketed in the URL; a bad port is refused', () => {
  const root = join(dir, 'pod6');
  api.writeInClusterFiles(root);
  const kc = loadKubeConfig({
    inClusterRoot: root,
    env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
  });
  assert.equal(makeClients(kc).server, 'https://[fd00::1]:443');
  assert.throws(
    () =>
      loadKubeConfig({
        inClusterRoot: root,
        env: { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: 'https' },
      }),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message.startsWith('KUBERNETES_SERVICE_PORT') &&
      /not a port: "https"/.test(e.message),
  );
});

test('bad kubeconfigs are refused with the file named', () => {
  const bad = join(dir, 'bad');
  writeFileSync(bad, 'clusters: [ {');
  assert.throws(
    () => loadKubeConfig({ kubeconfigPath: bad, env: {} }),
    (e) => isCastellanError(e, 'malformed') && e.message.startsWith(bad),
  );
  // A file that is not there (or not a file) is a flag pointing nowhere, not bad content.
  assert.throws(
    () => loadKubeConfig({ kubeconfigPath: join(dir, 'missing'), env: {} }),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message.startsWith(join(dir, 'missing')) &&
      /cannot read kubeconfig: ENOENT/.test(e.message),
  );
  assert.throws(
    () => loadKubeConfig({ kubeconfigPath: dir, env: {} }),
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
