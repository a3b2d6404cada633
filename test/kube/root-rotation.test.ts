import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { CoreV1Api } from '@kubernetes/client-node';
import { ManualClock } from '../support/manual-clock.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { KubeCaSource } from '../../src/kube/cacerts-secret-source.js';
import { NOT_BEFORE_BACKDATE_MS } from '../../src/ca/issue-workload.js';
import { longestRootTtlDueAtOnceMs } from '../../src/kube/defaults.js';
import { RootRotator, rootNeedsRotation } from '../../src/kube/root-rotation.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';
import { capturingLogger, kubeConfigFor } from './helpers.js';

const NS = 'istio-system';
const DAY = 86_400_000;
let api: FakeApiServer;
let source: KubeCaSource;
let state: SwappableCaState;
const clock = new ManualClock(Date.now());

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS] });
  const kc = kubeConfigFor(api);
  state = new SwappableCaState();
  source = new KubeCaSource({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    namespace: NS,
    trustDomain: 'cluster.local',
    state,
    clock,
    selfSignedTtlMs: 100 * DAY,
  });
  await source.start();
});
after(async () => {
  await source.stop();
  await api.stop();
});

const secretCert = (): X509Certificate =>
  new X509Certificate(
    Buffer.from(
      (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
        'ca-cert.pem'
      ]!,
      'base64',
    ),
  );
const secretKey = (): string =>
  (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)['ca-key.pem']!;

test('the threshold: rotate once at most 20% of the lifetime remains, as istiod decides', () => {
  // security/pkg/util/certutil.go, GetWaitTime: wait = time left − grace; rotate unless wait > 0.
  const nb = new Date(0);
  const na = new Date(100 * DAY);
  assert.equal(rootNeedsRotation(nb, na, 79 * DAY), false);
  assert.equal(rootNeedsRotation(nb, na, 80 * DAY - 1), false);
  assert.equal(rootNeedsRotation(nb, na, 80 * DAY), true, 'at the boundary (wait = 0)');
  assert.equal(rootNeedsRotation(nb, na, 81 * DAY), true);
  assert.equal(rootNeedsRotation(nb, na, 101 * DAY), true, 'expired');
  // CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE: the share of the lifetime.
  assert.equal(rootNeedsRotation(nb, na, 49 * DAY, 50), false);
  assert.equal(rootNeedsRotation(nb, na, 50 * DAY, 50), true);
  assert.equal(rootNeedsRotation(nb, na, 98 * DAY, 1), false);
  assert.equal(rootNeedsRotation(nb, na, 99 * DAY, 1), true);
});

test('longestRootTtlDueAtOnceMs: a root with a longer TTL is never due at birth; the bound is within 2 s of one that is (grace up to 50%)', () => {
  // As a root is made: the times cut down to whole seconds (X.509 has no smaller unit).
  const second = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);
  const born = (now: number, ttlMs: number, grace: number): boolean =>
    rootNeedsRotation(second(now - NOT_BEFORE_BACKDATE_MS), second(now + ttlMs), now, grace);
  const start = Date.UTC(2026, 0, 1);
  for (const grace of [1, 20, 50, 99]) {
    const longest = longestRootTtlDueAtOnceMs(grace);
    // Every moment within a second: the review's 31 s root at 20% was due when made at +900 ms.
    for (let offset = 0; offset < 1000; offset += 50) {
      assert.equal(
        born(start + offset, longest + 1, grace),
        false,
        `grace ${grace}% +${offset} ms`,
      );
    }
    // Tight for the graces people set (the rounding slack grows as 1 / (1 − grace)).
    if (grace > 50) continue;
    const dueSomewhere = Array.from({ length: 20 }, (_, i) => start + i * 50).some((now) =>
      born(now, longest - 2000, grace),
    );
    assert.ok(dueSomewhere, `grace ${grace}%: ${longest - 2000} ms is due at birth`);
  }
  assert.equal(longestRootTtlDueAtOnceMs(20), 31_500);
  assert.equal(longestRootTtlDueAtOnceMs(50), 123_000);
});

test('the grace percentage and the new root lifetime are the rotator options', async () => {
  const server = await FakeApiServer.start({ namespaces: [NS] });
  const at = new ManualClock(Date.UTC(2026, 0, 1));
  const kc = kubeConfigFor(server);
  const own = new KubeCaSource({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    namespace: NS,
    trustDomain: 'cluster.local',
    state: new SwappableCaState(),
    clock: at,
    selfSignedTtlMs: 100 * DAY,
  });
  try {
    await own.start();
    const rotator = new RootRotator({
      core: kc.makeApiClient(CoreV1Api),
      namespace: NS,
      clock: at,
      gracePercent: 60,
      ttlMs: 10 * DAY,
    });
    const cert = (): X509Certificate =>
      new X509Certificate(
        Buffer.from(
          (server.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
            'ca-cert.pem'
          ]!,
          'base64',
        ),
      );
    await at.advance(39 * DAY);
    assert.equal(await rotator.checkOnce(), false, '61% left');
    await at.advance(2 * DAY);
    assert.equal(await rotator.checkOnce(), true, '59% left');
    const lifetime = Date.parse(cert().validTo) - Date.parse(cert().validFrom);
    // The new root lives ttlMs from now, backdated two minutes like every root (Istio).
    assert.equal(lifetime, 10 * DAY + 2 * 60_000);
  } finally {
    await own.stop();
    await server.stop();
  }
});

