// The hot path's public key imports (P-256 from JWK on the event loop and WebCrypto raw on the
// crypto thread; RSA from JWK) against the reference (SPKI DER import): the same key or the same
// error, on real keys, points off the curve, coordinates out of range, and mutated RSA keys.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { publicKeyFromSpki } from '../../../src/pki/keys.js';
import {
  importsFromComponents,
  publicKeyFromSpkiFast,
  publicKeyFromSpkiRaw,
} from '../../../src/pki/fast/p256-spki.js';
import { rsaPublicKeyFromComponents } from '../../../src/pki/fast/rsa-spki.js';
import { tlv, TAG } from '../../../src/pki/fast/der.js';
import { RSA_ENCRYPTION_ALGORITHM } from '../../../src/pki/der.js';
import { seededRng } from '../../support/seeded-rng.js';

const PRIME = Buffer.from(
  'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
  'hex',
);
const PREFIX_LENGTH = 27; // 3059 3013 0607 2a86.. 0608 2a86.. 0342 00 04

function spkiOf(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' });
}

type Outcome = { key?: string; keyType?: string; error?: string };

async function outcome(
  fn: typeof publicKeyFromSpki | typeof publicKeyFromSpkiRaw,
  spki: Uint8Array,
): Promise<Outcome> {
  try {
    const { publicKey, keyType } = await fn(spki, 'CSR');
    return { key: spkiOf(publicKey).toString('hex'), keyType };
  } catch (e) {
    const ce = e as { kind?: string; message?: string };
    return { error: `${ce.kind}: ${ce.message}` };
  }
}

/** Both fast imports give the reference's outcome. */
async function same(spki: Uint8Array, label: string): Promise<Outcome> {
  const reference = await outcome(publicKeyFromSpki, spki);
  const fast = await outcome(publicKeyFromSpkiFast, spki);
  assert.deepEqual(fast, reference, `${label} (JWK)`);
  assert.deepEqual(await outcome(publicKeyFromSpkiRaw, spki), reference, `${label} (raw)`);
  return fast;
}

describe('publicKeyFromSpkiFast and publicKeyFromSpkiRaw', () => {
  test('real P-256 keys: the same key as the DER import', async () => {
    for (let i = 0; i < 50; i++) {
      const spki = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
      const r = await same(spki, `key ${i}`);
      assert.equal(r.key, spki.toString('hex'));
      assert.equal(r.keyType, 'ec-p256');
    }
  });

  test('other keys and encodings take the reference path: same result', async () => {
    await same(spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey), 'P-384');
    await same(spkiOf(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey), 'RSA');
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const compressed = key.export({ format: 'der', type: 'spki' });
    await same(compressed.subarray(0, compressed.length - 1), 'truncated');
    await same(Buffer.concat([compressed, Buffer.from([0])]), 'trailing byte');
  });

  test('points off the curve and coordinates >= p: refused exactly as the DER import refuses', async () => {
    const base = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const r = seededRng(7);
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const spki = Buffer.from(base);
      const at = PREFIX_LENGTH + Math.floor(r() * 64);
      spki[at]! ^= 1 << Math.floor(r() * 8);
      if ((await same(spki, `flip at ${at}`)).error) refused++;
    }
    assert.ok(refused > 250, `off-curve points refused (${refused})`);
    // x = p, y = p, and all-ones coordinates: out of range, never reduced.
    for (const [label, x, y] of [
      ['x = p', PRIME, base.subarray(PREFIX_LENGTH + 32)],
      ['y = p', base.subarray(PREFIX_LENGTH, PREFIX_LENGTH + 32), PRIME],
      ['ones', Buffer.alloc(32, 0xff), Buffer.alloc(32, 0xff)],
    ] as const) {
      const spki = Buffer.concat([base.subarray(0, PREFIX_LENGTH), x, y]);
      assert.ok((await same(spki, label)).error, `${label} refused`);
    }
  });
});

