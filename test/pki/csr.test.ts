import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createPublicKey, randomBytes } from 'node:crypto';
import { isCastellanError, type ErrorKind } from '../../src/errors.js';
import { CSR_RULES, parseCsr } from '../../src/pki/csr.js';
import { parseCsrFast } from '../../src/pki/fast/fast-csr.js';
import { csrKeyTypeOf, keyTypeOf } from '../../src/pki/keys.js';
import { pemBlocks, toPem } from '../../src/pki/pem.js';
import { makeTempDir, openssl } from '../support/openssl.js';

const tmp = makeTempDir();
after(() => tmp.remove());
let n = 0;

/** A CSR made by openssl: `newkey` like "ec -pkeyopt ec_paramgen_curve:P-256". */
function opensslCsr(newkey: string[], extra: string[] = [], subj = '/CN=workload'): string {
  const key = join(tmp.dir, `k${n++}.pem`);
  return openssl([
    'req',
    '-new',
    '-nodes',
    '-keyout',
    key,
    '-subj',
    subj,
    '-addext',
    'subjectAltName=URI:spiffe://cluster.local/ns/default/sa/foo,DNS:foo.svc',
    ...newkey,
    ...extra,
  ]);
}
const ecCsr = (curve: string, extra: string[] = []): string =>
  opensslCsr(['-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${curve}`], extra);

function kindOf(pem: string): ErrorKind | 'none' {
  try {
    parseCsr(pem);
    return 'none';
  } catch (e) {
    assert.ok(isCastellanError(e), String(e));
    assert.match(e.message, /^CSR: /);
    return e.kind;
  }
}

test('accepts P-256, P-384, RSA-2048, Ed25519; SPKI verbatim; CN and requested SANs', () => {
  const cases: [string, string][] = [
    [ecCsr('P-256'), 'ec-p256'],
    [ecCsr('P-384'), 'ec-p384'],
    [opensslCsr(['-newkey', 'rsa:2048']), 'rsa-2048'],
    [opensslCsr(['-newkey', 'ed25519']), 'ed25519'],
  ];
  for (const [pem, keyType] of cases) {
    const csr = parseCsr(pem);
    assert.equal(csr.keyType, keyType);
    assert.equal(csr.commonName, 'workload');
    assert.deepEqual(csr.requestedSans, ['spiffe://cluster.local/ns/default/sa/foo', 'foo.svc']);
    const spki = new Uint8Array(
      Buffer.from(
        openssl(['req', '-pubkey', '-noout'], pem).replace(/-----[^-]+-----|\s/g, ''),
        'base64',
      ),
    );
    assert.deepEqual(csr.spki, spki);
    assert.deepEqual(csr.der, pemBlocks(pem)[0]!.der);
  }
  const noCn = parseCsr(
    opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], [], '/O=x'),
  );
  assert.equal(noCn.commonName, undefined);
});

test('a broken signature is bad-signature', () => {
  const der = pemBlocks(ecCsr('P-256'))[0]!.der;
  // Flip a bit inside the subject's CN value: the structure still parses, the signature fails.
  const at = Buffer.from(der).indexOf(Buffer.from('workload'));
  const broken = new Uint8Array(der);
  broken[at] = broken[at]! ^ 0x01;
  assert.equal(kindOf(toPem('CERTIFICATE REQUEST', broken)), 'bad-signature');
});

test('weak and unsupported keys and signature algorithms', () => {
  assert.equal(kindOf(opensslCsr(['-newkey', 'rsa:1024'])), 'weak-key');
  assert.equal(kindOf(ecCsr('P-521')), 'unsupported');
  assert.equal(kindOf(ecCsr('secp256k1')), 'unsupported');
  assert.equal(kindOf(ecCsr('P-256', ['-sha1'])), 'unsupported');
  assert.equal(
    kindOf(opensslCsr(['-newkey', 'rsa:2048'], ['-sigopt', 'rsa_padding_mode:pss'])),
    'unsupported',
  );
});

