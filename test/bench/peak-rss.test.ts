// bench/server.ts peakRssDuring: the largest resident set while the work runs, not after it —
// a server's memory under load can fall back before a reading taken at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peakRssDuring } from '../../bench/server.js';
import { waitFor } from '../support/wait-for.js';

test('a peak that is gone when the work ends is still reported; the end is read too', async () => {
  const readings: number[] = [];
  let current = 180;
  const read = (pid: number): number => {
    assert.equal(pid, 4242);
    readings.push(current);
    return current;
  };
  const work = (async () => {
    await waitFor('two readings during the work', () => readings.length >= 2, 10_000);
    current = 260; // the peak, seen by one more reading
    const seen = readings.length;
    await waitFor('a reading of the peak', () => readings.length > seen, 10_000);
    current = 120; // back down before the work ends
    return 'done';
  })();
  const { value, peakRssMb } = await peakRssDuring(4242, work, read);
  assert.equal(value, 'done');
  assert.equal(peakRssMb, 260);
  assert.equal(readings.at(-1), 120, 'the last reading is taken at the end');
  const after = readings.length;
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(readings.length, after, 'no reading after the work ended');
});

test('the real reader: this process, from /proc', async () => {
  const { peakRssMb } = await peakRssDuring(process.pid, Promise.resolve());
  const rss = process.memoryUsage().rss / 1024 / 1024;
  assert.ok(Math.abs(peakRssMb - rss) < rss / 2, `read ${peakRssMb} MB, process says ${rss}`);
});

test('a server that is gone (its /proc unreadable) leaves the readings before it, not a throw', async () => {
  let calls = 0;
  const read = (): number => {
    calls++;
    if (calls > 1) throw new Error('ENOENT: /proc/4242/status');
    return 200;
  };
  const work = (async () => {
    await waitFor('a failed reading', () => calls >= 2, 10_000);
    return 'h2load done';
  })();
  assert.deepEqual(await peakRssDuring(4242, work, read), {
    value: 'h2load done',
    peakRssMb: 200,
  });
});

test('the work failing fails it', async () => {
  await assert.rejects(
    peakRssDuring(process.pid, Promise.reject(new Error('h2load failed'))),
    /h2load failed/,
  );
});
