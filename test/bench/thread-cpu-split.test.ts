// bench/server.ts threadCpuSplit: the server's CPU over a run, split into event loops (each
// process's main thread), crypto threads (each process's busiest other thread) and the rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { threadCpuSplit } from '../../bench/server.js';

test('each process: its main thread is the loop, its busiest other thread the crypto thread', () => {
  const before = new Map([
    ['100/100', 1.0],
    ['100/101', 2.0], // crypto thread
    ['100/102', 0.5], // libuv pool
    ['200/200', 0.0],
    ['200/201', 0.1],
    ['200/202', 0.3], // busiest other of the second process
  ]);
  const after = new Map([
    ['100/100', 3.0],
    ['100/101', 5.0],
    ['100/102', 0.75],
    ['100/103', 0.25], // started during the run: counted from 0
    ['200/200', 1.0],
    ['200/201', 0.2],
    ['200/202', 1.3],
  ]);
  const split = threadCpuSplit(before, after);
  assert.deepEqual(
    {
      loop: split.loop.toFixed(2),
      crypto: split.crypto.toFixed(2),
      other: split.other.toFixed(2),
    },
    { loop: '3.00', crypto: '4.00', other: '0.60' },
  );
});

test('a process with only its main thread: no crypto thread, nothing else', () => {
  const split = threadCpuSplit(new Map([['7/7', 1]]), new Map([['7/7', 1.5]]));
  assert.deepEqual(split, { loop: 0.5, crypto: 0, other: 0 });
});