test('malformed: garbage, wrong label, trailing text, trailing DER bytes, not a CSR', () => {
  const pem = ecCsr('P-256');
  const der = pemBlocks(pem)[0]!.der;
  assert.equal(kindOf('garbage'), 'malformed');
  assert.equal(kindOf(pem.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE')), 'malformed');
  assert.equal(kindOf(pem + 'junk\n'), 'malformed');
  assert.equal(kindOf(pem + pem), 'malformed');
  assert.equal(kindOf(toPem('CERTIFICATE REQUEST', new Uint8Array([...der, 0]))), 'malformed');
  assert.equal(kindOf(toPem('CERTIFICATE REQUEST', der.subarray(0, der.length - 5))), 'malformed');
  assert.equal(
    kindOf(toPem('CERTIFICATE REQUEST', new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]))),
    'malformed',
  );
  assert.equal(kindOf(pem.slice(0, 100)), 'malformed');
  assert.equal(kindOf(' '.repeat(CSR_RULES.maxPemLength + 1)), 'too-large');
});

test('RSA CSR keys of any size from 2048 to 8192 bits are accepted (issue 2: "RSA ≥ 2048")', () => {
  // A size outside the CA key types, made and signed by openssl, passes both parsers.
  const pem = opensslCsr(['-newkey', 'rsa:2560']);
  assert.equal(parseCsr(pem).keyType, 'rsa-2560');
  assert.equal(parseCsrFast(pem).keyType, 'rsa-2560');
  assert.equal(kindOf(opensslCsr(['-newkey', 'rsa:1024'])), 'weak-key');
});

test('csrKeyTypeOf bounds RSA moduli (below 2048 weak, above 8192 unsupported) and exponents', () => {
  // Public keys with a modulus of the given size, built from JWK (no slow key generation).
  const rsaPublicKey = (bits: number) => {
    const n = randomBytes(bits / 8);
    n[0] = n[0]! | 0x80;
    n[n.length - 1] = n[n.length - 1]! | 1;
    return createPublicKey({
      key: { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' },
      format: 'jwk',
    });
  };
  assert.equal(csrKeyTypeOf(rsaPublicKey(8192)), 'rsa-8192');
  assert.equal(csrKeyTypeOf(rsaPublicKey(2048)), 'rsa-2048');
  for (const [bits, kind] of [
    [8200, 'unsupported'],
    [16384, 'unsupported'],
    [2040, 'weak-key'],
  ] as const) {
    assert.throws(
      () => csrKeyTypeOf(rsaPublicKey(bits), 'CSR'),
      (e: unknown) => isCastellanError(e, kind) && e.message.includes(`${bits} bits`),
      String(bits),
    );
  }
  // The public exponent: odd, at least 3, at most 2^31 - 1 (Go's crypto/rsa checkPub bound).
  const withExponent = (e: bigint) => {
    const n = randomBytes(256);
    n[0] = n[0]! | 0x80;
    n[n.length - 1] = n[n.length - 1]! | 1;
    const hex = e.toString(16);
    const bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
    return createPublicKey({
      key: { kty: 'RSA', n: n.toString('base64url'), e: bytes.toString('base64url') },
      format: 'jwk',
    });
  };
  for (const e of [3n, 65537n, 2n ** 31n - 1n])
    assert.equal(csrKeyTypeOf(withExponent(e)), 'rsa-2048');
  for (const [e, kind, text] of [
    [1n, 'weak-key', 'RSA public exponent 1: it must be odd and at least 3'],
    [2n, 'weak-key', 'RSA public exponent 2: it must be odd and at least 3'],
    [65538n, 'weak-key', 'RSA public exponent 65538'],
    [2n ** 31n + 1n, 'unsupported', 'RSA public exponent of 32 bits: at most 2^31 - 1'],
    [2n ** 2040n + 1n, 'unsupported', 'RSA public exponent of 2041 bits'],
  ] as const) {
    assert.throws(
      () => csrKeyTypeOf(withExponent(e), 'CSR'),
      (err: unknown) => isCastellanError(err, kind) && err.message.includes(text),
      String(e),
    );
  }
  // CA keys keep the fixed sizes: the same 8192-bit key is not a CA key type.
  assert.throws(
    () => keyTypeOf(rsaPublicKey(8192)),
    (e: unknown) => isCastellanError(e, 'unsupported'),
  );
});
