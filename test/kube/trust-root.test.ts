// Issue 13 part 1, at the CA source (src/kube/cacerts-secret-source.ts) against the fake API
// server: a `cacerts` that does not verify never becomes a self-signed root; only its absence
// does; and once a root is served, deleting either Secret does not change it. The same through
// the real `castellan serve --kube` and `kubectl`: test/kube/kubectl.test.ts.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../../src/clock.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import type { CastellanError } from '../../src/errors.js';
import { EventRecorder } from '../../src/kube/events.js';
import {
  CACERTS_SECRET,
  KEEP_PREVIOUS_ROOTS_ANNOTATION,
  KubeCaSource,
} from '../../src/kube/cacerts-secret-source.js';
import { PREVIOUS_ROOTS_KEY, PREVIOUS_ROOTS_SECRET } from '../../src/kube/previous-roots.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { crlOf, makeCacerts } from '../support/ca-hierarchy.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import {
  capturingLogger,
  kubeConfigFor,
  putCacerts,
  sampleCacerts,
  type LogLine,
} from './helpers.js';

const NS = 'istio-system';
const HOUR = 3_600_000;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cluster(): Promise<FakeApiServer> {
  const api = await FakeApiServer.start({ namespaces: [NS] });
  cleanups.push(() => api.stop());
  return api;
}

interface Replica {
  readonly source: KubeCaSource;
  readonly state: SwappableCaState;
  readonly refusals: string[];
  readonly lines: LogLine[];
}

function replica(
  api: FakeApiServer,
  o: { clock?: Clock; readCrl?: boolean; core?: (real: CoreV1Api) => CoreV1Api } = {},
): Replica {
  const kc = kubeConfigFor(api);
  const real = kc.makeApiClient(CoreV1Api);
  const core = o.core ? o.core(real) : real;
  const clock = o.clock ?? systemClock;
  const state = new SwappableCaState();
  const refusals: string[] = [];
  const { logger, lines } = capturingLogger();
  const source = new KubeCaSource({
    kubeConfig: kc,
    core,
    namespace: NS,
    trustDomain: 'cluster.local',
    state,
    clock,
    events: new EventRecorder(core, clock),
    onLoadError: (where: string, e: CastellanError) => refusals.push(`${where}: ${e.kind}`),
    readCrl: o.readCrl,
    retryMs: 50,
    logger,
  });
  cleanups.push(() => source.stop());
  return { source, state, refusals, lines };
}

/** A replica serving Istio's alt sample CA from `cacerts`, once its roots are recorded. */
async function servingPlugged(api: FakeApiServer): Promise<Replica> {
  putCacerts(api, NS, sampleCacerts('-alt'));
  const a = replica(api);
  await a.source.start();
  await waitFor('the roots recorded', () => api.getObject('secrets', NS, PREVIOUS_ROOTS_SECRET));
  return a;
}

/** `cacerts` deleted, and the deletion seen by `a`, which goes on serving. */
async function deleteCacerts(api: FakeApiServer, a: Replica): Promise<void> {
  api.deleteObject('secrets', NS, CACERTS_SECRET);
  await waitFor('the deletion seen', () =>
    a.lines.some((l) => l.msg.startsWith('cacerts was deleted')),
  );
}

const eventsFor = (api: FakeApiServer, reason: string) =>
  api.listObjects('events', NS).filter((e) => e.reason === reason);
const rootOf = (r: Replica): string | undefined => r.state.current()?.bundle.rootBundlePem;

