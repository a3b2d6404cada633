// The bundle HTTPS listener's lifecycle: it follows the serving certificate while it listens,
// and lets go of it when it stops or never starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { ClientCertAuthenticator } from '../../src/authn/client-cert-authenticator.js';
import { isCastellanError } from '../../src/errors.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { DEFAULT_MESH } from '../../src/policy/mesh.js';
import { BundleHttpsServer } from '../../src/server/policy-bundle-https-server.js';
import type {
  ServingCertificateManager,
  ServingIdentity,
} from '../../src/server/serving-certificate.js';
import { istioSampleCerts } from '../support/paths.js';

const read = (f: string): string => readFileSync(join(istioSampleCerts, f), 'utf8');

/** The part of ServingCertificateManager the listener uses, counting its subscribers. */
function fakeServing() {
  const listeners = new Set<unknown>();
  const identity: ServingIdentity = {
    certChainPem: read('workload-bar-cert.pem'),
    keyPem: read('workload-bar-key.pem'),
    notAfter: new Date(Date.now() + 86_400_000),
    generation: 1,
  };
  const serving = {
    current: () => identity,
    addIdentityCertificateListener: (l: unknown) => void listeners.add(l),
    removeIdentityCertificateListener: (l: unknown) => void listeners.delete(l),
  };
  return { listeners, serving: serving as unknown as ServingCertificateManager };
}

function bundleServer(serving: ServingCertificateManager): BundleHttpsServer {
  return new BundleHttpsServer({
    serving,
    source: new PolicyCompiler(DEFAULT_MESH),
    authenticator: new ClientCertAuthenticator({
      trustDomain: 'trust-domain-foo',
      roots: () => [new X509Certificate(read('root-cert.pem'))],
    }),
    intermediates: () => [],
  });
}

test('a listener that started follows the serving certificate until closed', async () => {
  const { listeners, serving } = fakeServing();
  const server = bundleServer(serving);
  await server.listen({ host: '127.0.0.1', port: 0 });
  assert.equal(listeners.size, 1);
  await server.close();
  assert.equal(listeners.size, 0);
});

test('a listener that cannot bind (port taken) does not stay subscribed', async () => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as AddressInfo).port;
  try {
    const { listeners, serving } = fakeServing();
    const server = bundleServer(serving);
    await assert.rejects(server.listen({ host: '127.0.0.1', port }), (e: unknown) => {
      assert.ok(isCastellanError(e, 'internal'));
      assert.match(e.message, /cannot listen/);
      return true;
    });
    assert.equal(listeners.size, 0, 'the serving-certificate listener was released');
    await server.close();
  } finally {
    await new Promise<void>((r) => taken.close(() => r()));
  }
});
