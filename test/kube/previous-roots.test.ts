import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { CoreV1Api } from '@kubernetes/client-node';
import { systemClock } from '../../src/clock.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { certificatePem } from '../../src/ca/build-key-cert-bundle.js';
import { makeSelfSignedRoot } from '../../src/ca/sources/self-signed.js';
import { generateKeyPair, privateKeyToPem } from '../../src/pki/keys.js';
import {
  CACERTS_SECRET,
  KubeCaSource,
  KEEP_PREVIOUS_ROOTS_ANNOTATION,
} from '../../src/kube/cacerts-secret-source.js';
import { PREVIOUS_ROOTS_SECRET, PREVIOUS_ROOTS_KEY } from '../../src/kube/previous-roots.js';
import {
  ConfigMapPublisher,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_CONFIGMAP_KEY,
} from '../../src/kube/configmap-publisher.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import {
  capturingLogger,
  kubeConfigFor,
  putCacerts,
  sampleCacerts,
  type CacertsFiles,
  type LogLine,
} from './helpers.js';
import { waitFor } from '../support/wait-for.js';

const NS = 'istio-system';
let api: FakeApiServer;
interface Replica {
  source: KubeCaSource;
  state: SwappableCaState;
  lines: LogLine[];
}
const running: Replica[] = [];
const stoppers: (() => Promise<void>)[] = [];

/** SHA-256 fingerprints of every certificate in a PEM text, sorted (order does not matter). */
function fingerprints(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return [...new Set(blocks.map((b) => new X509Certificate(b).fingerprint256))].sort();
}
const servedBy = (r: { state: SwappableCaState }): string[] =>
  fingerprints(r.state.current()?.bundle.roots.map(certificatePem).join('') ?? '');
const recorded = (): string[] => {
  const data = api.getObject('secrets', NS, PREVIOUS_ROOTS_SECRET)?.data as
    Record<string, string> | undefined;
  return fingerprints(Buffer.from(data?.[PREVIOUS_ROOTS_KEY] ?? '', 'base64').toString());
};
const union = (...pems: string[]): string[] => fingerprints(pems.join('\n'));

async function startReplica(): Promise<Replica> {
  const kc = kubeConfigFor(api);
  const state = new SwappableCaState();
  const { logger, lines } = capturingLogger();
  const source = new KubeCaSource({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    namespace: NS,
    trustDomain: 'cluster.local',
    state,
    clock: systemClock,
    retryMs: 50,
    logger,
  });
  await source.start();
  const r = { source, state, lines };
  running.push(r);
  return r;
}
async function stopAll(): Promise<void> {
  await Promise.all(running.splice(0).map((r) => r.source.stop()));
}
const SET_A = sampleCacerts('-alt');
const SET_B = sampleCacerts('');
let setC: CacertsFiles;
let rootSelfSigned: string;

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  // A third, unrelated root, made here: a self-signed CA plugged in as cacerts.
  const { privateKey } = await generateKeyPair('ec-p256');
  const c = certificatePem(
    await makeSelfSignedRoot(privateKey, [['O', 'root C']], systemClock, 86_400_000),
  );
  setC = {
    'ca-cert.pem': c,
    'ca-key.pem': privateKeyToPem(privateKey),
    'cert-chain.pem': c,
    'root-cert.pem': c,
  };
});
after(async () => {
  for (const s of stoppers) await s();
  await stopAll();
  await api.stop();
});

