// The leader's ConfigMaps in every namespace (istiod's namespace controller,
// pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go): istio-ca-root-cert and
// istio-ca-crl, repaired, removed when the CRL goes, in the namespaces the mesh config's
// discoverySelectors select, against the fake API server.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api } from '@kubernetes/client-node';
import {
  ConfigMapPublisher,
  CRL_CONFIGMAP,
  CRL_CONFIGMAP_KEY,
  EXCLUDED_NAMESPACES,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_CONFIGMAP_KEY,
} from '../../src/kube/configmap-publisher.js';
import { DiscoveryNamespaces } from '../../src/kube/discovery-namespaces.js';
import {
  MESH_CONFIGMAP,
  startMeshConfigWatch,
  type MeshConfigWatch,
} from '../../src/kube/mesh-config-watch.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { capturingLogger, kubeConfigFor } from './helpers.js';

const RETRY_MS = 50;
const BUNDLE_1 = '-----BEGIN CERTIFICATE-----\nMQ==\n-----END CERTIFICATE-----\n';
const BUNDLE_2 = BUNDLE_1 + '-----BEGIN CERTIFICATE-----\nMg==\n-----END CERTIFICATE-----\n';
const CRL_1 = '-----BEGIN X509 CRL-----\nMQ==\n-----END X509 CRL-----\n';
const CRL_2 = CRL_1 + '-----BEGIN X509 CRL-----\nMg==\n-----END X509 CRL-----\n';

/** The one data key of a ConfigMap in `ns`, or undefined when the ConfigMap is absent. */
function valueIn(api: FakeApiServer, name: string, key: string, ns: string): string | undefined {
  return (api.getObject('configmaps', ns, name)?.data as Record<string, string> | undefined)?.[key];
}

function publisherFor(
  api: FakeApiServer,
  clock: ManualClock,
  values: { root: string; crl: string | undefined },
  extra: Partial<ConstructorParameters<typeof ConfigMapPublisher>[0]> = {},
): ConfigMapPublisher {
  const kc = kubeConfigFor(api);
  return new ConfigMapPublisher({
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    configMaps: [
      {
        name: ROOT_CERT_CONFIGMAP,
        key: ROOT_CERT_CONFIGMAP_KEY,
        value: values.root,
        what: 'the root certificate',
      },
      { name: CRL_CONFIGMAP, key: CRL_CONFIGMAP_KEY, value: values.crl, what: 'the CA CRL' },
    ],
    clock,
    retryMs: RETRY_MS,
    ...extra,
  });
}