describe('RSA keys from their components', () => {
  const rsa = (bits: number) =>
    spkiOf(generateKeyPairSync('rsa', { modulusLength: bits, publicExponent: 65537 }).publicKey);

  test('real keys of every accepted size are read from their components: the same key', async () => {
    for (const bits of [2048, 2048, 3072, 4096]) {
      const spki = rsa(bits);
      const key = rsaPublicKeyFromComponents(spki);
      assert.ok(key, `RSA-${bits} taken from its components`);
      assert.equal(spkiOf(key).toString('hex'), spki.toString('hex'));
      const r = await same(spki, `RSA-${bits}`);
      assert.equal(r.keyType, `rsa-${bits}`);
    }
    // A weak key is read the same way, then refused by the same rule as the reference's.
    const weak = rsa(1024);
    assert.ok(rsaPublicKeyFromComponents(weak));
    assert.match((await same(weak, 'RSA-1024')).error ?? '', /^weak-key/);
    // Exponent 3 (small, allowed by OpenSSL) round-trips too.
    const e3 = spkiOf(
      generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).publicKey,
    );
    assert.ok(rsaPublicKeyFromComponents(e3));
    await same(e3, 'e = 3');
  });

  test('what the CSR rules refuse is refused the same way through the components', async () => {
    // SPKIs built here: rsaEncryption, a modulus of `bits` bits (odd, top bit set), exponent e.
    const spkiWith = (bits: number, e: bigint): Uint8Array => {
      const n = Buffer.alloc(Math.ceil(bits / 8), 0x5a);
      n[0] = 1 << ((bits - 1) % 8);
      n[n.length - 1] = n[n.length - 1]! | 1;
      const unsigned = (b: Buffer) => (b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
      const hex = e.toString(16);
      const eBytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
      const rsaKey = tlv(
        TAG.SEQUENCE,
        tlv(TAG.INTEGER, unsigned(n)),
        tlv(TAG.INTEGER, unsigned(eBytes)),
      );
      return tlv(
        TAG.SEQUENCE,
        RSA_ENCRYPTION_ALGORITHM,
        tlv(TAG.BIT_STRING, Uint8Array.of(0), rsaKey),
      );
    };
    for (const [label, spki, kind] of [
      ['9000-bit modulus', spkiWith(9000, 65537n), 'unsupported'],
      ['2040-bit modulus', spkiWith(2040, 65537n), 'weak-key'],
      ['e = 1', spkiWith(2048, 1n), 'weak-key'],
      ['e = 2', spkiWith(2048, 2n), 'weak-key'],
      ['e = 2^31 + 1', spkiWith(2048, 2n ** 31n + 1n), 'unsupported'],
      ['e above n', spkiWith(2048, 2n ** 2060n + 1n), undefined],
    ] as const) {
      const outcome = await same(spki, label);
      if (kind) assert.match(outcome.error ?? '', new RegExp(`^${kind}:`), label);
    }
    // Those OpenSSL reads at all are taken from their components (the path under test).
    assert.ok(rsaPublicKeyFromComponents(spkiWith(9000, 65537n)));
    assert.ok(rsaPublicKeyFromComponents(spkiWith(2048, 1n)));
    assert.equal((await same(spkiWith(2048, 65537n), 'valid')).keyType, 'rsa-2048');
  });

  test("encodings that are not OpenSSL's own go to the DER import: the same outcome", async () => {
    const spki = rsa(2048);
    // Offsets in an RSA-2048 SPKI: the modulus INTEGER at 28 (02 82 01 01 00 …), e at 289.
    const variants: [string, Buffer][] = [
      // The modulus with an extra leading zero (non-minimal), lengths fixed up around it.
      [
        'non-minimal modulus',
        Buffer.concat([
          Buffer.from('30820123300d06092a864886f70d01010105000382011000308201', 'hex'),
          Buffer.from('0b02820102', 'hex'),
          Buffer.from([0]),
          spki.subarray(32),
        ]),
      ],
      // The modulus without its sign byte: a negative INTEGER.
      [
        'negative modulus',
        Buffer.concat([
          Buffer.from('30820121300d06092a864886f70d01010105000382010e00308201', 'hex'),
          Buffer.from('0902820100', 'hex'),
          spki.subarray(33),
        ]),
      ],
      [
        'parameters absent',
        Buffer.concat([
          Buffer.from('30820120300b06092a864886f70d010101', 'hex'),
          spki.subarray(19),
        ]),
      ],
      ['a trailing byte', Buffer.concat([spki, Buffer.from([0])])],
      ['one byte short', spki.subarray(0, spki.length - 1)],
    ];
    for (const [label, bytes] of variants) {
      assert.equal(rsaPublicKeyFromComponents(bytes), undefined, label);
      await same(bytes, label);
    }
    // Seeded single-bit flips anywhere in the structure (headers, modulus, exponent).
    const r = seededRng(23);
    let taken = 0;
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(spki);
      const at = Math.floor(r() * bytes.length);
      bytes[at]! ^= 1 << Math.floor(r() * 8);
      if (rsaPublicKeyFromComponents(bytes)) taken++;
      if ((await same(bytes, `flip at ${at}`)).error) refused++;
    }
    // Most flips land in the modulus: a different, valid key, taken from its components.
    assert.ok(taken > 200, `flipped keys taken from their components (${taken})`);
    assert.ok(refused > 0, `flips the reference refuses (${refused})`);
  });
});

describe('importsFromComponents', () => {
  test('the coordinates on OpenSSL before 3.5, the DER import from 3.5 on', () => {
    // process.versions.openssl of Node 20.20 and Node 24.22, the two measured.
    assert.equal(importsFromComponents('3.0.19'), true);
    assert.equal(importsFromComponents('3.5.9'), false);
    assert.equal(importsFromComponents('3.0.15+quic'), true);
    assert.equal(importsFromComponents('3.4.1'), true);
    assert.equal(importsFromComponents('3.10.0'), false);
    assert.equal(importsFromComponents('4.0.0'), false);
    assert.equal(importsFromComponents('1.1.1w'), true);
    // Unreadable: the path this project measured on its own platform.
    assert.equal(importsFromComponents(''), true);
    assert.equal(importsFromComponents('boringssl'), true);
  });
});
