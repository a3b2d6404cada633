import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isCastellanError, type ErrorKind } from '../../src/errors.js';
import { pemBlocks, toPem } from '../../src/pki/pem.js';
import { derChildren, readDerElement, requireSingleDerElement } from '../../src/pki/der.js';
import {
  generateKeyPair,
  parsePrivateKeyPem,
  privateKeyToPem,
  publicKeyMatches,
  spkiOf,
} from '../../src/pki/keys.js';
import { istioSampleCerts } from '../support/paths.js';
import { makeTempDir, openssl, opensslBinary } from '../support/openssl.js';

const tmp = makeTempDir();
after(() => tmp.remove());

function kindOf(fn: () => unknown): ErrorKind | 'none' {
  try {
    fn();
    return 'none';
  } catch (e) {
    assert.ok(isCastellanError(e), `expected a CastellanError, got ${String(e)}`);
    return e.kind;
  }
}

describe('pem', () => {
  test('round-trips DER and wraps at 64 columns', () => {
    const der = new Uint8Array(200).map((_, i) => i);
    const pem = toPem('CERTIFICATE', der);
    assert.ok(pem.endsWith('-----END CERTIFICATE-----\n'));
    assert.ok(pem.split('\n').every((l) => l.length <= 64));
    const [block] = pemBlocks(`junk before\n${pem}`);
    assert.equal(block!.label, 'CERTIFICATE');
    assert.deepEqual(block!.der, der);
  });
  test("byte for byte OpenSSL's PEM, at every length around the 64-column boundaries", () => {
    // OpenSSL (through node:crypto) writes the same layout: 64-column lines, each ending "\n".
    for (const [type, options] of [
      ['ed25519', {}],
      ['ec', { namedCurve: 'P-256' }],
      ['ec', { namedCurve: 'P-384' }],
      ['rsa', { modulusLength: 1024 }],
      ['rsa', { modulusLength: 2048 }],
    ] as const) {
      const { publicKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
      const der = publicKey.export({ type: 'spki', format: 'der' });
      const pem = publicKey.export({ type: 'spki', format: 'pem' });
      assert.equal(toPem('PUBLIC KEY', der), pem, `${type} ${JSON.stringify(options)}`);
    }
    // Base64 of 45, 48 and 51 bytes is 60, 64 and 68 characters: under, at and past one line.
    for (const length of [1, 45, 47, 48, 49, 51, 95, 96, 97]) {
      const der = new Uint8Array(length).map((_, i) => i * 7);
      const pem = toPem('CERTIFICATE', der);
      const lines = pem.split('\n');
      assert.equal(lines.pop(), '', 'ends with a newline');
      const body = lines.slice(1, -1);
      assert.ok(body.slice(0, -1).every((l) => l.length === 64));
      assert.ok((body.at(-1) as string).length >= 1 && (body.at(-1) as string).length <= 64);
      assert.deepEqual(pemBlocks(pem)[0]?.der, der);
    }
  });

  test('refuses garbage, truncated blocks, mismatched labels, bad base64, strict junk', () => {
    const good = toPem('CERTIFICATE', new Uint8Array([1, 2, 3]));
    assert.equal(
      kindOf(() => pemBlocks('hello')),
      'malformed',
    );
    assert.equal(
      kindOf(() => pemBlocks(good.slice(0, 40))),
      'malformed',
    );
    assert.equal(
      kindOf(() => pemBlocks(good.replace('END CERTIFICATE', 'END X'))),
      'malformed',
    );
    assert.equal(
      kindOf(() => pemBlocks(good.replace('AQID', 'AQ*D'))),
      'malformed',
    );
    assert.equal(
      kindOf(() => pemBlocks(good + 'trailing', { strict: true })),
      'malformed',
    );
    assert.equal(
      kindOf(() => pemBlocks(good + 'trailing')),
      'none',
    );
  });
  test('errors name the subject', () => {
    assert.throws(
      () => pemBlocks('x', { subject: 'ca-cert.pem' }),
      /^CastellanError: ca-cert.pem: /,
    );
  });
});

describe('keys', () => {
  test('reads PKCS#1 (Istio 2018 sample) and PKCS#8 (alt sample)', () => {
    const p1 = parsePrivateKeyPem(readFileSync(join(istioSampleCerts, 'ca-key.pem'), 'utf8'));
    assert.equal(p1.keyType, 'rsa-2048');
    const p8 = parsePrivateKeyPem(readFileSync(join(istioSampleCerts, 'ca-key-alt.pem'), 'utf8'));
    assert.equal(p8.keyType, 'rsa-4096');
  });

  test('reads SEC1 with EC PARAMETERS from openssl ecparam, P-384, Ed25519', () => {
    const sec1 = openssl(['ecparam', '-name', 'prime256v1', '-genkey']);
    assert.match(sec1, /BEGIN EC PARAMETERS/);
    assert.equal(parsePrivateKeyPem(sec1).keyType, 'ec-p256');
    const p384 = openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384']);
    assert.equal(parsePrivateKeyPem(p384).keyType, 'ec-p384');
    assert.equal(
      parsePrivateKeyPem(openssl(['genpkey', '-algorithm', 'ed25519'])).keyType,
      'ed25519',
    );
  });

  test('typed errors: encrypted, weak, unsupported, truncated, garbage', () => {
    const enc = openssl([
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-aes256',
      '-pass',
      'pass:secret',
    ]);
    assert.equal(
      kindOf(() => parsePrivateKeyPem(enc)),
      'encrypted-key',
    );
    const rsa1024 = openssl(['genrsa', '-traditional', '1024']);
    assert.match(rsa1024, /BEGIN RSA PRIVATE KEY/);
    assert.equal(
      kindOf(() => parsePrivateKeyPem(rsa1024)),
      'weak-key',
    );
    const legacyEnc = openssl(
      ['rsa', '-traditional', '-aes128', '-passout', 'pass:x'],
      openssl(['genrsa', '2048']),
    );
    assert.match(legacyEnc, /Proc-Type: 4,ENCRYPTED/);
    assert.equal(
      kindOf(() => parsePrivateKeyPem(legacyEnc)),
      'encrypted-key',
    );
    const p521 = openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521']);
    assert.equal(
      kindOf(() => parsePrivateKeyPem(p521)),
      'unsupported',
    );
    const dsaParams = join(tmp.dir, 'dsa.params');
    openssl([
      'genpkey',
      '-genparam',
      '-algorithm',
      'DSA',
      '-pkeyopt',
      'dsa_paramgen_bits:1024',
      '-out',
      dsaParams,
    ]);
    const dsa = openssl(['genpkey', '-paramfile', dsaParams]);
    assert.equal(
      kindOf(() => parsePrivateKeyPem(dsa)),
      'unsupported',
    );
    const good = readFileSync(join(istioSampleCerts, 'ca-key.pem'), 'utf8');
    const lines = good.trim().split('\n');
    const truncated = [...lines.slice(0, 10), lines[lines.length - 1]].join('\n');
    assert.equal(
      kindOf(() => parsePrivateKeyPem(truncated)),
      'malformed',
    );
    assert.equal(
      kindOf(() => parsePrivateKeyPem('not a key')),
      'malformed',
    );
    const cert = readFileSync(join(istioSampleCerts, 'ca-cert.pem'), 'utf8');
    assert.equal(
      kindOf(() => parsePrivateKeyPem(cert)),
      'malformed',
    );
    assert.throws(() => parsePrivateKeyPem('x', 'ca-key.pem'), /ca-key\.pem/);
  });

  test('generate, PEM round trip through openssl, match/mismatch', async () => {
    for (const t of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
      const { privateKey, publicKey } = await generateKeyPair(t);
      const pem = privateKeyToPem(privateKey);
      // openssl reads what we write and derives the same public key.
      const pub = opensslBinary(['pkey', '-pubout', '-outform', 'DER'], pem);
      assert.deepEqual(new Uint8Array(pub), spkiOf(publicKey));
      const back = parsePrivateKeyPem(pem);
      assert.equal(back.keyType, t);
      assert.ok(publicKeyMatches(back.key, publicKey));
      assert.ok(publicKeyMatches(back.key, spkiOf(publicKey)));
    }
    const a = await generateKeyPair('ec-p256');
    const b = await generateKeyPair('ec-p256');
    assert.equal(publicKeyMatches(a.privateKey, b.publicKey), false);
  });
});

describe('der', () => {
  test('one element, exact boundaries; refuses BER and trailing bytes', () => {
    const seq = new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xff]);
    const el = requireSingleDerElement(seq);
    assert.deepEqual(el, { start: 0, contentStart: 2, end: 8 });
    assert.deepEqual(
      derChildren(seq, el).map((c) => [c.start, c.end]),
      [
        [2, 5],
        [5, 8],
      ],
    );
    assert.equal(
      kindOf(() => requireSingleDerElement(new Uint8Array([...seq, 0]))),
      'malformed',
    );
    assert.equal(
      kindOf(() => requireSingleDerElement(seq.subarray(0, 7))),
      'malformed',
    );
    // Indefinite length and a non-minimal long form are BER, not DER.
    assert.equal(
      kindOf(() => readDerElement(new Uint8Array([0x30, 0x80, 0, 0]))),
      'malformed',
    );
    assert.equal(
      kindOf(() => readDerElement(new Uint8Array([0x04, 0x81, 0x01, 0xff]))),
      'malformed',
    );
    const long = new Uint8Array(3 + 200);
    long.set([0x04, 0x81, 200]);
    assert.equal(requireSingleDerElement(long).end, 203);
  });
});