test('a check interval of 0 turns the checks off: no check ever, however long', async () => {
  const server = await FakeApiServer.start({ namespaces: [NS] });
  const ticking = new ManualClock();
  const { logger, lines } = capturingLogger();
  try {
    const rotator = new RootRotator({
      core: kubeConfigFor(server).makeApiClient(CoreV1Api),
      namespace: NS,
      clock: ticking,
      checkIntervalMs: 0,
      logger,
    });
    rotator.start();
    await ticking.advance(365 * DAY);
    // stop() waits for a check under way: none was started.
    await rotator.stop();
    assert.equal(server.count({ resource: 'secrets' }), 0);
    assert.ok(
      lines.some((l) => l.msg.startsWith('self-signed root checks are off')),
      JSON.stringify(lines),
    );
  } finally {
    await server.stop();
  }
});

test('the leader re-issues the root with the same key and subject; replicas pick it up from the watch', async () => {
  const rotator = new RootRotator({
    core: kubeConfigFor(api).makeApiClient(CoreV1Api),
    namespace: NS,
    clock,
    ttlMs: 100 * DAY,
  });
  const old = secretCert();
  const oldKey = secretKey();
  await clock.advance(50 * DAY);
  assert.equal(await rotator.checkOnce(), false, 'half the lifetime left: no rotation');
  await clock.advance(35 * DAY);
  const generation = state.current()!.generation;
  assert.equal(await rotator.checkOnce(), true);
  const next = secretCert();
  assert.notEqual(next.serialNumber, old.serialNumber);
  assert.equal(next.subject, old.subject);
  assert.equal(secretKey(), oldKey, 'the key is kept');
  assert.ok(next.publicKey.equals(old.publicKey));
  assert.ok(new Date(next.validTo) > new Date(old.validTo));
  // Old and new are interchangeable: each verifies the other's signature (same key).
  assert.ok(old.verify(next.publicKey) && next.verify(old.publicKey));
  await waitFor('the replica to follow', () => state.current()!.generation > generation);
  const b = state.current()!.bundle;
  assert.equal(b.roots.length, 2, 'old and new root both in the trust bundle');
  assert.equal(
    b.signingCert.serialNumber.replace(/^0+/, ''),
    next.serialNumber.replace(/^0+/, '').toLowerCase(),
  );
  assert.equal(await rotator.checkOnce(), false, 'fresh root: nothing more to do');
});

test('without istio-ca-secret (a plugged-in CA) there is nothing to rotate', async () => {
  const plugged = await FakeApiServer.start({ namespaces: [NS] });
  try {
    const rotator = new RootRotator({
      core: kubeConfigFor(plugged).makeApiClient(CoreV1Api),
      namespace: NS,
      clock,
    });
    assert.equal(await rotator.checkOnce(), false);
    assert.equal(plugged.count({ resource: 'secrets', verb: 'get', code: 404 }), 1);
    assert.equal(plugged.count({ verb: 'update' }) + plugged.count({ verb: 'create' }), 0);
  } finally {
    await plugged.stop();
  }
});

test('start() checks at once, then once per check interval on the clock, also after failed checks; stop() ends it', async () => {
  const server = await FakeApiServer.start({ namespaces: [NS] });
  // Every check fails (403): each one ends with its warning, which the test counts.
  server.authorize = (r) => r.resource !== 'secrets';
  const ticking = new ManualClock();
  const { logger, lines } = capturingLogger();
  const rotator = new RootRotator({
    core: kubeConfigFor(server).makeApiClient(CoreV1Api),
    namespace: NS,
    clock: ticking,
    checkIntervalMs: DAY,
    logger,
  });
  const checked = (n: number) => () =>
    lines.filter((l) => l.msg === 'root rotation check failed').length === n;
  try {
    const started = ticking.now();
    rotator.start();
    await waitFor('the first check', checked(1));
    assert.equal(ticking.nextDue(), started + DAY, 'the next check is one interval away');
    await ticking.advance(DAY);
    await waitFor('the second check', checked(2));
    await ticking.advance(DAY);
    await waitFor('the third check', checked(3));
    assert.match(String(lines.at(-1)!.error), /403/);
    await rotator.stop();
    assert.equal(ticking.pending, 0, 'no timer left after stop()');
  } finally {
    await server.stop();
  }
});
