// serve's admission-control flags (src/cli/serve/options.ts, completeAdmission) and their
// split among --workers (src/server/admission.ts, admissionPerWorker).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { admissionPerWorker } from '../../src/server/admission.js';
import { isCastellanError } from '../../src/errors.js';

const admissionOf = (flags: ServeFlags, cores = 2) =>
  completeServeOptions(flags, {}, cores).server.admission;

test('defaults follow the cores: 16 in flight per core, 16 waiting per slot', () => {
  assert.deepEqual(admissionOf({}, 1), {
    maxInflight: 16,
    maxQueued: 256,
    identityRate: { perSecond: 20, burst: 100 },
    nodeRateFactor: 8,
  });
  assert.equal(admissionOf({}, 8).maxInflight, 128);
  assert.equal(admissionOf({}, 8).maxQueued, 2048);
  // An explicit in-flight bound sizes the automatic queue.
  assert.equal(admissionOf({ maxInflightCsr: '4' }).maxQueued, 64);
});

test('flags set every bound; rates per second, minute or hour; off turns buckets off', () => {
  const a = admissionOf({
    maxInflightCsr: '3',
    maxQueuedCsr: '0',
    rateLimit: '90/m',
    rateLimitBurst: '7',
    nodeRateLimitFactor: '20',
  });
  assert.deepEqual(a, {
    maxInflight: 3,
    maxQueued: 0,
    identityRate: { perSecond: 1.5, burst: 7 },
    nodeRateFactor: 20,
  });
  assert.equal(admissionOf({ rateLimit: '0.5/s' }).identityRate?.perSecond, 0.5);
  assert.equal(admissionOf({ rateLimit: '3600/h' }).identityRate?.perSecond, 1);
  assert.equal(admissionOf({ rateLimit: 'off' }).identityRate, undefined);
  assert.equal(admissionOf({ rateLimit: '0' }).identityRate, undefined);
});

test('bad values are refused, naming the flag', () => {
  for (const [flags, subject, why] of [
    [{ maxInflightCsr: '0' }, '--max-inflight-csr', /not a whole number from 1/],
    [{ maxInflightCsr: 'many' }, '--max-inflight-csr', /"many"/],
    [{ maxQueuedCsr: '-1' }, '--max-queued-csr', /from 0/],
    [{ rateLimit: '10' }, '--rate-limit', /not <n>\/s, <n>\/m, <n>\/h or off/],
    [{ rateLimit: '10/d' }, '--rate-limit', /"10\/d"/],
    [{ rateLimitBurst: '0' }, '--rate-limit-burst', /from 1/],
    [{ nodeRateLimitFactor: '1.5' }, '--node-rate-limit-factor', /whole number/],
    [
      { rateLimit: 'off', rateLimitBurst: '5' },
      '--rate-limit-burst',
      /no effect with --rate-limit off/,
    ],
  ] as const) {
    assert.throws(
      () => admissionOf(flags),
      (e) =>
        isCastellanError(e, 'invalid-argument') && e.subject === subject && why.test(e.message),
      JSON.stringify(flags),
    );
  }
});

test('--workers: in-flight and queue bounds are split, token buckets stay whole per worker', () => {
  const total = admissionOf({ maxInflightCsr: '33', maxQueuedCsr: '5' });
  assert.deepEqual(admissionPerWorker(total, 2), {
    ...total,
    maxInflight: 17,
    maxQueued: 3,
  });
  assert.equal(admissionPerWorker(admissionOf({ maxInflightCsr: '1' }), 4).maxInflight, 1);
  assert.equal(admissionPerWorker(admissionOf({ maxQueuedCsr: '0' }), 4).maxQueued, 0);
});
