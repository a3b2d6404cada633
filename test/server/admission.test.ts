// Admission control on its own (src/server/admission.ts): the in-flight limit, its bounded
// priority queue, the token buckets, on a ManualClock. The reliability suite
// (test/reliability/admission.test.ts) drives the same code through a real server.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Admission,
  isUrgentRenewal,
  QueueAbandoned,
  Shed,
  type AdmissionOptions,
  type Slot,
  formatRate,
} from '../../src/server/admission.js';
import { isCastellanError } from '../../src/errors.js';
import { ManualClock } from '../support/manual-clock.js';

const OPTIONS: AdmissionOptions = {
  maxInflight: 2,
  maxQueued: 3,
  identityRate: { perSecond: 2, burst: 4 },
  nodeRateFactor: 10,
};

function admission(options: Partial<AdmissionOptions> = {}, clock = new ManualClock()) {
  return { a: new Admission({ ...OPTIONS, ...options }, clock), clock };
}

/** The order in which waiters get their slots, by label. */
function track(p: Promise<Slot>, label: string, order: string[]): Promise<Slot> {
  return p.then((slot) => {
    order.push(label);
    return slot;
  });
}

async function shedOf(p: Promise<unknown> | (() => unknown)): Promise<Shed> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.ok(e instanceof Shed, `expected a Shed, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a Shed');
}

describe('in-flight limit and queue', () => {
  test('slots are granted at once up to maxInflight; the next calls wait, in arrival order', async () => {
    const { a } = admission();
    const first = await a.acquire();
    const second = await a.acquire();
    assert.equal(a.inflight, 2);
    const order: string[] = [];
    const third = track(a.acquire(), 'third', order);
    const fourth = track(a.acquire(), 'fourth', order);
    assert.equal(a.queued, 2);
    await Promise.resolve();
    assert.deepEqual(order, []);
    first.release();
    first.release(); // idempotent: frees one slot, not two
    (await third).release();
    second.release();
    (await fourth).release();
    assert.deepEqual(order, ['third', 'fourth']);
    assert.equal(a.inflight, 0);
    assert.equal(a.queued, 0);
  });

  test('beyond the queue, a call is shed at once with reason queue_full and a retry hint', async () => {
    const { a } = admission();
    await a.acquire();
    await a.acquire();
    for (let i = 0; i < 3; i++) void a.acquire();
    const shed = await shedOf(a.acquire());
    assert.equal(shed.reason, 'queue_full');
    assert.equal(shed.kind, 'resource-exhausted');
    assert.ok(shed.retryAfterMs >= 50 && shed.retryAfterMs <= 30_000, String(shed.retryAfterMs));
    assert.match(shed.message, /2 requests in progress and 3 waiting: retry in \d+ ms/);
    assert.equal(a.queued, 3, 'the shed call took no place');
  });

  test('the queue-full hint follows the measured service time', async () => {
    const { a, clock } = admission({ maxInflight: 1, maxQueued: 1 });
    // Calls that take 400 ms each: the hint moves from the 10 ms assumed towards 400 ms.
    for (let i = 0; i < 30; i++) {
      const slot = await a.acquire();
      await clock.advance(400);
      slot.release();
    }
    const held = await a.acquire();
    void a.acquire();
    const shed = await shedOf(a.acquire());
    // 2 calls ahead (one in flight, one queued), one at a time, ≈ 400 ms each.
    assert.ok(shed.retryAfterMs > 600 && shed.retryAfterMs <= 800, String(shed.retryAfterMs));
    held.release();
  });

  test('maxQueued 0: everything beyond the in-flight limit is shed', async () => {
    const { a } = admission({ maxQueued: 0 });
    await a.acquire();
    await a.acquire();
    assert.equal((await shedOf(a.acquire())).reason, 'queue_full');
  });

  test('an urgent renewal goes ahead of first-time requests, the earliest expiry first', async () => {
    const { a } = admission({ maxInflight: 1, maxQueued: 10 });
    const held = await a.acquire();
    const order: string[] = [];
    // Each call releases its slot as soon as it has it: the slot goes to the next in line.
    const run = (p: Promise<Slot>, label: string): Promise<void> =>
      track(p, label, order).then((slot) => slot.release());
    const calls = [
      run(a.acquire(), 'first-time 1'),
      run(a.acquire({ urgentUntilMs: 5000 }), 'renewal expiring at 5000'),
      run(a.acquire(), 'first-time 2'),
      run(a.acquire({ urgentUntilMs: 2000 }), 'renewal expiring at 2000'),
      run(a.acquire({ urgentUntilMs: 5000 }), 'renewal expiring at 5000 (later)'),
    ];
    held.release();
    await Promise.all(calls);
    assert.deepEqual(order, [
      'renewal expiring at 2000',
      'renewal expiring at 5000',
      'renewal expiring at 5000 (later)',
      'first-time 1',
      'first-time 2',
    ]);
  });

  test('a queued call whose client cancels leaves the queue and frees its place', async () => {
    const { a } = admission({ maxInflight: 1, maxQueued: 1 });
    const held = await a.acquire();
    const cancel = new AbortController();
    const urgentCancel = new AbortController();
    const waiting = a.acquire({}, cancel.signal);
    assert.equal(a.queued, 1);
    assert.equal((await shedOf(a.acquire())).reason, 'queue_full');
    cancel.abort();
    await assert.rejects(waiting, (e) => e instanceof QueueAbandoned && isCastellanError(e));
    assert.equal(a.queued, 0);
    // The freed place takes another call; an urgent one leaves the same way.
    const urgent = a.acquire({ urgentUntilMs: 1 }, urgentCancel.signal);
    urgentCancel.abort();
    await assert.rejects(urgent, QueueAbandoned);
    assert.equal(a.queued, 0);
    // Cancelling after the grant changes nothing: the slot is the caller's to release.
    const later = new AbortController();
    const next = a.acquire({}, later.signal);
    held.release();
    const slot = await next;
    later.abort();
    assert.equal(a.inflight, 1);
    slot.release();
    assert.equal(a.inflight, 0);
  });

  test('an already-aborted signal is refused without queueing', async () => {
    const { a } = admission();
    const c = new AbortController();
    c.abort();
    await assert.rejects(a.acquire({}, c.signal), QueueAbandoned);
    assert.equal(a.inflight, 0);
  });
});

describe('token buckets', () => {
  test('an identity gets its burst, then one call per 1/perSecond; others are not affected', async () => {
    const { a, clock } = admission();
    const flood = { kind: 'identity', spiffeId: 'spiffe://td/ns/a/sa/flood' } as const;
    const other = { kind: 'identity', spiffeId: 'spiffe://td/ns/b/sa/other' } as const;
    for (let i = 0; i < 4; i++) a.charge(flood);
    const shed = await shedOf(() => a.charge(flood));
    assert.equal(shed.reason, 'identity_rate');
    // 2/s: the next token is 500 ms away.
    assert.equal(shed.retryAfterMs, 500);
    assert.match(
      shed.message,
      /identity spiffe:\/\/td\/ns\/a\/sa\/flood is over its rate limit \(2\/s, burst 4\)/,
    );
    for (let i = 0; i < 4; i++) a.charge(other);
    await clock.advance(499);
    assert.equal((await shedOf(() => a.charge(flood))).retryAfterMs, 1);
    await clock.advance(1);
    a.charge(flood);
    assert.equal((await shedOf(() => a.charge(flood))).reason, 'identity_rate');
  });

  test('a node proxy has its budget per node: factor times the identity rate', async () => {
    const { a } = admission();
    const node1 = {
      kind: 'node',
      caller: 'spiffe://td/ns/istio-system/sa/ztunnel',
      node: 'n1',
    } as const;
    const node2 = { ...node1, node: 'n2' } as const;
    for (let i = 0; i < 40; i++) a.charge(node1);
    const shed = await shedOf(() => a.charge(node1));
    assert.equal(shed.reason, 'node_rate');
    assert.equal(shed.retryAfterMs, 50); // 20/s
    assert.match(
      shed.message,
      /node proxy .*ztunnel on node n1 is over its rate limit \(20\/s, burst 40\)/,
    );
    a.charge(node2);
    // The node proxy's own identity (its first certificate, no impersonation) is another bucket.
    a.charge({ kind: 'identity', spiffeId: node1.caller });
  });

  test('no identity rate: charge never refuses', () => {
    const { a } = admission({ identityRate: undefined });
    for (let i = 0; i < 1000; i++) a.charge({ kind: 'identity', spiffeId: 'x' });
  });

  test('refilled buckets are dropped, so memory stays bounded by the active identities', async () => {
    const { a, clock } = admission();
    for (let i = 0; i < 5000; i++) {
      a.charge({ kind: 'identity', spiffeId: `spiffe://td/ns/n/sa/sa-${i}` });
      if (i % 100 === 99) await clock.advance(2000); // every bucket so far has refilled
    }
    // Without the sweep there would be 5,000; with it, those not yet refilled and at most
    // twice the last sweep's survivors.
    assert.ok(a.bucketCount < 1100, `${a.bucketCount} buckets kept`);
  });

  test('a clock that steps back neither refills nor drains a bucket', async () => {
    const clock = new ManualClock(1_000_000);
    const { a } = admission({}, clock);
    const id = { kind: 'identity', spiffeId: 's' } as const;
    for (let i = 0; i < 4; i++) a.charge(id);
    clock.set(0);
    await shedOf(() => a.charge(id));
    await clock.advance(500);
    a.charge(id);
  });
});