test('a cacerts that does not verify at start: nothing served, no istio-ca-secret, the reason, an Event; a good one is served without a restart', async () => {
  const api = await cluster();
  putCacerts(api, NS, sampleCacerts('-alt-2')); // its key does not belong to its certificate
  const r = replica(api);
  await r.source.start();

  assert.equal(r.state.current(), undefined, 'serves nothing');
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined, 'no self-signed root');
  assert.equal(api.count({ verb: 'create', resource: 'secrets' }), 0);
  assert.match(
    r.source.whyNoCa() ?? '',
    /^cacerts does not verify: secret istio-system\/cacerts\/ca-key\.pem: .*does not belong.*; nothing is served until it does \(a fixed cacerts is picked up without a restart\)$/,
  );
  assert.deepEqual(r.refusals, ['secret istio-system/cacerts: key-mismatch']);
  const [event] = await waitFor('the CALoadFailed Event', () => {
    const e = eventsFor(api, 'CALoadFailed');
    return e.length > 0 && e;
  });
  assert.equal(event!.type, 'Warning');
  assert.equal((event!.involvedObject as { name: string }).name, CACERTS_SECRET);
  assert.match(String(event!.message), /^refused: .*; serving nothing until it is fixed$/);

  putCacerts(api, NS, sampleCacerts('-alt'));
  await waitFor('the fixed cacerts served', () => r.state.current());
  assert.match(r.state.current()!.bundle.source, /^cacerts-secret:/);
  assert.equal(r.source.whyNoCa(), undefined);
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined);
});

test('an istio-ca-secret from an earlier life is not served either while cacerts does not verify', async () => {
  const api = await cluster();
  // The self-signed root of a first start, then a cacerts that is broken.
  const first = replica(api);
  await first.source.start();
  const selfSigned = rootOf(first);
  await first.source.stop();
  assert.ok(selfSigned && api.getObject('secrets', NS, SELF_SIGNED_SECRET));
  putCacerts(api, NS, sampleCacerts('-alt-2'));
  const r = replica(api);
  await r.source.start();
  assert.equal(r.state.current(), undefined, 'not the self-signed root');
  assert.match(r.source.whyNoCa() ?? '', /^cacerts does not verify: .*does not belong/);
  putCacerts(api, NS, sampleCacerts('-alt'));
  await waitFor('served', () => r.state.current());
  assert.match(r.state.current()!.bundle.source, /^cacerts-secret:/);
  assert.ok(!rootOf(r)?.includes(selfSigned), 'never served here, so not kept beside it');
});

test('a broken cacerts deleted before any CA was served: the self-signed root, as a start without cacerts', async () => {
  const api = await cluster();
  putCacerts(api, NS, { 'ca-cert.pem': sampleCacerts('-alt')['ca-cert.pem'] });
  const r = replica(api);
  await r.source.start();
  assert.equal(r.state.current(), undefined);
  assert.match(r.source.whyNoCa() ?? '', /missing ca-key\.pem, cert-chain\.pem, root-cert\.pem/);
  api.deleteObject('secrets', NS, CACERTS_SECRET);
  await waitFor('the self-signed root', () => r.state.current());
  assert.match(r.state.current()!.bundle.source, /^self-signed-secret:/);
  assert.ok(api.getObject('secrets', NS, SELF_SIGNED_SECRET));
});

test('serving the self-signed root: a deleted istio-ca-secret is written back, a replica started later serves the same root, a broken cacerts does not replace it', async () => {
  const api = await cluster();
  const a = replica(api);
  await a.source.start();
  const root = rootOf(a);
  const before = api.getObject('secrets', NS, SELF_SIGNED_SECRET)?.data;
  const generation = a.state.current()!.generation;

  api.deleteObject('secrets', NS, SELF_SIGNED_SECRET);
  const restored = await waitFor('istio-ca-secret written back', () =>
    api.getObject('secrets', NS, SELF_SIGNED_SECRET),
  );
  assert.deepEqual(restored.data, before, 'the same key and certificate');
  assert.equal(restored.type, 'istio.io/ca-root');
  assert.equal(rootOf(a), root);
  assert.equal(a.state.current()!.generation, generation, 'no swap at all');

  const b = replica(api);
  await b.source.start();
  assert.equal(rootOf(b), root, 'a later replica loads the same root');

  // A cacerts that does not verify, created now, is refused: still the self-signed root.
  putCacerts(api, NS, sampleCacerts('-alt-2'));
  await waitFor('both refusals', () => a.refusals.length > 0 && b.refusals.length > 0);
  for (const r of [a, b]) {
    assert.equal(rootOf(r), root);
    assert.equal(r.source.whyNoCa(), undefined, 'serving');
  }
  assert.equal(a.state.current()!.generation, generation);
});