test('a replica started after a root change serves and publishes the union of old and new roots', async () => {
  const first = await startReplica();
  rootSelfSigned = Buffer.from(
    (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
      'root-cert.pem'
    ]!,
    'base64',
  ).toString();
  assert.deepEqual(servedBy(first), union(rootSelfSigned));
  assert.equal(api.getObject('secrets', NS, PREVIOUS_ROOTS_SECRET), undefined);

  // Root change 1: self-signed -> enterprise root A.
  putCacerts(api, NS, SET_A);
  const expected = union(rootSelfSigned, SET_A['root-cert.pem']);
  await waitFor('the union on the first replica', () => servedBy(first).join() === expected.join());
  await waitFor('the roots recorded in the API', () => recorded().join() === expected.join());

  // A new replica (as after a restart): the union from its first load, not only A's root.
  const late = await startReplica();
  assert.deepEqual(servedBy(late), expected);
  assert.match(late.state.current()!.bundle.source, /^cacerts-secret:/);

  // As leader, it publishes that union in the istio-ca-root-cert ConfigMaps.
  const kc = kubeConfigFor(api);
  const publisher = new ConfigMapPublisher({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    configMaps: [
      {
        name: ROOT_CERT_CONFIGMAP,
        key: ROOT_CERT_CONFIGMAP_KEY,
        value: late.state.current()!.bundle.rootBundlePem,
        what: 'the root certificate',
      },
    ],
    clock: systemClock,
    retryMs: 50,
  });
  const unsubscribe = late.state.onChange((s) =>
    publisher.set(ROOT_CERT_CONFIGMAP, s.bundle.rootBundlePem),
  );
  stoppers.push(async () => {
    unsubscribe();
    await publisher.stop();
  });
  publisher.start();
  await publisher.synced();
  const published = await waitFor(
    'the published root',
    () =>
      (
        api.getObject('configmaps', 'app', ROOT_CERT_CONFIGMAP)?.data as
          Record<string, string> | undefined
      )?.['root-cert.pem'],
  );
  assert.deepEqual(fingerprints(published), expected);
});

test('root change 2 while running, then every replica down during change 3: a fresh one still serves all', async () => {
  // Root change 2 (A -> B) with two replicas running.
  putCacerts(api, NS, SET_B);
  const afterB = union(rootSelfSigned, SET_A['root-cert.pem'], SET_B['root-cert.pem']);
  for (const r of running) {
    await waitFor('A, B and the self-signed root', () => servedBy(r).join() === afterB.join());
  }
  await waitFor('B recorded', () => recorded().join() === afterB.join());
  assert.deepEqual(servedBy(await startReplica()), afterB);

  // Root change 3 (B -> C) while no replica runs: nobody saw B being replaced, yet B was recorded.
  await stopAll();
  putCacerts(api, NS, setC);
  const fresh = await startReplica();
  const afterC = union(
    rootSelfSigned,
    SET_A['root-cert.pem'],
    SET_B['root-cert.pem'],
    setC['root-cert.pem'],
  );
  assert.deepEqual(servedBy(fresh), afterC);
  await waitFor('C recorded', () => recorded().join() === afterC.join());
});

test("the operator's annotation drops the old roots on every replica, including later ones", async () => {
  await startReplica();
  putCacerts(api, NS, setC, { [KEEP_PREVIOUS_ROOTS_ANNOTATION]: 'false' });
  const onlyC = union(setC['root-cert.pem']);
  for (const r of running) await waitFor('only C', () => servedBy(r).join() === onlyC.join());
  await waitFor('the record reset to C', () => recorded().join() === onlyC.join());
  assert.deepEqual(servedBy(await startReplica()), onlyC);

  // Removing the annotation later does not bring the dropped roots back.
  const marks = running.map((r) => r.lines.length);
  putCacerts(api, NS, setC);
  const rv = api.getObject('secrets', NS, CACERTS_SECRET)!.metadata.resourceVersion;
  for (const [i, r] of running.entries()) {
    // The replica read this version, then checked the record after it.
    await waitFor(`replica ${i} to read cacerts ${rv} and check the record`, () => {
      const since = r.lines.slice(marks[i]);
      const read = since.findIndex((l) => l.msg === 'cacerts read' && l.resourceVersion === rv);
      return read >= 0 && since.slice(read + 1).some((l) => l.msg === 'previous roots checked');
    });
    assert.equal(
      r.lines.find((l) => l.msg === 'cacerts read' && l.resourceVersion === rv)?.keepPrevious,
      true,
    );
  }
  for (const r of running) assert.deepEqual(servedBy(r), onlyC);
  assert.deepEqual(servedBy(await startReplica()), onlyC);
  assert.deepEqual(recorded(), onlyC);
});