describe('every namespace', () => {
  let api: FakeApiServer;
  let publisher: ConfigMapPublisher;
  /** Moves only when a test steps it: watch restarts and retries wait for it. */
  const clock = new ManualClock();
  const { logger, lines } = capturingLogger();
  const rootIn = (ns: string): string | undefined =>
    valueIn(api, ROOT_CERT_CONFIGMAP, ROOT_CERT_CONFIGMAP_KEY, ns);
  const crlIn = (ns: string): string | undefined =>
    valueIn(api, CRL_CONFIGMAP, CRL_CONFIGMAP_KEY, ns);

  before(async () => {
    api = await FakeApiServer.start({
      namespaces: ['istio-system', 'app-1', 'local-path-storage'],
    });
    publisher = publisherFor(api, clock, { root: BUNDLE_1, crl: CRL_1 }, { logger });
    publisher.start();
    await publisher.synced();
  });
  after(async () => {
    await publisher.stop();
    await api.stop();
  });

  test('both ConfigMaps appear in every namespace but those istiod skips (kube-system is not one)', async () => {
    for (const ns of ['default', 'kube-system', 'istio-system', 'app-1']) {
      await waitFor(`the root in ${ns}`, () => rootIn(ns) === BUNDLE_1);
      await waitFor(`the CRL in ${ns}`, () => crlIn(ns) === CRL_1);
    }
    // pkg/kube/inject/initializer.go IgnoredNamespaces, less kube-system (namespacecontroller.go).
    assert.deepEqual([...EXCLUDED_NAMESPACES].sort(), [
      'kube-node-lease',
      'kube-public',
      'local-path-storage',
    ]);
    for (const ns of EXCLUDED_NAMESPACES) {
      assert.equal(rootIn(ns), undefined, ns);
      assert.equal(crlIn(ns), undefined, ns);
    }
    // Istio's names and keys (features.CRLConfigMapName, constants.CACRLNamespaceConfigMapDataName),
    // and istiod's label on both.
    assert.deepEqual(
      [CRL_CONFIGMAP, CRL_CONFIGMAP_KEY, ROOT_CERT_CONFIGMAP_KEY],
      ['istio-ca-crl', 'ca-crl.pem', 'root-cert.pem'],
    );
    for (const name of [ROOT_CERT_CONFIGMAP, CRL_CONFIGMAP]) {
      const labels = api.getObject('configmaps', 'app-1', name)?.metadata.labels;
      assert.deepEqual(labels, { 'istio.io/config': 'true' });
    }
  });

  test('a new namespace gets both; an edit and a deletion are repaired', async () => {
    api.createNamespace('late');
    await waitFor('the root in a new namespace', () => rootIn('late') === BUNDLE_1);
    await waitFor('the CRL in a new namespace', () => crlIn('late') === CRL_1);

    api.putObject('configmaps', 'app-1', {
      metadata: { name: ROOT_CERT_CONFIGMAP },
      data: { 'root-cert.pem': 'tampered' },
    });
    api.putObject('configmaps', 'app-1', {
      metadata: { name: CRL_CONFIGMAP },
      data: { 'ca-crl.pem': 'tampered' },
    });
    await waitFor('the root edit repaired', () => rootIn('app-1') === BUNDLE_1);
    await waitFor('the CRL edit repaired', () => crlIn('app-1') === CRL_1);

    api.deleteObject('configmaps', 'default', ROOT_CERT_CONFIGMAP);
    api.deleteObject('configmaps', 'default', CRL_CONFIGMAP);
    await waitFor('the root deletion repaired', () => rootIn('default') === BUNDLE_1);
    await waitFor('the CRL deletion repaired', () => crlIn('default') === CRL_1);
  });

  test('a new CRL is written everywhere; a removed CRL is deleted everywhere, and stays deleted', async () => {
    publisher.set(CRL_CONFIGMAP, CRL_2);
    for (const ns of ['default', 'kube-system', 'istio-system', 'app-1', 'late']) {
      await waitFor(`the new CRL in ${ns}`, () => crlIn(ns) === CRL_2);
    }
    publisher.set(CRL_CONFIGMAP, undefined);
    for (const ns of ['default', 'kube-system', 'istio-system', 'app-1', 'late']) {
      await waitFor(
        `no CRL in ${ns}`,
        () => crlIn(ns) === undefined && !api.getObject('configmaps', ns, CRL_CONFIGMAP),
      );
      assert.equal(rootIn(ns), BUNDLE_1, 'the root stays');
    }
    // Someone puts one back (an old istiod, a stale manifest): removed again.
    api.putObject('configmaps', 'app-1', {
      metadata: { name: CRL_CONFIGMAP },
      data: { 'ca-crl.pem': CRL_1 },
    });
    await waitFor(
      'the stale CRL removed',
      () => !api.getObject('configmaps', 'app-1', CRL_CONFIGMAP),
    );
    publisher.set(CRL_CONFIGMAP, CRL_1);
    await waitFor('the CRL back', () => crlIn('app-1') === CRL_1);
  });

  test('a delete that RBAC forbids is said once and not retried', async () => {
    await waitFor('the CRL in late', () => crlIn('late') === CRL_1);
    const mark = lines.length;
    api.failNext({ verb: 'delete', resource: 'configmaps', namespace: 'late' }, 403);
    publisher.set(CRL_CONFIGMAP, undefined);
    await waitFor('the other namespaces cleaned', () =>
      ['default', 'app-1', 'istio-system'].every(
        (ns) => !api.getObject('configmaps', ns, CRL_CONFIGMAP),
      ),
    );
    const said = await waitFor('the refusal logged', () =>
      lines.slice(mark).find((l) => l.msg.startsWith('cannot remove the CA CRL: forbidden')),
    );
    assert.equal(said.namespace, 'late');
    const deletes = api.count({ verb: 'delete', resource: 'configmaps', namespace: 'late' });
    await clock.advance(RETRY_MS * 4);
    // Another reason to reconcile 'late' (its root edited) does not retry the forbidden delete.
    api.putObject('configmaps', 'late', {
      metadata: { name: ROOT_CERT_CONFIGMAP },
      data: { 'root-cert.pem': 'tampered' },
    });
    await waitFor('the root in late repaired', () => rootIn('late') === BUNDLE_1);
    assert.equal(api.count({ verb: 'delete', resource: 'configmaps', namespace: 'late' }), deletes);
    assert.equal(crlIn('late'), CRL_1, 'left as it was');
    // A new CRL value tries again (and may well be allowed by then).
    publisher.set(CRL_CONFIGMAP, CRL_2);
    await waitFor('the CRL in late updated', () => crlIn('late') === CRL_2);
  });

  test('a new root bundle is written everywhere; an API outage is survived', async () => {
    publisher.set(ROOT_CERT_CONFIGMAP, BUNDLE_2);
    for (const ns of ['default', 'kube-system', 'istio-system', 'app-1', 'late']) {
      await waitFor(`the new bundle in ${ns}`, () => rootIn(ns) === BUNDLE_2);
    }
    const mark = lines.length;
    await api.stop();
    // Every watch (namespaces, both ConfigMaps) saw the outage and waits on the clock.
    await waitFor('the three watches to fail', () => {
      const failed = lines.slice(mark).filter((l) => l.msg.startsWith('list or watch failed'));
      return new Set(failed.map((l) => String(l['path']))).size === 2 && failed.length >= 3;
    });
    api.createNamespace('during-outage');
    await api.start();
    await clock.advance(RETRY_MS);
    await waitFor(
      'the namespace created during the outage',
      () => rootIn('during-outage') === BUNDLE_2 && crlIn('during-outage') === CRL_2,
    );
  });
});

