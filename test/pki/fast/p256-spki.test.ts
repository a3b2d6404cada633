// The hot path's P-256 public key import (JWK) against the reference (SPKI DER import): the same
// key or the same error, on real keys, points off the curve and coordinates out of range.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { publicKeyFromSpki } from '../../../src/pki/keys.js';
import { publicKeyFromSpkiFast } from '../../../src/pki/fast/p256-spki.js';
import { seededRng } from './seeded-rng.js';

const PRIME = Buffer.from(
  'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
  'hex',
);
const PREFIX_LENGTH = 27; // 3059 3013 0607 2a86.. 0608 2a86.. 0342 00 04

function spkiOf(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' });
}

function outcome(
  fn: typeof publicKeyFromSpki,
  spki: Uint8Array,
): { key?: string; keyType?: string; error?: string } {
  try {
    const { publicKey, keyType } = fn(spki, 'CSR');
    return { key: spkiOf(publicKey).toString('hex'), keyType };
  } catch (e) {
    const ce = e as { kind?: string; message?: string };
    return { error: `${ce.kind}: ${ce.message}` };
  }
}

function same(spki: Uint8Array, label: string): ReturnType<typeof outcome> {
  const fast = outcome(publicKeyFromSpkiFast, spki);
  assert.deepEqual(fast, outcome(publicKeyFromSpki, spki), label);
  return fast;
}

describe('publicKeyFromSpkiFast', () => {
  test('real P-256 keys: the same key as the DER import', () => {
    for (let i = 0; i < 50; i++) {
      const spki = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
      const r = same(spki, `key ${i}`);
      assert.equal(r.key, spki.toString('hex'));
      assert.equal(r.keyType, 'ec-p256');
    }
  });

  test('other keys and encodings take the reference path: same result', () => {
    same(spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey), 'P-384');
    same(spkiOf(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey), 'RSA');
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const compressed = key.export({ format: 'der', type: 'spki' });
    same(compressed.subarray(0, compressed.length - 1), 'truncated');
    same(Buffer.concat([compressed, Buffer.from([0])]), 'trailing byte');
  });

  test('points off the curve and coordinates >= p: refused exactly as the DER import refuses', () => {
    const base = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const r = seededRng(7);
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const spki = Buffer.from(base);
      const at = PREFIX_LENGTH + Math.floor(r() * 64);
      spki[at]! ^= 1 << Math.floor(r() * 8);
      if (same(spki, `flip at ${at}`).error) refused++;
    }
    assert.ok(refused > 250, `off-curve points refused (${refused})`);
    // x = p, y = p, and all-ones coordinates: out of range, never reduced.
    for (const [label, x, y] of [
      ['x = p', PRIME, base.subarray(PREFIX_LENGTH + 32)],
      ['y = p', base.subarray(PREFIX_LENGTH, PREFIX_LENGTH + 32), PRIME],
      ['ones', Buffer.alloc(32, 0xff), Buffer.alloc(32, 0xff)],
    ] as const) {
      const spki = Buffer.concat([base.subarray(0, PREFIX_LENGTH), x, y]);
      assert.ok(same(spki, label).error, `${label} refused`);
    }
  });
});
