import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  RootPublisher,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_CONFIGMAP_KEY,
} from '../../src/kube/root-publisher.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { capturingLogger, kubeConfigFor } from './helpers.js';

let api: FakeApiServer;
let publisher: RootPublisher;
/** Moves only when a test steps it: watch restarts and retries wait for it. */
const clock = new ManualClock();
const { logger, lines } = capturingLogger();
const RETRY_MS = 50;
const BUNDLE_1 = '-----BEGIN CERTIFICATE-----\nMQ==\n-----END CERTIFICATE-----\n';
const BUNDLE_2 = BUNDLE_1 + '-----BEGIN CERTIFICATE-----\nMg==\n-----END CERTIFICATE-----\n';

before(async () => {
  api = await FakeApiServer.start({ namespaces: ['istio-system', 'app-1'] });
  const kc = kubeConfigFor(api);
  publisher = new RootPublisher({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    rootBundlePem: BUNDLE_1,
    clock,
    logger,
    retryMs: RETRY_MS,
  });
  publisher.start();
  await publisher.synced();
});
after(async () => {
  await publisher.stop();
  await api.stop();
});

const rootIn = (ns: string): string | undefined =>
  (
    api.getObject('configmaps', ns, ROOT_CERT_CONFIGMAP)?.data as Record<string, string> | undefined
  )?.['root-cert.pem'];

test('the ConfigMap appears in every namespace except kube-public and kube-node-lease', async () => {
  for (const ns of ['default', 'kube-system', 'istio-system', 'app-1']) {
    await waitFor(`the root in ${ns}`, () => rootIn(ns) === BUNDLE_1);
  }
  assert.equal(rootIn('kube-public'), undefined);
  assert.equal(rootIn('kube-node-lease'), undefined);
  // Istio's key in istio-ca-root-cert, named apart from the Secret's key of the same value.
  assert.equal(ROOT_CERT_CONFIGMAP_KEY, 'root-cert.pem');
});

test('a new namespace gets it; an edit and a deletion are repaired', async () => {
  api.createNamespace('late');
  await waitFor('the root in a new namespace', () => rootIn('late') === BUNDLE_1);

  api.putObject('configmaps', 'app-1', {
    metadata: { name: ROOT_CERT_CONFIGMAP },
    data: { 'root-cert.pem': 'tampered' },
  });
  await waitFor('the edit repaired', () => rootIn('app-1') === BUNDLE_1);

  api.deleteObject('configmaps', 'default', ROOT_CERT_CONFIGMAP);
  await waitFor('the deletion repaired', () => rootIn('default') === BUNDLE_1);
});

test('a new bundle is written everywhere; an API outage is survived', async () => {
  publisher.setBundle(BUNDLE_2);
  for (const ns of ['default', 'kube-system', 'istio-system', 'app-1', 'late']) {
    await waitFor(`the new bundle in ${ns}`, () => rootIn(ns) === BUNDLE_2);
  }
  const mark = lines.length;
  await api.stop();
  // Both watches (namespaces, configmaps) saw the outage and wait on the clock to start again.
  await waitFor('both watches to fail', () => {
    const failed = lines.slice(mark).filter((l) => l.msg === 'watch failed; retrying');
    return new Set(failed.map((l) => l.path)).size === 2;
  });
  api.createNamespace('during-outage');
  await api.start();
  await clock.advance(RETRY_MS);
  await waitFor(
    'the namespace created during the outage',
    () => rootIn('during-outage') === BUNDLE_2,
  );
});
