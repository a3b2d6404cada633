// The queue of admission's waiting calls (src/server/fifo-ring.ts): first in, first out, removal
// from anywhere, and an array that grows with the most ever queued at once, never with use.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FifoRing, type RingItem } from '../../src/server/fifo-ring.js';

interface Item extends RingItem {
  readonly name: string;
}

const item = (name: string): Item => ({ name, ringIndex: -1 });
const drain = (ring: FifoRing<Item>): string[] => {
  const names: string[] = [];
  for (let i = ring.shift(); i !== undefined; i = ring.shift()) names.push(i.name);
  return names;
};

describe('FifoRing', () => {
  test('first in, first out, across wrap-arounds and growth', () => {
    const ring = new FifoRing<Item>(4);
    const expected: string[] = [];
    const got: string[] = [];
    let n = 0;
    // Three in, two out, over and over: the ring wraps, then grows as the backlog builds.
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k < 3; k++) {
        const name = `c${n++}`;
        expected.push(name);
        ring.push(item(name));
      }
      for (let k = 0; k < 2; k++) got.push((ring.shift() as Item).name);
    }
    assert.equal(ring.size, 20);
    got.push(...drain(ring));
    assert.deepEqual(got, expected);
    assert.equal(ring.size, 0);
    assert.equal(ring.shift(), undefined);
  });

  test('an item is taken out from anywhere; the rest keep their order', () => {
    const ring = new FifoRing<Item>(4);
    const items = ['a', 'b', 'c', 'd', 'e', 'f'].map(item);
    for (const i of items) ring.push(i);
    assert.equal(ring.remove(items[0] as Item), true, 'the head');
    assert.equal(ring.remove(items[3] as Item), true, 'the middle');
    assert.equal(ring.remove(items[5] as Item), true, 'the tail');
    assert.equal(ring.size, 3);
    assert.deepEqual(drain(ring), ['b', 'c', 'e']);
  });

  test('removing what is not queued is refused: never queued, already taken, or removed twice', () => {
    const ring = new FifoRing<Item>(2);
    const stranger = item('stranger');
    assert.equal(ring.remove(stranger), false);
    const first = item('first');
    const second = item('second');
    ring.push(first);
    ring.push(second);
    assert.equal(ring.shift(), first);
    assert.equal(ring.remove(first), false, 'already taken by shift');
    assert.equal(ring.remove(second), true);
    assert.equal(ring.remove(second), false, 'removed twice');
    // Empty again: positions restart from 0, and an item from before does not match a new one.
    const third = item('third');
    ring.push(third);
    assert.equal(ring.remove(first), false);
    assert.equal(ring.remove(stranger), false);
    assert.deepEqual(drain(ring), ['third']);
  });

  test('the array follows the most ever queued at once, not the number of calls (holes are compacted, not grown)', () => {
    const ring = new FifoRing<Item>(4);
    // 100,000 calls through a queue that never holds more than 8: the array stays at 8.
    const queued: Item[] = [];
    for (let n = 0; n < 100_000; n++) {
      const i = item(`c${n}`);
      ring.push(i);
      queued.push(i);
      if (queued.length === 8) {
        // Half leave from the middle (clients that cancelled), half are served in order.
        for (const left of queued.splice(2, 4)) assert.equal(ring.remove(left), true);
        for (const served of queued.splice(0, 2)) assert.equal(ring.shift(), served);
      }
    }
    assert.ok(ring.capacity <= 16, `capacity ${ring.capacity}`);
    assert.deepEqual(
      drain(ring),
      queued.map((i) => i.name),
    );
    // One call waits at the head while 100,000 others arrive and leave behind it: their holes
    // are compacted in the same array.
    const first = item('first');
    ring.push(first);
    const before = ring.capacity;
    for (let n = 0; n < 100_000; n++) {
      const i = item(`gone${n}`);
      ring.push(i);
      assert.equal(ring.remove(i), true);
    }
    assert.equal(ring.capacity, before);
    assert.deepEqual(drain(ring), ['first']);
    // A backlog of 1,000 grows it to hold them, in order.
    const backlog = Array.from({ length: 1000 }, (_, n) => item(`b${n}`));
    for (const i of backlog) ring.push(i);
    assert.ok(ring.capacity >= 1000 && ring.capacity <= 2048, `capacity ${ring.capacity}`);
    assert.deepEqual(
      drain(ring),
      backlog.map((i) => i.name),
    );
  });
});