test('serving a plugged-in CA: deleting cacerts keeps the root, and istio-ca-secret is not re-created', async () => {
  const api = await cluster();
  putCacerts(api, NS, sampleCacerts('-alt'));
  const r = replica(api);
  await r.source.start();
  const root = rootOf(r);
  const generation = r.state.current()!.generation;
  api.deleteObject('secrets', NS, CACERTS_SECRET);
  await waitFor('the deletion seen', () =>
    r.lines.some((l) =>
      l.msg.startsWith('cacerts was deleted; still serving the last plugged-in CA'),
    ),
  );
  assert.equal(rootOf(r), root);
  assert.equal(r.state.current()!.generation, generation, 'no swap at all');
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined);
});

// Found by a new operator (2026-12-07): after `kubectl delete secret cacerts`, the running
// replica kept its root, but the next one to start made a self-signed root, served it, and once
// it led published it alone: the mesh moved to a root nobody planned at the next rollout. A
// replica that finds no cacerts while castellan-previous-roots records a plugged-in CA now serves
// nothing, says why, and waits for cacerts — or for the record's deletion, the way back to a
// self-signed root. (istiod differs: it makes or loads istio-ca-secret's root —
// pilot/pkg/bootstrap/istio_ca.go, createIstioCA, `useSelfSignedCA := !signingCABundleComplete`.)
test('cacerts deleted while a plugged-in CA is served: a replica started later serves nothing and says why until cacerts is back', async () => {
  const api = await cluster();
  const a = await servingPlugged(api);
  const root = rootOf(a);
  await deleteCacerts(api, a);

  const b = replica(api);
  await b.source.start();
  assert.equal(b.state.current(), undefined, 'serves nothing');
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined, 'makes no root');
  assert.match(
    b.source.whyNoCa() ?? '',
    /^secret istio-system\/cacerts is gone, and the mesh trusts the plugged-in roots recorded in secret istio-system\/castellan-previous-roots \(O=Istio, CN=Root CA\): serving nothing .*Put cacerts back/,
  );
  const said = b.lines.find((l) => l.msg.startsWith('cacerts is gone and the mesh trusts'));
  assert.equal(said?.level, 50);
  const [event] = await waitFor('the CACertsMissing Event', () => {
    const e = eventsFor(api, 'CACertsMissing');
    return e.length > 0 && e;
  });
  assert.equal(event!.type, 'Warning');
  assert.equal((event!.involvedObject as { name: string }).name, PREVIOUS_ROOTS_SECRET);
  assert.equal(rootOf(a), root, 'the running replica is untouched');

  putCacerts(api, NS, sampleCacerts('-alt'));
  await waitFor('cacerts served again, without a restart', () => b.state.current());
  assert.match(b.state.current()!.bundle.source, /^cacerts-secret:/);
  assert.equal(rootOf(b), root);
  assert.equal(b.source.whyNoCa(), undefined);
});

// Found in review: the waiting replica took the self-signed root at the record's deletion,
// though another replica still served the plugged-in CA and wrote the record straight back.
test('the record deleted while a replica still serves the plugged-in CA: written back, and the waiting replica goes on waiting', async () => {
  const api = await cluster();
  await deleteCacerts(api, await servingPlugged(api));
  const clock = new ManualClock(Date.now());
  const b = replica(api, { clock });
  await b.source.start();
  assert.equal(b.state.current(), undefined);

  const reads = () => b.lines.filter((l) => l.msg === 'previous roots read').length;
  const before = reads();
  api.deleteObject('secrets', NS, PREVIOUS_ROOTS_SECRET);
  await waitFor('written back by the serving replica', () =>
    api.getObject('secrets', NS, PREVIOUS_ROOTS_SECRET),
  );
  await waitFor('the written-back record read by the waiting one', () => reads() > before);
  await clock.advance(60_000); // far past the wait for a write-back
  assert.equal(b.state.current(), undefined, 'still waiting for cacerts');
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined, 'no root made');
  assert.match(b.source.whyNoCa() ?? '', /is gone, and the mesh trusts the plugged-in roots/);
});

