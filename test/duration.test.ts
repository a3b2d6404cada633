import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, formatDuration } from '../src/duration.js';
import { isCastellanError } from '../src/errors.js';

test('parseDuration reads Go-style durations and plain seconds', () => {
  assert.equal(parseDuration('24h'), 86_400_000);
  assert.equal(parseDuration('90m'), 5_400_000);
  assert.equal(parseDuration('2160h'), 2160 * 3_600_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('3600'), 3_600_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1.5h'), 5_400_000);
});

test('parseDuration refuses bad values with a message naming them', () => {
  for (const bad of ['', '0', '-5', '10x', 'h', '1h-30m', 'abc', '0s']) {
    assert.throws(
      () => parseDuration(bad, '--ttl'),
      (e: unknown) =>
        isCastellanError(e, 'invalid-argument') &&
        e.message.includes(`"${bad}"`) &&
        e.message.includes('--ttl'),
      bad,
    );
  }
});

test('formatDuration round-trips through parseDuration', () => {
  for (const ms of [1000, 5_400_000, 86_400_000, 90 * 86_400_000, 3_723_000]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
});
