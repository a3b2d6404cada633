// The real `castellan serve --kube` (spawned, compiled) serving policy bundles fed from the fake
// API server: a workload's Watch gets the bundle of its pod and a new version when an
// AuthorizationPolicy changes in the API.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  policyBundleClient,
  type BundleUpdate,
  clientTls,
} from '../server/support/client.js';
import { startServe, type ServeProcess } from '../server/support/serve-process.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';

let api: FakeApiServer;
let dir: string;
let serve: ServeProcess;

const policy = (methods: string[]) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { namespace: 'app', name: 'web-allow' },
  spec: {
    selector: { matchLabels: { app: 'web' } },
    rules: [{ to: [{ operation: { methods } }] }],
  },
});

before(async () => {
  api = await FakeApiServer.start({ namespaces: ['istio-system', 'app'] });
  dir = mkdtempSync(join(tmpdir(), 'serve-kube-bundles-'));
  api.putObject('pods', 'app', {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: 'app', name: 'web-1', labels: { app: 'web' } },
    spec: { serviceAccountName: 'web', containers: [{ name: 'c', image: 'x' }] },
  });
  api.putObject('authorizationpolicies.security.istio.io', 'app', policy(['GET']));
  serve = await startServe([
    '--kube',
    '--kubeconfig',
    api.writeKubeconfig(join(dir, 'kubeconfig')),
    '--data-dir',
    join(dir, 'data'),
    '--log-level',
    'warn',
  ]);
});

after(async () => {
  await serve.stop();
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('Watch over the CA port: the pod bundle from the API, then a new version on change', async () => {
  const root = Buffer.from(
    (api.getObject('secrets', 'istio-system', SELF_SIGNED_SECRET)!.data as Record<string, string>)[
      'root-cert.pem'
    ]!,
    'base64',
  ).toString();
  const token = await api.issuer.issueToken({
    namespace: 'app',
    serviceAccount: 'web',
    audiences: ['istio-ca'],
  });
  const ca = caClient(`127.0.0.1:${serve.grpcPort}`, root);
  const { keyPem, csrPem } = opensslCsr('ec');
  const chain = await createCertificate(ca, { csr: csrPem }, token);
  ca.close();

  const target = `127.0.0.1:${serve.grpcPort}`;
  const client = policyBundleClient(
    target,
    clientTls(target, root, { keyPem, chainPem: chain.slice(0, -1).join('') }),
  );
  const stream = client.Watch({ namespace: 'app', pod: 'web-1' });
  const updates: BundleUpdate[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`updates: ${updates.length}`)), 15_000);
    stream.on('error', (e: ServiceError) => {
      clearTimeout(timer);
      if (e.code === status.CANCELLED) resolve();
      else reject(e);
    });
    stream.on('data', (u: BundleUpdate) => {
      updates.push(u);
      if (updates.length === 1) {
        api.putObject('authorizationpolicies.security.istio.io', 'app', policy(['GET', 'DELETE']));
      } else stream.cancel();
    });
  });
  client.close();
  assert.equal(updates.length, 2);
  assert.ok(updates[0]!.bundleJson.includes('app/web-allow'));
  assert.ok(!updates[0]!.bundleJson.includes('"DELETE"'));
  assert.ok(updates[1]!.bundleJson.includes('"DELETE"'));
  assert.notEqual(updates[0]!.hash, updates[1]!.hash);
});
