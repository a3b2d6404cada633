import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { createKeyAndCsr, isWorkloadKeyType } from '../../src/pki/csr-builder.js';
import { sanKind } from '../../src/pki/profiles.js';
import { openssl } from '../support/openssl.js';

/** openssl's text of a CSR, after it checked the CSR's self-signature. */
function opensslReq(csrPem: string): string {
  return openssl(['req', '-verify', '-noout', '-text'], csrPem);
}

test('ec-p256: a PKCS#8 key and a CSR that openssl verifies, holding that key', async () => {
  const { keyPem, csrPem } = await createKeyAndCsr('ec-p256');
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  const key = createPrivateKey(keyPem);
  assert.equal(key.asymmetricKeyType, 'ec');
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const text = opensslReq(csrPem);
  assert.match(text, /NIST CURVE: P-256/);
  assert.match(text, /ecdsa-with-SHA256/);
  // The CSR's key is ours: openssl derives the same public key from both.
  const fromCsr = openssl(['req', '-noout', '-pubkey'], csrPem);
  const fromKey = openssl(['pkey', '-pubout'], keyPem);
  assert.equal(fromCsr, fromKey);
});

test('rsa-2048: RSA key of 2048 bits, sha256WithRSAEncryption', async () => {
  const { keyPem, csrPem } = await createKeyAndCsr('rsa-2048');
  const key = createPrivateKey(keyPem);
  assert.equal(key.asymmetricKeyType, 'rsa');
  assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
  assert.match(opensslReq(csrPem), /sha256WithRSAEncryption/);
});

test('subject and SANs: URI, IP and DNS; SAN critical when the subject is empty', async () => {
  const { csrPem } = await createKeyAndCsr('ec-p256', {
    sans: ['spiffe://cluster.local/ns/a/sa/b', '10.1.2.3', 'svc.example'],
  });
  const text = opensslReq(csrPem);
  assert.match(text, /Subject Alternative Name: critical/);
  assert.match(
    text,
    /URI:spiffe:\/\/cluster.local\/ns\/a\/sa\/b, IP Address:10.1.2.3, DNS:svc.example/,
  );
  const named = opensslReq(
    (await createKeyAndCsr('ec-p256', { commonName: 'w', sans: ['x.y'] })).csrPem,
  );
  assert.match(named, /Subject: CN ?= ?w/);
  assert.doesNotMatch(named, /critical/);
});

test('SANs are classified as the CA classifies them (sanKind)', async () => {
  // IPv6 is an IP SAN; a dotted quad that is no address, or a host:port, is a DNS name (it used
  // to be refused with an "Invalid IPv4/IPv6 address" error from the encoder).
  const sans = ['fd00::1', '1.2.3.999', 'host:8080'];
  const text = opensslReq((await createKeyAndCsr('ec-p256', { sans })).csrPem);
  assert.match(text, /IP Address:FD00:0:0:0:0:0:0:1, DNS:1\.2\.3\.999, DNS:host:8080/);
  assert.deepEqual(
    sans.map((s) => sanKind(s)),
    ['ip', 'dns', 'dns'],
  );
});

test('a fresh key every time; unknown key types are refused', async () => {
  const a = await createKeyAndCsr('ec-p256');
  const b = await createKeyAndCsr('ec-p256');
  assert.notEqual(a.keyPem, b.keyPem);
  assert.equal(isWorkloadKeyType('rsa-4096'), false);
  await assert.rejects(
    createKeyAndCsr('dsa' as 'ec-p256'),
    (e: unknown) => (e as { kind?: string }).kind === 'unsupported',
  );
});