test('cacerts and the record of its roots both deleted, with no replica serving it: the self-signed root', async () => {
  const api = await cluster();
  const a = await servingPlugged(api);
  await a.source.stop();
  api.deleteObject('secrets', NS, CACERTS_SECRET);

  const b = replica(api);
  await b.source.start();
  assert.equal(b.state.current(), undefined, 'waits while the record is there');
  api.deleteObject('secrets', NS, PREVIOUS_ROOTS_SECRET);
  await waitFor('the self-signed root', () => b.state.current());
  assert.match(b.state.current()!.bundle.source, /^self-signed-secret:/);
  assert.ok(api.getObject('secrets', NS, SELF_SIGNED_SECRET));
  assert.equal(b.source.whyNoCa(), undefined);
});

// Found by a new operator (2026-12-07): the annotation stayed on the Secret (as `kubectl apply`
// or a GitOps tool keeps it), and the next root change dropped the old root at once, with no word
// in the log. It still does (the annotation means "drop"), but each drop is now a warning naming
// the roots dropped and saying to remove the annotation.
test('keep-previous-roots=false: every root change it drops roots at is a warning naming them', async () => {
  const api = await cluster();
  const drop = { [KEEP_PREVIOUS_ROOTS_ANNOTATION]: 'false' };
  putCacerts(api, NS, sampleCacerts('-alt'));
  const r = replica(api);
  await r.source.start();
  const warnings = () => r.lines.filter((l) => l.msg.startsWith('earlier roots dropped'));

  putCacerts(api, NS, sampleCacerts(''), drop); // the 2018 root replaces the alt root
  await waitFor(
    'the 2018 root alone',
    () =>
      r.state.current()?.bundle.roots.length === 1 &&
      /Sunnyvale/.test(r.state.current()!.bundle.roots[0]!.subject),
  );
  await waitFor('a warning', () => warnings().length === 1);
  assert.equal(warnings()[0]!.level, 40);
  assert.deepEqual(warnings()[0]!['dropped'], ['O=Istio, CN=Root CA']);
  assert.match(warnings()[0]!.msg, /castellan\.io\/keep-previous-roots=false \(remove it/);

  // Left on the Secret: the next root change drops again, and says so again.
  putCacerts(api, NS, sampleCacerts('-alt'), drop);
  await waitFor(
    'the alt root alone',
    () =>
      r.state.current()?.bundle.roots.length === 1 &&
      r.state.current()!.bundle.roots[0]!.subject === 'O=Istio, CN=Root CA',
  );
  await waitFor('a second warning', () => warnings().length === 2);
  assert.match(String((warnings()[1]!['dropped'] as string[])[0]), /Sunnyvale/);
  // The same roots again (an unrelated edit of the Secret): nothing dropped, nothing said.
  putCacerts(api, NS, { ...sampleCacerts('-alt') }, { ...drop, note: 'touched' });
  await waitFor('the edit read', () => r.lines.filter((l) => l.msg === 'cacerts read').length >= 4);
  assert.equal(warnings().length, 2);
});

// The record emptied by hand rather than deleted: the same release, after the same wait.
test('the record emptied while no replica serves the plugged-in CA: the waiting replica takes the self-signed root after the wait', async () => {
  const api = await cluster();
  const a = await servingPlugged(api);
  await a.source.stop();
  api.deleteObject('secrets', NS, CACERTS_SECRET);
  const clock = new ManualClock(Date.now());
  const b = replica(api, { clock });
  await b.source.start();
  assert.equal(b.state.current(), undefined, 'waits while the record names roots');
  api.putObject('secrets', NS, {
    metadata: { name: PREVIOUS_ROOTS_SECRET },
    data: { [PREVIOUS_ROOTS_KEY]: '' },
  });
  await waitFor('the empty record read', () =>
    b.lines.some((l) => l.msg === 'previous roots read' && l['roots'] === 0),
  );
  assert.equal(b.state.current(), undefined, 'not before the wait for a write-back');
  await clock.advance(5 * 50);
  await waitFor('the self-signed root', () => b.state.current());
  assert.match(b.state.current()!.bundle.source, /^self-signed-secret:/);
});

// Found in review: a stop that came while the first list of Secrets was still in flight (the
// runtime's start gives up on it, and stops the source) let start() go on once the list came
// back, and create istio-ca-secret after "stopped before serving".
test('stopped while its first list is in flight: nothing is created or served once the list returns', async () => {
  const api = await cluster();
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  const { source, state } = replica(api, {
    core: (real) => {
      const core = Object.create(real) as CoreV1Api;
      core.listNamespacedSecret = async (param) => {
        const list = await real.listNamespacedSecret(param);
        await held;
        return list;
      };
      return core;
    },
  });
  const started = source.start();
  await waitFor(
    'the list under way',
    () => api.count({ verb: 'list', resource: 'secrets', namespace: NS }) === 1,
  );
  const stopping = source.stop();
  release();
  await stopping;
  await started;
  assert.equal(state.current(), undefined, 'nothing served');
  assert.equal(api.getObject('secrets', NS, SELF_SIGNED_SECRET), undefined, 'no root created');
  assert.equal(api.count({ verb: 'create', resource: 'secrets' }), 0);
});

test('an expired CRL is loaded and published with a CACRLExpired Event; one that expires while loaded gets one then', async () => {
  const api = await cluster();
  const clock = new ManualClock(Date.now());
  const { root, ca, files } = await makeCacerts({ root: 'Expiry Root', ca: 'Expiry CA' });
  const crls = async (nextUpdate: Date): Promise<string> =>
    (await crlOf(ca, { thisUpdate: new Date(clock.now() - 2 * HOUR), nextUpdate })) +
    (await crlOf(root));
  putCacerts(api, NS, {
    ...Object.fromEntries(files),
    'ca-crl.pem': await crls(new Date(clock.now() - HOUR)),
  });
  const r = replica(api, { clock });
  await r.source.start();
  assert.equal(r.state.current()?.bundle.crl?.expired, true, 'loaded, flagged');
  const [expired] = await waitFor('the CACRLExpired Event', () => {
    const e = eventsFor(api, 'CACRLExpired');
    return e.length > 0 && e;
  });
  assert.equal(expired?.type, 'Warning');
  assert.match(String(expired.message), /^ca-crl\.pem: nextUpdate .* has passed; still published/);
  // The CA's CRL expired, the root's did not: --ca-dir alone renews it.
  assert.match(
    String(expired.message),
    /renew it with castellan ca crl --ca-dir <the cacerts folder>, then update cacerts$/,
  );

  putCacerts(api, NS, {
    ...Object.fromEntries(files),
    'ca-crl.pem': await crls(new Date(clock.now() + HOUR)),
  });
  await waitFor('the fresh CRL', () => r.state.current()?.bundle.crl?.expired === false);
  await clock.advance(HOUR - 1000);
  assert.equal(eventsFor(api, 'CACRLExpired').length, 1);
  await clock.advance(2000);
  await waitFor('a second CACRLExpired Event', () => eventsFor(api, 'CACRLExpired').length === 2);
});

test('readCrl: false (PILOT_ENABLE_CA_CRL=false): ca-crl.pem in cacerts is not read at all', async () => {
  const api = await cluster();
  const { files } = await makeCacerts();
  putCacerts(api, NS, { ...Object.fromEntries(files), 'ca-crl.pem': 'not a CRL' });
  const r = replica(api, { readCrl: false });
  await r.source.start();
  assert.ok(r.state.current());
  assert.equal(r.state.current()?.bundle.crl, undefined);
  assert.deepEqual(r.refusals, []);
});
