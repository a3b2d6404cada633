import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from '@peculiar/x509';
import { ManualClock } from '../support/manual-clock.js';
import { buildKeyCertBundle } from '../../src/ca/build-key-cert-bundle.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { issueWorkloadCertificate } from '../../src/ca/issue-workload.js';
import type { CaSnapshot } from '../../src/ca/key-cert-bundle.js';
import type { ParsedCsr } from '../../src/pki/csr.js';
import type { LeafParams } from '../../src/pki/leaf-signer.js';
import { createReferenceLeafSigner } from '../../src/pki/reference-leaf-signer.js';
import { isCastellanError } from '../../src/errors.js';
import { randomSerial } from '../../src/pki/serial.js';
import { createFastLeafSigner } from '../../src/pki/fast/fast-leaf-signer.js';
import { makeTempDir, opensslText, opensslVerify } from '../support/openssl.js';
import { HOUR, opensslP256Csr, testIntermediate, testRoot, window } from '../pki/fixtures.js';

const tmp = makeTempDir();
after(() => tmp.remove());
const SPIFFE = 'spiffe://cluster.local/ns/default/sa/foo';

const csr = (subj: string): ParsedCsr => opensslP256Csr(tmp.dir, subj);

async function setup(
  interHours = 500,
): Promise<{ state: SwappableCaState; rootPem: string; now: number }> {
  const now = Date.now();
  const root = await testRoot('ec-p384', window(now - HOUR, 1000));
  const inter = await testIntermediate(root, {
    keyType: 'rsa-2048',
    window: window(now - HOUR, interHours),
  });
  const state = new SwappableCaState();
  state.swap(
    buildKeyCertBundle(
      {
        certPem: inter.certPem,
        keyPem: inter.keyPem,
        chainPem: inter.certPem + root.certPem,
        rootPem: root.certPem,
        source: 't',
      },
      new ManualClock(now),
    ),
  );
  return { state, rootPem: root.certPem, now };
}

test('issues a leaf + chain that openssl verifies; Istio validity and CN rules', async () => {
  const { state, rootPem, now } = await setup();
  const clock = new ManualClock(now);
  const r = await issueWorkloadCertificate(
    state.current()!,
    { csr: csr('/CN=anything'), sans: [SPIFFE], ttlMs: 24 * HOUR },
    clock,
  );
  assert.equal(r.certChainPem.length, 3);
  assert.ok(r.certChainPem.every((p) => p.endsWith('-----END CERTIFICATE-----\n')));
  assert.equal(r.certChainPem[2], rootPem);
  for (const purpose of ['sslserver', 'sslclient']) {
    const v = opensslVerify({
      root: rootPem,
      untrusted: r.certChainPem[1]!,
      leaf: r.certChainPem[0]!,
      purpose,
    });
    assert.ok(v.ok, v.output);
  }
  const leaf = new X509Certificate(r.leafDer);
  assert.equal(leaf.notBefore.getTime(), Math.floor((now - 120_000) / 1000) * 1000);
  assert.equal(leaf.notAfter.getTime(), r.notAfter.getTime());
  assert.equal(r.notAfter.getTime(), Math.floor((now + 24 * HOUR) / 1000) * 1000);
  assert.equal(leaf.serialNumber, r.serialHex);
  // The CSR had a CN: CN = first SAN (the identity), never the CSR's own CN.
  assert.match(
    opensslText(r.certChainPem[0]!),
    new RegExp(`Subject: CN = ${SPIFFE.replaceAll('/', '\\/')}`),
  );
  const noCn = await issueWorkloadCertificate(
    state.current()!,
    { csr: csr('/O=x'), sans: [SPIFFE], ttlMs: HOUR },
    clock,
  );
  assert.match(opensslText(noCn.certChainPem[0]!), /Subject: *\n/);
});

