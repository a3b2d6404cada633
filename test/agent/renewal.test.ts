import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_RENEWAL_POLICY as P,
  isRetriable,
  renewalTime,
  retryDelay,
} from '../../src/agent/renewal.js';

const HOUR = 3_600_000;
const cert = { notBefore: 1_000_000, notAfter: 1_000_000 + 24 * HOUR };

test('renews at half-life by default, within ±1% of the lifetime of jitter', () => {
  assert.equal(
    renewalTime(cert, P, () => 0.5),
    cert.notBefore + 12 * HOUR,
  );
  const early = renewalTime(cert, P, () => 0.999999);
  const late = renewalTime(cert, P, () => 0);
  assert.ok(Math.abs(early - (cert.notBefore + 12 * HOUR - 0.01 * 24 * HOUR)) < 1000);
  assert.ok(Math.abs(late - (cert.notBefore + 12 * HOUR + 0.01 * 24 * HOUR)) < 1000);
});

test('grace ratio is the fraction of the lifetime left at renewal (Istio semantics)', () => {
  const p = { ...P, graceRatio: 0.1, graceRatioJitter: 0 };
  assert.equal(renewalTime(cert, p, Math.random), cert.notAfter - 2.4 * HOUR);
  const clamp = { ...P, graceRatio: 0.999, graceRatioJitter: 0.5 };
  assert.equal(
    renewalTime(cert, clamp, () => 0.99),
    cert.notBefore,
  );
});

test('retriable errors back off exponentially with equal jitter, capped', () => {
  const delays = [1, 2, 3, 4, 5, 6, 7, 8, 20].map((n) =>
    retryDelay('unavailable', n, P, () => 0, 0),
  );
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(
    retryDelay('internal', 3, P, () => 0.999999, 0),
    4000 - 0.002,
  );
  for (let n = 1; n < 12; n++) {
    const d = retryDelay('unavailable', n, P, Math.random, 0);
    const ceiling = Math.min(P.retryMaxMs, P.retryInitialMs * 2 ** (n - 1));
    assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${n}: ${d}`);
  }
});

test('while a certificate is valid, retries come before it expires', () => {
  const p = { ...P, retryMaxMs: 10 * 60_000 };
  const now = 0;
  const current = { notBefore: -50_000, notAfter: 30_000 };
  const d = retryDelay('unavailable', 20, p, () => 1, now, current);
  assert.equal(d, 15_000);
  // Never faster than the initial delay, even right before expiry.
  assert.equal(
    retryDelay('unavailable', 20, p, () => 1, 29_900, current),
    P.retryInitialMs,
  );
});

test('non-retriable errors wait the long backoff (±10%), whatever the attempt', () => {
  for (const kind of ['unauthenticated', 'invalid-argument', 'permission-denied'] as const) {
    assert.equal(isRetriable(kind), false);
    assert.equal(
      retryDelay(kind, 1, P, () => 0.5, 0),
      P.nonRetriableBackoffMs,
    );
    assert.equal(
      retryDelay(kind, 1, P, () => 0, 0),
      0.9 * P.nonRetriableBackoffMs,
    );
  }
  assert.equal(isRetriable('unavailable'), true);
  assert.equal(isRetriable('internal'), true);
});
