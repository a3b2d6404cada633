import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, formatDuration, parseGoDuration } from '../src/duration.js';
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

// Go's time.ParseDuration, which istiod's environment variables go through (istio/istio
// pkg/env/var.go, DurationVar.Lookup): the cases below follow Go's own parse table
// (src/time/time_test.go, parseDurationTests), in milliseconds.
test('parseGoDuration reads what Go reads, signs and zero included', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['-0', 0],
    ['+0', 0],
    ['5s', 5000],
    ['30s', 30_000],
    ['1478s', 1_478_000],
    ['-5s', -5000],
    ['+5s', 5000],
    ['-0s', 0],
    ['5.0s', 5000],
    ['5.6s', 5600],
    ['5.s', 5000],
    ['.5s', 500],
    ['1.0s', 1000],
    ['1.004s', 1004],
    ['100.00100s', 100_001],
    ['10ns', 0.00001],
    ['11us', 0.011],
    ['12µs', 0.012],
    ['12μs', 0.012],
    ['13ms', 13],
    ['14s', 14_000],
    ['15m', 900_000],
    ['16h', 16 * 3_600_000],
    ['3h30m', 12_600_000],
    ['10.5s4m', 250_500],
    ['-2m3.4s', -123_400],
    ['1h2m3s4ms5us6ns', 3_723_004.005006],
    ['39h9m14.425s', (39 * 3600 + 9 * 60 + 14.425) * 1000],
    ['52763797000ns', 52_763.797],
    ['0.3333333333333333333h', 1_200_000],
    ['24h', 86_400_000],
    ['2160h', 2160 * 3_600_000],
    ['87600h', 87_600 * 3_600_000],
  ];
  for (const [text, ms] of cases) {
    assert.ok(Math.abs(parseGoDuration(text) - ms) < 1e-6, `${text}: ${parseGoDuration(text)}`);
  }
});

test("parseGoDuration refuses what Go refuses, in Go's words", () => {
  const cases: [string, string][] = [
    ['', 'invalid duration ""'],
    ['3', 'missing unit in duration "3"'],
    ['3600', 'missing unit in duration "3600"'],
    ['7d', 'unknown unit "d" in duration "7d"'],
    ['1h 30m', 'unknown unit "h " in duration "1h 30m"'],
    ['-', 'invalid duration "-"'],
    ['s', 'invalid duration "s"'],
    ['.', 'invalid duration "."'],
    ['-.', 'invalid duration "-."'],
    ['.s', 'invalid duration ".s"'],
    ['+.s', 'invalid duration "+.s"'],
    ['1d', 'unknown unit "d" in duration "1d"'],
    ['9223372036854775808ns', 'invalid duration "9223372036854775808ns"'],
    ['9223372036854775.808us', 'invalid duration "9223372036854775.808us"'],
    ['-9223372036854775809ns', 'invalid duration "-9223372036854775809ns"'],
  ];
  for (const [text, why] of cases) {
    assert.throws(
      () => parseGoDuration(text),
      (e: unknown) =>
        isCastellanError(e, 'invalid-argument') &&
        e.message === `${why}: Go durations are written like 24h, 90m, 1h30m, 1.5h or 500ms`,
      text,
    );
  }
  // The largest Go duration, and its negative one further.
  assert.equal(parseGoDuration('9223372036854775807ns'), 9_223_372_036_854.775);
  assert.equal(parseGoDuration('-9223372036854775808ns'), -9_223_372_036_854.775);
});