test('NotAfter is clamped to the signing certificate', async () => {
  const { state, now } = await setup(10);
  const r = await issueWorkloadCertificate(
    state.current()!,
    { csr: csr('/O=x'), sans: [SPIFFE], ttlMs: 90 * 24 * HOUR },
    new ManualClock(now),
  );
  assert.equal(r.notAfter.getTime(), state.current()!.bundle.signingCert.notAfter.getTime());
});

test('swap: one new snapshot, generation +1, listeners told, custom signer factory used', async () => {
  const { state } = await setup();
  const first = state.current()!;
  const seen: CaSnapshot[] = [];
  const off = state.onChange((s) => seen.push(s));
  const second = state.swap(first.bundle);
  assert.equal(second.generation, first.generation + 1);
  assert.equal(state.current(), second);
  assert.deepEqual(seen, [second]);
  off();
  state.swap(first.bundle);
  assert.equal(seen.length, 1);

  const calls: LeafParams[] = [];
  const custom = new SwappableCaState({
    leafSignerFactory: () => ({
      sign: (p) => (calls.push(p), Promise.resolve(new Uint8Array([0x30, 0x00]))),
    }),
  });
  assert.equal(custom.current(), undefined);
  custom.swap(first.bundle);
  const r = await issueWorkloadCertificate(
    custom.current()!,
    { csr: csr('/O=x'), sans: [SPIFFE, 'foo.svc'], ttlMs: HOUR },
    new ManualClock(Date.now()),
  );
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.sans, [SPIFFE, 'foo.svc']);
  assert.equal(calls[0]!.commonName, undefined);
  assert.equal(calls[0]!.serial.length, 17);
  assert.deepEqual(r.leafDer, new Uint8Array([0x30, 0x00]));
});

// istiod's DualUseCommonName (security/pkg/pki/util/dual_use.go): CN = first SAN, omitted when
// longer than 64 characters (RFC 5280's ub-common-name). A SPIFFE ID easily is: namespaces go to
// 63 characters, service account names to 253.
test('a CN longer than 64 characters never reaches a leaf: omitted as istiod omits it', async () => {
  const { state, now } = await setup();
  const clock = new ManualClock(now);
  const long = `spiffe://cluster.local/ns/default/sa/${'a'.repeat(64)}`;
  const edge = `spiffe://cluster.local/ns/default/sa/${'b'.repeat(64 - 37)}`;
  assert.equal(edge.length, 64);
  for (const factory of ['fast', 'reference'] as const) {
    const signer = new SwappableCaState({
      leafSignerFactory: (b) =>
        factory === 'fast'
          ? createFastLeafSigner(new Uint8Array(b.signingCert.rawData), b.signer)
          : createReferenceLeafSigner(b.signingCert, b.signer),
    });
    const snapshot = signer.swap(state.current()!.bundle);
    const r = await issueWorkloadCertificate(
      snapshot,
      { csr: csr('/CN=anything'), sans: [long], ttlMs: HOUR },
      clock,
    );
    const text = opensslText(r.certChainPem[0]!);
    assert.match(text, /Subject: *\n/, `${factory}: empty subject`);
    assert.ok(text.includes(`URI:${long}`), `${factory}: the identity is still in the SAN`);
    const atBound = await issueWorkloadCertificate(
      snapshot,
      { csr: csr('/CN=anything'), sans: [edge], ttlMs: HOUR },
      clock,
    );
    assert.match(
      opensslText(atBound.certChainPem[0]!),
      new RegExp(`Subject: CN = ${edge.replaceAll('/', '\\/')}\n`),
      `${factory}: 64 characters is within the bound`,
    );
    // Below the issuer, too, no CN over 64 characters is ever signed.
    await assert.rejects(
      snapshot.leafSigner.sign({
        spki: csr('/O=x').spki,
        sans: [long],
        commonName: long,
        serial: randomSerial(),
        notBefore: new Date(now),
        notAfter: new Date(now + HOUR),
      }),
      (e) =>
        isCastellanError(e, 'invalid-argument') &&
        e.message === `common name "${long}" is 101 characters long; RFC 5280 allows at most 64`,
      factory,
    );
  }
});