test('a rate in a refusal reads as --rate-limit takes it: the first unit where it is whole', () => {
  assert.equal(formatRate(20), '20/s');
  assert.equal(formatRate(1 / 60), '1/m');
  assert.equal(formatRate(100 / 60), '100/m');
  assert.equal(formatRate(90 / 3600), '90/h');
  assert.equal(formatRate(30 / 3600), '30/h');
  assert.equal(formatRate(0.5), '30/m');
  assert.equal(formatRate(7 / 3), '140/m');
  assert.equal(formatRate(2.5), '150/m');
  assert.equal(formatRate(1 / 7200), '0.000138889/s');
});

test('a renewal is urgent once less than a quarter of its certificate lifetime is left', () => {
  assert.equal(isUrgentRenewal(0, 1000, 749), false);
  assert.equal(isUrgentRenewal(0, 1000, 750), true);
  assert.equal(isUrgentRenewal(0, 1000, 2000), true);
  assert.equal(isUrgentRenewal(1000, 1000, 1000), false, 'no lifetime: not a usable date pair');
});

test('bad options are refused with the field named', () => {
  const clock = new ManualClock();
  for (const [bad, subject] of [
    [{ maxInflight: 0 }, 'maxInflight'],
    [{ maxQueued: -1 }, 'maxQueued'],
    [{ maxQueued: 1.5 }, 'maxQueued'],
    [{ nodeRateFactor: 0.5 }, 'nodeRateFactor'],
    [{ identityRate: { perSecond: 0, burst: 1 } }, 'identityRate.perSecond'],
    [{ identityRate: { perSecond: 1, burst: 0 } }, 'identityRate.burst'],
  ] as const) {
    assert.throws(
      () => new Admission({ ...OPTIONS, ...bad }, clock),
      (e) => isCastellanError(e, 'invalid-argument') && e.subject === subject,
    );
  }
});
