import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { systemClock } from '../../src/clock.js';
import { LeaderElector, whileLeader } from '../../src/kube/leader-election.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { kubeConfigFor, waitFor } from './helpers.js';

let api: FakeApiServer;
before(async () => {
  api = await FakeApiServer.start({
    namespaces: ['istio-system'],
    users: { 'token-a': 'a', 'token-b': 'b', 'token-c': 'c' },
  });
});
after(() => api.stop());

function elector(identity: string, leaseName: string): LeaderElector {
  return new LeaderElector({
    coordination: kubeConfigFor(api, `token-${identity}`).makeApiClient(CoordinationV1Api),
    namespace: 'istio-system',
    leaseName,
    identity,
    leaseDurationMs: 1000,
    renewDeadlineMs: 600,
    retryPeriodMs: 100,
    clock: systemClock,
  });
}

test('of three replicas exactly one leads, and the Lease names it', async () => {
  const replicas = ['a', 'b', 'c'].map((id) => elector(id, 'lease-one'));
  replicas.forEach((r) => r.start());
  try {
    await waitFor(() => replicas.some((r) => r.isLeader), 'a leader');
    // Several renew rounds: still exactly one.
    await new Promise((r) => setTimeout(r, 400));
    const leaders = replicas.filter((r) => r.isLeader);
    assert.equal(leaders.length, 1);
    const lease = api.getObject('leases.coordination.k8s.io', 'istio-system', 'lease-one');
    const spec = lease?.spec as { holderIdentity: string; leaseDurationSeconds: number };
    assert.equal(spec.holderIdentity, ['a', 'b', 'c'][replicas.indexOf(leaders[0]!)]);
    assert.equal(spec.leaseDurationSeconds, 1);
  } finally {
    await Promise.all(replicas.map((r) => r.stop()));
  }
});

test('failover: when the leader is cut off, leader-only work stops there and moves elsewhere within the lease duration', async () => {
  const a = elector('a', 'lease-failover');
  const b = elector('b', 'lease-failover');
  const running = new Set<string>();
  const stopA = whileLeader(a, () => {
    running.add('a');
    return () => void running.delete('a');
  });
  const stopB = whileLeader(b, () => {
    running.add('b');
    return () => void running.delete('b');
  });
  a.start();
  await waitFor(() => a.isLeader, 'a to lead');
  b.start();
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual([...running], ['a']);

  // a is cut off from the API server (every Lease call of its user is refused); b is not.
  const cutAt = Date.now();
  api.authorize = (r) => !(r.resource === 'leases' && r.user === 'a');
  await waitFor(() => !a.isLeader, 'a to step down');
  const steppedDownAfter = Date.now() - cutAt;
  assert.ok(steppedDownAfter < 1000, `a stepped down after ${steppedDownAfter} ms (lease 1000 ms)`);
  assert.equal(running.has('a'), false);
  await waitFor(() => b.isLeader, 'b to lead');
  assert.ok(Date.now() - cutAt < 2500, 'b took over within about two lease durations');
  assert.deepEqual([...running], ['b']);
  api.authorize = undefined;
  await a.stop();
  await waitFor(() => b.isLeader, 'b to lead');
  assert.deepEqual([...running], ['b']);
  await stopA();
  await stopB();
  await b.stop();
});

test('a leader that stops releases the Lease so another takes over without waiting for expiry', async () => {
  const a = elector('a', 'lease-release');
  const b = elector('b', 'lease-release');
  a.start();
  await waitFor(() => a.isLeader, 'a to lead');
  b.start();
  await a.stop();
  const t0 = Date.now();
  await waitFor(() => b.isLeader, 'b to lead');
  assert.ok(Date.now() - t0 < 900, 'b took over before a full lease duration');
  const spec = api.getObject('leases.coordination.k8s.io', 'istio-system', 'lease-release')
    ?.spec as {
    holderIdentity: string;
    leaseTransitions: number;
  };
  assert.equal(spec.holderIdentity, 'b');
  assert.ok(spec.leaseTransitions >= 1);
  await b.stop();
});
