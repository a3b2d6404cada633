// The integer-keyed map of the open HTTP/2 streams and the crypto thread's calls in flight
// (src/server/int-key-map.ts): the same answers as a Map through random use, and a table that
// follows the most entries held at once, never the number of inserts and deletes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IntKeyMap } from '../../src/server/int-key-map.js';

/** A small deterministic PRNG (mulberry32), so a failure replays. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sorted = (values: readonly string[]): string[] => [...values].sort();

describe('IntKeyMap', () => {
  test('answers as a Map does through 200,000 random operations (odd, consecutive and large keys)', () => {
    for (const [seed, keyOf] of [
      // HTTP/2 stream ids: odd, a few hundred live.
      [1, (r: number) => 1 + 2 * Math.floor(r * 600)],
      // The crypto pool's call ids: consecutive.
      [2, (r: number) => Math.floor(r * 300)],
      // Beyond 32 bits (a long-lived process's counter), colliding in their low halves.
      [3, (r: number) => 2 ** 32 * Math.floor(r * 40) + Math.floor(r * 7)],
      // Few keys: long runs of insert and delete of the same ones (the one-call-in-flight case).
      [4, (r: number) => Math.floor(r * 3)],
      // Between 2^31 and 2^32, where `key | 0` is negative.
      [5, (r: number) => 2 ** 31 + 3 * Math.floor(r * 500)],
    ] as const) {
      const random = prng(seed);
      const ours = new IntKeyMap<string>();
      const reference = new Map<number, string>();
      for (let n = 0; n < 50_000; n++) {
        const key = keyOf(random());
        const op = random();
        if (op < 0.45) {
          ours.set(key, `v${n}`);
          reference.set(key, `v${n}`);
        } else if (op < 0.9) {
          assert.equal(ours.delete(key), reference.delete(key), `seed ${seed}, op ${n}`);
        } else {
          assert.equal(ours.get(key), reference.get(key), `seed ${seed}, op ${n}`);
          assert.equal(ours.has(key), reference.has(key), `seed ${seed}, op ${n}`);
        }
        assert.equal(ours.size, reference.size, `seed ${seed}, op ${n}`);
      }
      assert.deepEqual(sorted(ours.values()), sorted([...reference.values()]), `seed ${seed}`);
      for (const [key, value] of reference) assert.equal(ours.get(key), value);
      // Drained in random order (through every shrink), every remaining key found at each step.
      const left = [...reference.keys()].sort(() => random() - 0.5);
      while (left.length > 0) {
        const key = left.pop()!;
        assert.equal(ours.delete(key), true, `seed ${seed}, draining ${key}`);
        for (const k of left) assert.equal(ours.has(k), true, `seed ${seed}, ${k} lost`);
      }
      assert.equal(ours.size, 0);
    }
  });

  test('the table follows the most entries held at once: churn does not grow it, a burst grows it and is given back', () => {
    const map = new IntKeyMap<number>();
    const initial = map.capacity;
    // 100,000 calls, one at a time (a connection with one call in flight).
    for (let id = 1; id < 200_000; id += 2) {
      map.set(id, id);
      assert.equal(map.delete(id), true);
    }
    assert.equal(map.capacity, initial);
    assert.equal(map.size, 0);
    // A burst of 1,000 at once: at most half full.
    for (let id = 1; id <= 2000; id += 2) map.set(id, id);
    assert.ok(map.capacity >= 2000 && map.capacity <= 4096, `capacity ${map.capacity}`);
    // Drained: the table shrinks back as it empties.
    for (let id = 1; id <= 2000; id += 2) assert.equal(map.delete(id), true);
    assert.ok(map.capacity <= 64, `capacity ${map.capacity} after the burst left`);
    assert.equal(map.get(1), undefined);
  });

  test('stream ids a client picks to share one home slot: all found, removed in any order, the table sound after', () => {
    // The map hashes with the top bits of key × 0x9e3779b1; a table of 2048 slots (1000 entries)
    // uses the top 11. These 1000 odd ids all land in slot 0: one cluster of 1000.
    const ids: number[] = [];
    for (let id = 1; ids.length < 1000; id += 2) {
      if (Math.imul(id, 0x9e3779b1) >>> 21 === 0) ids.push(id);
    }
    const map = new IntKeyMap<number>();
    for (const id of ids) map.set(id, id);
    assert.equal(map.capacity, 2048, 'the table the ids were chosen for');
    for (const id of ids) assert.equal(map.get(id), id);
    // Removed from the cluster's home slot first, then from its middle outwards: each removal
    // shifts the rest back, into the home slot too.
    const order = [ids[0]!, ...ids.slice(500), ...ids.slice(1, 500).reverse()];
    for (let i = 0; i < order.length; i++) {
      assert.equal(map.delete(order[i]!), true);
      if (i % 97 === 0)
        for (const id of order.slice(i + 1)) assert.equal(map.has(id), true, `${id}`);
    }
    assert.equal(map.size, 0);
    map.set(7, 7);
    assert.equal(map.get(7), 7);
  });

  test('values() is a copy: deleting while walking it visits every entry once', () => {
    const map = new IntKeyMap<number>();
    for (let id = 1; id <= 99; id += 2) map.set(id, id);
    const seen: number[] = [];
    for (const v of map.values()) {
      seen.push(v);
      map.delete(v);
    }
    assert.equal(seen.length, 50);
    assert.equal(new Set(seen).size, 50);
    assert.equal(map.size, 0);
  });

  test('set replaces a value; clear empties it', () => {
    const map = new IntKeyMap<string>();
    map.set(7, 'a');
    map.set(7, 'b');
    assert.equal(map.size, 1);
    assert.equal(map.get(7), 'b');
    for (let id = 0; id < 100; id++) map.set(id, `v${id}`);
    map.clear();
    assert.equal(map.size, 0);
    assert.deepEqual(map.values(), []);
    assert.equal(map.has(7), false);
    map.set(7, 'c');
    assert.equal(map.get(7), 'c');
  });

  test('keys that are not non-negative safe integers are refused', () => {
    const map = new IntKeyMap<string>();
    for (const key of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
      assert.throws(() => map.set(key, 'x'), RangeError, String(key));
    }
    assert.equal(map.size, 0);
    // Lookups of such keys simply miss.
    assert.equal(map.get(-1), undefined);
    assert.equal(map.delete(1.5), false);
  });
});
