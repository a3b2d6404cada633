import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError, type ErrorKind } from '../../src/errors.js';
import { buildKeyCertBundle, type BundleInput } from '../../src/ca/build-key-cert-bundle.js';
import { istioSampleCerts } from '../support/paths.js';
import { openssl } from '../support/openssl.js';
import { HOUR, testCert, testIntermediate, testRoot, window } from '../pki/fixtures.js';

const sample = (f: string): string => readFileSync(join(istioSampleCerts, f), 'utf8');
const certsIn = (pem: string): string[] =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
const norm = (pem: string): string => pem.replace(/\s+/g, '');

function failure(input: BundleInput, clock = systemClock): { kind: ErrorKind; message: string } {
  try {
    buildKeyCertBundle(input, clock);
  } catch (e) {
    assert.ok(isCastellanError(e), String(e));
    return { kind: e.kind, message: e.message };
  }
  assert.fail('expected the bundle to be refused');
}

test("loads Istio's 2018 sample set (PKCS#1, non-critical CA flags, chain == cert)", () => {
  const b = buildKeyCertBundle(
    {
      certPem: sample('ca-cert.pem'),
      keyPem: sample('ca-key.pem'),
      chainPem: sample('cert-chain.pem'),
      rootPem: sample('root-cert.pem'),
      source: 'test',
    },
    systemClock,
  );
  assert.equal(b.signingKeyType, 'rsa-2048');
  assert.equal(b.certChain.length, 1);
  assert.equal(b.roots.length, 1);
  assert.deepEqual(b.responseChainPem.map(norm), [
    norm(sample('ca-cert.pem')),
    norm(sample('root-cert.pem')),
  ]);
  assert.equal(norm(b.rootBundlePem), norm(sample('root-cert.pem')));
  assert.ok(Object.isFrozen(b));
});

test('loads the alt set; the root in cert-chain-alt.pem is sent once, last', () => {
  const b = buildKeyCertBundle(
    {
      certPem: sample('ca-cert-alt.pem'),
      keyPem: sample('ca-key-alt.pem'),
      chainPem: sample('cert-chain-alt.pem'),
      rootPem: sample('root-cert-alt.pem'),
      source: 'test',
    },
    systemClock,
  );
  assert.equal(b.signingKeyType, 'rsa-4096');
  assert.equal(certsIn(sample('cert-chain-alt.pem')).length, 2);
  assert.equal(b.responseChainPem.length, 2);
  assert.deepEqual(b.responseChainPem.map(norm), [
    norm(sample('ca-cert-alt.pem')),
    norm(sample('root-cert-alt.pem')),
  ]);
});

test('multi-root bundles with duplicates: deduplicated, every root in ONE last element (server.go)', () => {
  const b = buildKeyCertBundle(
    {
      certPem: sample('ca-cert-alt.pem'),
      keyPem: sample('ca-key-alt.pem'),
      chainPem: sample('cert-chain-alt.pem'),
      rootPem: sample('root-cert-combined-2.pem'),
      source: 'test',
    },
    systemClock,
  );
  assert.equal(certsIn(sample('root-cert-combined-2.pem')).length, 3);
  assert.equal(b.roots.length, 2);
  // istiod's CreateCertificate layout: the chain one per element, then the roots as one string.
  assert.equal(b.responseChainPem.length, 2);
  assert.equal(norm(b.responseChainPem[0]!), norm(sample('ca-cert-alt.pem')));
  const last = b.responseChainPem[1]!;
  assert.equal(last, b.rootBundlePem);
  assert.deepEqual(
    certsIn(last).map(norm).sort(),
    certsIn(sample('root-cert-combined.pem')).map(norm).sort(),
  );
});

test('refuses ca-cert-alt-2.pem with ca-key-alt-2.pem: key-mismatch naming the key file', () => {
  const f = failure({
    certPem: sample('ca-cert-alt-2.pem'),
    keyPem: sample('ca-key-alt-2.pem'),
    chainPem: sample('cert-chain-alt-2.pem'),
    rootPem: sample('root-cert-alt.pem'),
    source: 'test',
    fileNames: { key: '/etc/cacerts/ca-key.pem' },
  });
  assert.equal(f.kind, 'key-mismatch');
  assert.match(f.message, /^\/etc\/cacerts\/ca-key\.pem: /);
});

test('refuses a CA whose chain does not reach the root', () => {
  const f = failure({
    certPem: sample('ca-cert-alt.pem'),
    keyPem: sample('ca-key-alt.pem'),
    chainPem: sample('cert-chain-alt.pem'),
    rootPem: sample('root-cert.pem'),
    source: 'test',
  });
  assert.equal(f.kind, 'chain-invalid');
  assert.match(f.message, /^cert-chain\.pem: /);
});

test('refuses an expired CA, a non-CA certificate, garbage, a weak or encrypted key', async () => {
  const now = Date.now();
  const root = await testRoot('ec-p256', window(now - 10 * HOUR, 1000));
  const inter = await testIntermediate(root, { window: window(now - 10 * HOUR, 5) });
  const expired = failure({
    certPem: inter.certPem,
    keyPem: inter.keyPem,
    rootPem: root.certPem,
    source: 't',
  });
  assert.equal(expired.kind, 'expired');
  assert.match(expired.message, /^ca-cert\.pem: /);
  const future = failure(
    { certPem: inter.certPem, keyPem: inter.keyPem, rootPem: root.certPem, source: 't' },
    new ManualClock(now - 20 * HOUR),
  );
  assert.equal(future.kind, 'not-yet-valid');

  const leaf = await testCert(root, { kind: 'serving', sans: ['ca.example'] });
  const notCa = failure({
    certPem: leaf.certPem,
    keyPem: leaf.keyPem,
    rootPem: root.certPem,
    source: 't',
  });
  assert.equal(notCa.kind, 'not-a-ca');
  assert.match(notCa.message, /^ca-cert\.pem: /);

  assert.equal(
    failure({ certPem: 'garbage', keyPem: root.keyPem, rootPem: root.certPem, source: 't' }).kind,
    'malformed',
  );
  const badRoot = failure({
    certPem: root.certPem,
    keyPem: root.keyPem,
    rootPem: 'nope',
    source: 't',
  });
  assert.equal(badRoot.kind, 'malformed');
  assert.match(badRoot.message, /^root-cert\.pem: /);
  const weak = failure({
    certPem: root.certPem,
    keyPem: openssl(['genrsa', '1024']),
    rootPem: root.certPem,
    source: 't',
  });
  assert.equal(weak.kind, 'weak-key');
  assert.match(weak.message, /^ca-key\.pem: /);
  const encrypted = openssl(['pkey', '-aes256', '-passout', 'pass:x'], root.keyPem);
  assert.equal(
    failure({ certPem: root.certPem, keyPem: encrypted, rootPem: root.certPem, source: 't' }).kind,
    'encrypted-key',
  );
});

test('a self-signed CA: chain is the root itself, sent once', async () => {
  const root = await testRoot('ec-p256');
  const b = buildKeyCertBundle(
    { certPem: root.certPem, keyPem: root.keyPem, rootPem: root.certPem, source: 't' },
    systemClock,
  );
  assert.equal(b.certChain.length, 1);
  assert.deepEqual(b.responseChainPem, [root.certPem]);
});