describe("the mesh config's discoverySelectors", () => {
  let api: FakeApiServer;
  let discovery: DiscoveryNamespaces;
  let meshWatch: MeshConfigWatch;
  let publisher: ConfigMapPublisher;
  const clock = new ManualClock();
  const { logger, lines } = capturingLogger();
  const rootIn = (ns: string): string | undefined =>
    valueIn(api, ROOT_CERT_CONFIGMAP, ROOT_CERT_CONFIGMAP_KEY, ns);
  const crlIn = (ns: string): string | undefined =>
    valueIn(api, CRL_CONFIGMAP, CRL_CONFIGMAP_KEY, ns);
  const meshConfig = (mesh: string): void => {
    api.putObject('configmaps', 'istio-system', {
      metadata: { name: MESH_CONFIGMAP },
      data: { mesh },
    });
  };

  before(async () => {
    api = await FakeApiServer.start({ namespaces: ['istio-system'] });
    api.createNamespace('team-a', { mesh: 'on' });
    api.createNamespace('team-b', { tier: 'web' });
    api.createNamespace('legacy');
    // As in Istio's docs: one selector by label, one by expression; a namespace is in when any
    // selector matches.
    meshConfig(
      [
        'trustDomain: cluster.local',
        'discoverySelectors:',
        '  - matchLabels: {mesh: "on"}',
        '  - matchExpressions:',
        '      - {key: tier, operator: In, values: [web, api]}',
        '  - matchLabels: {kubernetes.io/metadata.name: istio-system}',
      ].join('\n'),
    );
    const kc = kubeConfigFor(api);
    // As serve wires it (src/cli/serve/kube-runtime.ts): the one mesh config watch feeds it.
    const selectors = new DiscoveryNamespaces({ logger });
    discovery = selectors;
    meshWatch = startMeshConfigWatch({
      kubeConfig: kc,
      core: kc.makeApiClient(CoreV1Api),
      namespace: 'istio-system',
      clock,
      logger,
      retryMs: RETRY_MS,
      onChange: (text) => selectors.meshChanged(text, 'configmap istio-system/istio key mesh'),
    });
    await meshWatch.synced;
    publisher = publisherFor(
      api,
      clock,
      { root: BUNDLE_1, crl: CRL_1 },
      { namespaces: discovery, logger },
    );
    publisher.start();
    await publisher.synced();
  });
  after(async () => {
    await publisher.stop();
    await meshWatch.stop();
    await api.stop();
  });

  test('only selected namespaces get the ConfigMaps, root and CRL alike', async () => {
    for (const ns of ['team-a', 'team-b', 'istio-system']) {
      await waitFor(`both in ${ns}`, () => rootIn(ns) === BUNDLE_1 && crlIn(ns) === CRL_1);
    }
    for (const ns of ['legacy', 'default', 'kube-system']) {
      assert.equal(rootIn(ns), undefined, ns);
      assert.equal(crlIn(ns), undefined, ns);
    }
  });

  test('a namespace labelled into the selection gets them; one labelled out keeps them, unmanaged', async () => {
    api.createNamespace('legacy', { tier: 'api' });
    await waitFor(
      'legacy selected',
      () => rootIn('legacy') === BUNDLE_1 && crlIn('legacy') === CRL_1,
    );
    api.createNamespace('team-b', { tier: 'batch' });
    // As istiod: a namespace that leaves the selection is no longer managed, nothing is deleted.
    api.putObject('configmaps', 'team-b', {
      metadata: { name: ROOT_CERT_CONFIGMAP },
      data: { 'root-cert.pem': 'edited' },
    });
    publisher.set(CRL_CONFIGMAP, CRL_2);
    await waitFor('the new CRL in selected namespaces', () =>
      ['team-a', 'legacy', 'istio-system'].every((ns) => crlIn(ns) === CRL_2),
    );
    assert.equal(rootIn('team-b'), 'edited', 'not repaired: out of the selection');
    assert.equal(crlIn('team-b'), CRL_1, 'not rewritten: out of the selection');
  });

  test('a mesh config edit is followed live; a bad selector leaves the selection as it was', async () => {
    const mark = lines.length;
    meshConfig('discoverySelectors:\n  - matchExpressions: [{key: tier, operator: Sometimes}]\n');
    const refused = await waitFor('the refusal', () =>
      lines.slice(mark).find((l) => l.msg.startsWith('mesh config refused')),
    );
    assert.match(
      String(refused.error),
      /configmap istio-system\/istio key mesh discoverySelectors\[0\]\.matchExpressions\[0\]\.operator: "Sometimes" is not a valid label selector operator/,
    );
    api.createNamespace('team-c', { mesh: 'on' });
    await waitFor('team-c selected by the old selectors', () => rootIn('team-c') === BUNDLE_1);

    // No selectors: every namespace, as istiod without discoverySelectors.
    meshConfig('trustDomain: cluster.local\n');
    for (const ns of ['default', 'kube-system', 'team-b']) {
      await waitFor(`${ns} selected`, () => rootIn(ns) === BUNDLE_1 && crlIn(ns) === CRL_2);
    }
  });
});
