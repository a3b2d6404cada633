import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  RootPublisher,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_CONFIGMAP_KEY,
} from '../../src/kube/root-publisher.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { kubeConfigFor, waitFor } from './helpers.js';

let api: FakeApiServer;
let publisher: RootPublisher;
const BUNDLE_1 = '-----BEGIN CERTIFICATE-----\nMQ==\n-----END CERTIFICATE-----\n';
const BUNDLE_2 = BUNDLE_1 + '-----BEGIN CERTIFICATE-----\nMg==\n-----END CERTIFICATE-----\n';

before(async () => {
  api = await FakeApiServer.start({ namespaces: ['istio-system', 'app-1'] });
  const kc = kubeConfigFor(api);
  publisher = new RootPublisher({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    rootBundlePem: BUNDLE_1,
    retryMs: 50,
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
    await waitFor(() => rootIn(ns) === BUNDLE_1, `the root in ${ns}`);
  }
  assert.equal(rootIn('kube-public'), undefined);
  assert.equal(rootIn('kube-node-lease'), undefined);
  // Istio's key in istio-ca-root-cert, named apart from the Secret's key of the same value.
  assert.equal(ROOT_CERT_CONFIGMAP_KEY, 'root-cert.pem');
});

test('a new namespace gets it; an edit and a deletion are repaired', async () => {
  api.createNamespace('late');
  await waitFor(() => rootIn('late') === BUNDLE_1, 'the root in a new namespace');

  api.putObject('configmaps', 'app-1', {
    metadata: { name: ROOT_CERT_CONFIGMAP },
    data: { 'root-cert.pem': 'tampered' },
  });
  await waitFor(() => rootIn('app-1') === BUNDLE_1, 'the edit repaired');

  api.deleteObject('configmaps', 'default', ROOT_CERT_CONFIGMAP);
  await waitFor(() => rootIn('default') === BUNDLE_1, 'the deletion repaired');
});

test('a new bundle is written everywhere; an API outage is survived', async () => {
  publisher.setBundle(BUNDLE_2);
  for (const ns of ['default', 'kube-system', 'istio-system', 'app-1', 'late']) {
    await waitFor(() => rootIn(ns) === BUNDLE_2, `the new bundle in ${ns}`);
  }
  await api.stop();
  await new Promise((r) => setTimeout(r, 200));
  api.createNamespace('during-outage');
  await api.start();
  await waitFor(
    () => rootIn('during-outage') === BUNDLE_2,
    'the namespace created during the outage',
  );
});
