import { test } from 'node:test';
import assert from 'node:assert/strict';
import { base64url } from 'jose';
import { CachingTokenReviewer } from '../../src/authn/caching-token-reviewer.js';
import type {
  TokenReviewResult,
  TokenReviewer,
} from '../../src/authn/token-review-authenticator.js';
import { ManualClock } from '../support/manual-clock.js';

const T0 = Date.UTC(2026, 0, 1);
const OK: TokenReviewResult = {
  authenticated: true,
  user: { username: 'system:serviceaccount:a:b', groups: ['system:serviceaccounts'] },
};

/** A JWT-shaped token; the cache reads only `exp`, without verifying. */
function token(exp: number | undefined, n = 0): string {
  const payload = base64url.encode(
    JSON.stringify({ sub: `s${n}`, ...(exp !== undefined ? { exp } : {}) }),
  );
  return `eyJhbGciOiJSUzI1NiJ9.${payload}.c2ln`;
}

/** Counts calls, like the fake API server; answers can be held to test single flight. */
class CountingReviewer implements TokenReviewer {
  calls = 0;
  answer: TokenReviewResult | Error = OK;
  private release: (() => void) | undefined;
  hold(): void {
    let r!: () => void;
    const gate = new Promise<void>((res) => (r = res));
    this.gate = gate;
    this.release = r;
  }
  open(): void {
    this.release?.();
    this.gate = undefined;
  }
  private gate: Promise<void> | undefined;
  async review(): Promise<TokenReviewResult> {
    this.calls++;
    if (this.gate) await this.gate;
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  }
}

test('a repeated review is answered from the cache and counted', async () => {
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock: new ManualClock(T0) });
  const t = token(T0 / 1000 + 3600);
  for (let i = 0; i < 5; i++) assert.deepEqual(await cache.review(t, ['istio-ca']), OK);
  assert.equal(inner.calls, 1);
  assert.deepEqual(cache.stats(), { hits: 4, misses: 1, shared: 0, size: 1 });
});

test('the key covers token, audiences (as a set) and cluster', async () => {
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock: new ManualClock(T0) });
  const t = token(T0 / 1000 + 3600);
  await cache.review(t, ['a', 'b']);
  await cache.review(t, ['b', 'a']);
  assert.equal(inner.calls, 1);
  await cache.review(t, ['a']);
  await cache.review(t, ['a', 'b'], 'cluster-2');
  await cache.review(token(T0 / 1000 + 3600, 1), ['a', 'b']);
  assert.equal(inner.calls, 4);
});

test("an entry never outlives the token's exp", async () => {
  const clock = new ManualClock(T0);
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock, maxAgeMs: 60_000 });
  const t = token(T0 / 1000 + 10); // expires in 10 s, before the 60 s maximum
  await cache.review(t, ['istio-ca']);
  await clock.advance(9_999);
  await cache.review(t, ['istio-ca']);
  assert.equal(inner.calls, 1);
  await clock.advance(1);
  await cache.review(t, ['istio-ca']);
  assert.equal(inner.calls, 2, 'at exp the API server is asked again');
  // An already expired token is never cached.
  const expired = token(T0 / 1000 - 1);
  await cache.review(expired, ['istio-ca']);
  await cache.review(expired, ['istio-ca']);
  assert.equal(inner.calls, 4);
});

test('an entry never outlives the maximum age, also for tokens without exp', async () => {
  const clock = new ManualClock(T0);
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock, maxAgeMs: 60_000 });
  for (const t of [token(T0 / 1000 + 3600), token(undefined, 2), 'opaque-not-a-jwt']) {
    const before = inner.calls;
    await cache.review(t, ['istio-ca']);
    await clock.advance(59_999);
    await cache.review(t, ['istio-ca']);
    assert.equal(inner.calls, before + 1);
    await clock.advance(1);
    await cache.review(t, ['istio-ca']);
    assert.equal(inner.calls, before + 2);
    await clock.advance(120_000);
  }
});

test('refusals and errors are not cached', async () => {
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock: new ManualClock(T0) });
  const t = token(T0 / 1000 + 3600);
  inner.answer = { authenticated: false, error: 'invalid bearer token' };
  await cache.review(t, ['istio-ca']);
  await cache.review(t, ['istio-ca']);
  inner.answer = new Error('API server unavailable');
  await assert.rejects(cache.review(t, ['istio-ca']), /unavailable/);
  inner.answer = OK;
  await cache.review(t, ['istio-ca']);
  await cache.review(t, ['istio-ca']);
  assert.equal(inner.calls, 4);
  assert.equal(cache.stats().size, 1);
});

test('the cache is bounded, evicting the least recently used', async () => {
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock: new ManualClock(T0), maxEntries: 3 });
  const [a, b, c, d] = [0, 1, 2, 3].map((n) => token(T0 / 1000 + 3600, n)) as [
    string,
    string,
    string,
    string,
  ];
  await cache.review(a, ['x']);
  await cache.review(b, ['x']);
  await cache.review(c, ['x']);
  await cache.review(a, ['x']); // a is now the most recent; b the least
  await cache.review(d, ['x']); // evicts b
  assert.equal(cache.stats().size, 3);
  const calls = inner.calls;
  await cache.review(a, ['x']);
  await cache.review(c, ['x']);
  await cache.review(d, ['x']);
  assert.equal(inner.calls, calls, 'a, c, d still cached');
  await cache.review(b, ['x']);
  assert.equal(inner.calls, calls + 1, 'b was evicted');
});

test('concurrent identical reviews share one request (single flight), failures included', async () => {
  const inner = new CountingReviewer();
  const cache = new CachingTokenReviewer(inner, { clock: new ManualClock(T0) });
  const t = token(T0 / 1000 + 3600);
  inner.hold();
  const all = Array.from({ length: 50 }, () => cache.review(t, ['istio-ca']));
  inner.open();
  const results = await Promise.all(all);
  assert.equal(inner.calls, 1);
  assert.ok(results.every((r) => r === results[0]));
  assert.deepEqual(cache.stats(), { hits: 0, misses: 1, shared: 49, size: 1 });

  const u = token(T0 / 1000 + 3600, 9);
  inner.answer = new Error('boom');
  inner.hold();
  const failing = Array.from({ length: 10 }, () => cache.review(u, ['istio-ca']));
  inner.open();
  const settled = await Promise.allSettled(failing);
  assert.ok(settled.every((s) => s.status === 'rejected'));
  assert.equal(inner.calls, 2);
  inner.answer = OK;
  await cache.review(u, ['istio-ca']);
  assert.equal(inner.calls, 3, 'a failed flight is not remembered');
});

test('bad options are refused', () => {
  assert.throws(
    () => new CachingTokenReviewer(new CountingReviewer(), { maxEntries: 0 }),
    /positive integer/,
  );
  assert.throws(
    () => new CachingTokenReviewer(new CountingReviewer(), { maxAgeMs: -1 }),
    /must be positive/,
  );
});
