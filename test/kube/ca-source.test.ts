import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import { systemClock } from '../../src/clock.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import type { CastellanError } from '../../src/errors.js';
import { certificatePem } from '../../src/ca/build-key-cert-bundle.js';
import { EventRecorder } from '../../src/kube/events.js';
import {
  KubeCaSource,
  CACERTS_SECRET,
  KEEP_PREVIOUS_ROOTS_ANNOTATION,
} from '../../src/kube/cacerts-secret-source.js';
import {
  ROOT_CERT_SECRET_KEY,
  SELF_SIGNED_SECRET,
  SELF_SIGNED_SECRET_TYPE,
} from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';
import { kubeConfigFor, putCacerts, sample, sampleCacerts } from './helpers.js';

const NS = 'istio-system';
let api: FakeApiServer;
const replicas: { source: KubeCaSource; state: SwappableCaState; errors: string[] }[] = [];

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS] });
});
after(async () => {
  await Promise.all(replicas.map((r) => r.source.stop()));
  await api.stop();
});

test('three replicas starting at once: exactly one self-signed root, shared by all', async () => {
  for (let i = 0; i < 3; i++) {
    const kc = kubeConfigFor(api);
    const core = kc.makeApiClient(CoreV1Api);
    const state = new SwappableCaState();
    const errors: string[] = [];
    const source = new KubeCaSource({
      kubeConfig: kc,
      core,
      namespace: NS,
      trustDomain: 'cluster.local',
      state,
      clock: systemClock,
      events: new EventRecorder(core, systemClock),
      onLoadError: (where: string, e: CastellanError) => errors.push(`${where}: ${e.kind}`),
      retryMs: 50,
    });
    replicas.push({ source, state, errors });
  }
  await Promise.all(replicas.map((r) => r.source.start()));
  // Each replica may try to create the secret; the API server accepts exactly one.
  assert.equal(api.count({ verb: 'create', resource: 'secrets', namespace: NS, code: 201 }), 1);
  assert.equal(
    api.count({ verb: 'create', resource: 'secrets', namespace: NS, code: 409 }),
    api.count({ verb: 'create', resource: 'secrets', namespace: NS }) - 1,
  );
  const secret = api.getObject('secrets', NS, SELF_SIGNED_SECRET);
  assert.equal(secret?.type, SELF_SIGNED_SECRET_TYPE);
  const data = secret.data as Record<string, string>;
  assert.deepEqual(Object.keys(data).sort(), ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem']);
  // Istio's key in istio-ca-secret, named apart from the ConfigMap's key of the same value.
  assert.equal(ROOT_CERT_SECRET_KEY, 'root-cert.pem');
  const rootPem = Buffer.from(data['root-cert.pem']!, 'base64').toString();
  for (const r of replicas) assert.equal(r.state.current()?.bundle.rootBundlePem, rootPem);
});

test('creating cacerts switches every replica to it; the old root stays trusted beside the new', async () => {
  const selfSignedRoot = replicas[0]!.state.current()!.bundle.rootBundlePem;
  putCacerts(api, NS, sampleCacerts('-alt'));
  for (const r of replicas) {
    await waitFor('the switch', () =>
      r.state.current()?.bundle.source.startsWith('cacerts-secret:'),
    );
    const b = r.state.current()!.bundle;
    assert.match(b.signingCert.subject, /L=cluster1/);
    const roots = b.roots.map(certificatePem);
    assert.equal(roots.length, 2);
    assert.ok(roots.includes(selfSignedRoot), 'the previous root is still in the trust bundle');
    assert.ok(b.rootBundlePem.includes(selfSignedRoot));
  }
});

test('a broken update is refused: the last good CA keeps serving, metric callback and Event', async () => {
  const before = replicas.map((r) => r.state.current()!.generation);
  putCacerts(api, NS, sampleCacerts('-alt-2')); // its key does not match its certificate
  for (const r of replicas) {
    await waitFor('the refusal', () => r.errors.length > 0);
    assert.match(r.errors[0]!, /cacerts.*: key-mismatch/);
  }
  assert.deepEqual(
    replicas.map((r) => r.state.current()!.generation),
    before,
  );
  const events = await waitFor('an Event', () => {
    const e = api.listObjects('events', NS).filter((x) => x.reason === 'CALoadFailed');
    return e.length >= 1 ? e : undefined;
  });
  const ev = events[0]!;
  assert.deepEqual((ev.involvedObject as { kind: string; name: string }).kind, 'Secret');
  assert.equal((ev.involvedObject as { name: string }).name, CACERTS_SECRET);
  assert.equal(ev.type, 'Warning');
  assert.match(String(ev.message), /does not belong/);

  // A partial set is refused as well.
  putCacerts(api, NS, { 'ca-cert.pem': sample('ca-cert-alt.pem') });
  await waitFor('partial refusal', () =>
    replicas.every((r) => r.errors.some((e) => e.endsWith('incomplete-ca'))),
  );
  assert.deepEqual(
    replicas.map((r) => r.state.current()!.generation),
    before,
  );
});

test('the operator drops the old root: the annotation leaves only the new roots', async () => {
  putCacerts(api, NS, sampleCacerts('-alt'), { [KEEP_PREVIOUS_ROOTS_ANNOTATION]: 'false' });
  for (const r of replicas) {
    await waitFor('one root', () => r.state.current()?.bundle.roots.length === 1);
    assert.equal(
      r.state.current()!.bundle.rootBundlePem.trim(),
      sample('root-cert-alt.pem').trim(),
    );
  }
});
