// The hot path's P-256 public key imports (JWK on the event loop, WebCrypto raw on the crypto
// thread) against the reference (SPKI DER import): the same key or the same error, on real keys,
// points off the curve and coordinates out of range.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { publicKeyFromSpki } from '../../../src/pki/keys.js';
import {
  importsP256FromCoordinates,
  publicKeyFromSpkiFast,
  publicKeyFromSpkiRaw,
} from '../../../src/pki/fast/p256-spki.js';
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

describe('importsP256FromCoordinates', () => {
  test('the coordinates on OpenSSL before 3.5, the DER import from 3.5 on', () => {
    // process.versions.openssl of Node 20.20 and Node 24.22, the two measured.
    assert.equal(importsP256FromCoordinates('3.0.19'), true);
    assert.equal(importsP256FromCoordinates('3.5.9'), false);
    assert.equal(importsP256FromCoordinates('3.0.15+quic'), true);
    assert.equal(importsP256FromCoordinates('3.4.1'), true);
    assert.equal(importsP256FromCoordinates('3.10.0'), false);
    assert.equal(importsP256FromCoordinates('4.0.0'), false);
    assert.equal(importsP256FromCoordinates('1.1.1w'), true);
    // Unreadable: the path this project measured on its own platform.
    assert.equal(importsP256FromCoordinates(''), true);
    assert.equal(importsP256FromCoordinates('boringssl'), true);
  });
});
