// CsrCheckPool: CSR checks on worker threads give exactly what the inline check gives (fields,
// or error kind, message and subject), run inline until a thread is ready, survive a thread
// that dies, and stop respawning a thread that keeps dying.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { isCastellanError } from '../../src/errors.js';
import {
  CRYPTO_THREAD_LIMITS,
  CsrCheckPool,
  inlineCsrChecker,
  resolveCsrThreads,
} from '../../src/server/csr-check-threads.js';
import type { CheckedCsr } from '../../src/pki/csr.js';
import { opensslCsr } from './support/client.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';

const pools: CsrCheckPool[] = [];
after(() => Promise.all(pools.map((p) => p.close())));
function pool(
  threads: number,
  options: Partial<ConstructorParameters<typeof CsrCheckPool>[1]> = {},
): CsrCheckPool {
  const p = new CsrCheckPool(threads, { clock: new ManualClock(), ...options });
  pools.push(p);
  return p;
}

type Outcome = { ok: true; csr: CheckedCsr } | { ok: false; error: unknown };
async function outcome(check: () => CheckedCsr | Promise<CheckedCsr>): Promise<Outcome> {
  try {
    return { ok: true, csr: await check() };
  } catch (e) {
    return {
      ok: false,
      error: isCastellanError(e) ? { kind: e.kind, message: e.message, subject: e.subject } : e,
    };
  }
}

function summary(o: Outcome): unknown {
  if (!o.ok) return o.error;
  return {
    der: Buffer.from(o.csr.der).toString('hex'),
    spki: Buffer.from(o.csr.spki).toString('hex'),
    keyType: o.csr.keyType,
    commonName: o.csr.commonName,
    requestedSans: o.csr.requestedSans,
  };
}

test('a thread checks exactly as the inline check does, accepted or refused', async () => {
  const p = pool(1);
  await waitFor('a ready thread', () => p.readyThreads === 1, 20_000);
  const ec = opensslCsr('ec').csrPem;
  const rsa = opensslCsr('rsa:2048').csrPem;
  const flipped = ec.replace(/[A-Za-z](?=[^\n]*\n-----END)/, (c) => (c === 'A' ? 'B' : 'A'));
  const inputs = [
    ec,
    rsa,
    opensslCsr('rsa:1024').csrPem, // weak-key
    flipped, // bad-signature or malformed, whichever the flip gives
    'not a CSR', // malformed
    'x'.repeat(20_000), // too-large
    ec.replace('CERTIFICATE REQUEST', 'CERTIFICATE'), // malformed: wrong label
  ];
  const kinds = new Set<string>();
  for (const pem of inputs) {
    const viaThread = p.check(pem);
    assert.ok(viaThread instanceof Promise, 'a ready pool checks on its thread');
    const [threaded, inline] = [
      await outcome(() => viaThread),
      await outcome(() => inlineCsrChecker.check(pem)),
    ];
    assert.deepEqual(summary(threaded), summary(inline), pem.slice(0, 80));
    kinds.add(threaded.ok ? 'ok' : (threaded.error as { kind: string }).kind);
  }
  for (const k of ['ok', 'weak-key', 'malformed', 'too-large']) assert.ok(kinds.has(k), k);
  // Many at once come back to the right callers.
  const many = await Promise.all(
    Array.from({ length: 40 }, (_, i) => Promise.resolve(p.check(i % 2 ? ec : rsa))),
  );
  many.forEach((csr, i) => assert.equal(csr.keyType, i % 2 ? 'ec-p256' : 'rsa-2048'));
});

test('before its thread is ready, a pool checks inline', () => {
  const p = pool(1);
  const result = p.check(opensslCsr('ec').csrPem);
  assert.ok(!(result instanceof Promise), 'checked on the calling thread');
  assert.equal(result.keyType, 'ec-p256');
});

test('a thread that dies fails only its own checks and is replaced; one that keeps dying is given up', async () => {
  const clock = new ManualClock();
  const workerUrl = new URL('./support/exiting-csr-worker.js', import.meta.url);
  const p = pool(1, { workerUrl, clock });
  await waitFor('a ready thread', () => p.readyThreads === 1, 20_000);
  const refused = await outcome(() => p.check('anything'));
  assert.deepEqual(summary(refused), {
    kind: 'malformed',
    message: 'test thread',
    subject: undefined,
  });

  // Deaths far apart: each one is replaced.
  for (let i = 0; i < 5; i++) {
    await clock.advance(60_000);
    const died = await outcome(() => p.check('exit'));
    assert.ok(!died.ok && isInternal(died.error), JSON.stringify(died));
    await waitFor('a ready thread', () => p.readyThreads === 1, 20_000);
  }
  // Four deaths within the window: no more threads, checks go inline (the real parser here).
  await clock.advance(60_000);
  for (let i = 0; i < 4; i++) {
    await outcome(() => p.check('exit'));
    if (i < 3) await waitFor('a ready thread', () => p.readyThreads === 1, 20_000);
  }
  await waitFor('no thread left', () => p.readyThreads === 0, 5_000);
  const inline = p.check(opensslCsr('ec').csrPem);
  assert.ok(!(inline instanceof Promise), 'given up: checked inline');
  assert.equal(inline.keyType, 'ec-p256');
});

test('the thread runs with a capped young generation (resident memory: CRYPTO_THREAD_LIMITS)', async () => {
  const workerUrl = new URL('./support/exiting-csr-worker.js', import.meta.url);
  const p = pool(1, { workerUrl });
  await waitFor('a ready thread', () => p.readyThreads === 1, 20_000);
  const seen = await outcome(() => p.check('limits'));
  assert.ok(!seen.ok);
  const limits = JSON.parse((seen.error as { message: string }).message) as Record<string, number>;
  assert.equal(limits['maxYoungGenerationSizeMb'], CRYPTO_THREAD_LIMITS.maxYoungGenerationSizeMb);
  assert.equal(CRYPTO_THREAD_LIMITS.maxYoungGenerationSizeMb, 4);
});

function isInternal(e: unknown): boolean {
  return (e as { kind?: string }).kind === 'internal';
}

test('auto: one thread with a second core, none on one core; counts as given', () => {
  assert.equal(resolveCsrThreads('auto', 1), 0);
  assert.equal(resolveCsrThreads('auto', 2), 1);
  assert.equal(resolveCsrThreads('auto', 16), 1);
  assert.equal(resolveCsrThreads(0, 16), 0);
  assert.equal(resolveCsrThreads(3, 1), 3);
});
