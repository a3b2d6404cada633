import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { LeaderElector, whileLeader } from '../../src/kube/leader-election.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { kubeConfigFor } from './helpers.js';

let api: FakeApiServer;
before(async () => {
  api = await FakeApiServer.start({
    namespaces: ['istio-system'],
    users: { 'token-a': 'a', 'token-b': 'b', 'token-c': 'c' },
  });
});
after(() => api.stop());

const LEASE_MS = 1000;
const RENEW_DEADLINE_MS = 600;
const RETRY_MS = 100;

function elector(identity: string, leaseName: string, clock: ManualClock): LeaderElector {
  return new LeaderElector({
    coordination: kubeConfigFor(api, `token-${identity}`).makeApiClient(CoordinationV1Api),
    namespace: 'istio-system',
    leaseName,
    identity,
    leaseDurationMs: LEASE_MS,
    renewDeadlineMs: RENEW_DEADLINE_MS,
    retryPeriodMs: RETRY_MS,
    clock,
  });
}

/**
 * Replicas on one ManualClock. Each elector has exactly one timer while it waits for its next
 * attempt, so "every campaigning replica has a timer" means every attempt under way has ended.
 */
class Replicas {
  readonly clock = new ManualClock();
  readonly all: Map<string, LeaderElector>;
  private readonly campaigning = new Set<string>();

  constructor(leaseName: string, ids: string[]) {
    this.all = new Map(ids.map((id) => [id, elector(id, leaseName, this.clock)]));
  }

  get(id: string): LeaderElector {
    return this.all.get(id)!;
  }

  /** Starts campaigning and waits for the first attempt to end. */
  async start(...ids: string[]): Promise<void> {
    for (const id of ids) {
      this.campaigning.add(id);
      this.get(id).start();
    }
    await this.idle();
  }

  async stop(id: string): Promise<void> {
    this.campaigning.delete(id);
    await this.get(id).stop();
  }

  /** One retry period: every replica makes one attempt, and it has ended. */
  async round(): Promise<void> {
    await this.clock.advance(RETRY_MS);
    await this.idle();
  }

  leaders(): string[] {
    return [...this.all].filter(([, e]) => e.isLeader).map(([id]) => id);
  }

  private idle(): Promise<unknown> {
    return waitFor(
      `the attempts of ${[...this.campaigning].join(', ')} to end`,
      () => this.clock.pending === this.campaigning.size,
    );
  }
}

function leaseSpec(name: string) {
  return api.getObject('leases.coordination.k8s.io', 'istio-system', name)?.spec as {
    holderIdentity: string;
    leaseDurationSeconds: number;
    leaseTransitions: number;
  };
}

test('of three replicas exactly one leads, round after round, and the Lease names it', async () => {
  const r = new Replicas('lease-one', ['a', 'b', 'c']);
  await r.start('a', 'b', 'c');
  try {
    assert.equal(r.leaders().length, 1, 'a leader after the first attempts');
    const leader = r.leaders()[0]!;
    // Three lease durations of renewals and attempts: the same single leader throughout.
    for (let i = 0; i < (3 * LEASE_MS) / RETRY_MS; i++) {
      await r.round();
      assert.deepEqual(r.leaders(), [leader], `round ${i + 1}`);
    }
    assert.equal(leaseSpec('lease-one').holderIdentity, leader);
    assert.equal(leaseSpec('lease-one').leaseDurationSeconds, 1);
  } finally {
    await Promise.all(['a', 'b', 'c'].map((id) => r.stop(id)));
  }
});

test('failover: a leader cut off steps down before its lease could pass; another takes over once it has expired', async () => {
  const r = new Replicas('lease-failover', ['a', 'b']);
  const running = new Set<string>();
  const stopWork = ['a', 'b'].map((id) =>
    whileLeader(r.get(id), () => {
      running.add(id);
      return () => void running.delete(id);
    }),
  );
  await r.start('a');
  assert.deepEqual(r.leaders(), ['a']);
  await r.start('b');
  for (let i = 0; i < 3; i++) await r.round();
  assert.deepEqual([...running], ['a'], 'b saw the Lease held for three rounds');

  // a is cut off from the API server (every Lease call of its user is refused); b is not.
  const lastRenewal = r.clock.now();
  api.authorize = (req) => !(req.resource === 'leases' && req.user === 'a');
  let steppedDown: number | undefined;
  let tookOver: number | undefined;
  while (tookOver === undefined) {
    await r.round();
    const now = r.clock.now();
    assert.ok(now - lastRenewal <= 2 * LEASE_MS + RETRY_MS, 'b took over within two leases');
    assert.ok(r.leaders().length <= 1, `never two leaders (at +${now - lastRenewal} ms)`);
    if (steppedDown === undefined && !r.get('a').isLeader) steppedDown = now;
    if (r.get('b').isLeader) tookOver = now;
  }
  assert.ok(steppedDown !== undefined && steppedDown - lastRenewal > RENEW_DEADLINE_MS);
  assert.ok(
    steppedDown - lastRenewal <= RENEW_DEADLINE_MS + RETRY_MS,
    `a stepped down at the renew deadline (+${steppedDown - lastRenewal} ms)`,
  );
  assert.ok(
    tookOver - lastRenewal >= LEASE_MS,
    `b waited for the lease to expire (+${tookOver - lastRenewal} ms)`,
  );
  assert.deepEqual([...running], ['b']);

  // a gets its access back: b keeps the Lease it renews.
  api.authorize = undefined;
  for (let i = 0; i < 3; i++) await r.round();
  assert.deepEqual(r.leaders(), ['b']);
  await r.stop('a');
  assert.deepEqual([...running], ['b']);
  for (const stop of stopWork) await stop();
  assert.deepEqual([...running], []);
  await r.stop('b');
});

test('a leader that stops releases the Lease so another takes over at its next attempt', async () => {
  const r = new Replicas('lease-release', ['a', 'b']);
  await r.start('a');
  await r.start('b');
  assert.deepEqual(r.leaders(), ['a']);
  await r.stop('a');
  await r.round();
  assert.deepEqual(r.leaders(), ['b'], 'one retry period later, far from a lease duration');
  const spec = leaseSpec('lease-release');
  assert.equal(spec.holderIdentity, 'b');
  assert.ok(spec.leaseTransitions >= 1);
  await r.stop('b');
});
