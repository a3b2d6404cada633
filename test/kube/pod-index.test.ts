// The pod index behind ambient mode's node authorization (src/kube/pod-index.ts) against the
// in-process fake API server: one list + watch of every pod, indexed by name and by (service
// account, node) as istiod's NewClusterNodeAuthorizer indexes them
// (security/pkg/server/ca/node_auth.go), pods in phase Failed left out, and one index per
// cluster (node_auth.go, MulticlusterNodeAuthorizor).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { isCastellanError } from '../../src/errors.js';
import { startInformer } from '../../src/kube/informer.js';
import { ClusterPodIndexes, PodIndex } from '../../src/kube/pod-index.js';
import { StaticRemoteClusters } from '../../src/kube/kube-token-reviewer.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { systemClock } from '../../src/clock.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { kubeConfigFor } from './helpers.js';

let api: FakeApiServer;
let west: FakeApiServer;
const stops: (() => Promise<void>)[] = [];

before(async () => {
  [api, west] = await Promise.all([
    FakeApiServer.start({ namespaces: ['istio-system', 'app'] }),
    FakeApiServer.start({ namespaces: ['istio-system', 'app'] }),
  ]);
});
after(async () => {
  for (const s of stops) await s();
  await Promise.all([api.stop(), west.stop()]);
});

/** A pod as the API server holds it: every field the index must ignore is there too. */
function putPod(
  server: FakeApiServer,
  ns: string,
  name: string,
  serviceAccount: string,
  nodeName: string | undefined,
  phase = 'Running',
): string {
  const pod = server.putObject('pods', ns, {
    metadata: { name, labels: { app: name }, annotations: { note: 'x'.repeat(2000) } },
    spec: {
      serviceAccountName: serviceAccount,
      ...(nodeName ? { nodeName } : {}),
      containers: [{ name: 'app', image: 'app:1', env: [{ name: 'A', value: 'b' }] }],
    },
    status: { phase, podIP: '10.0.0.1' },
  });
  return pod.metadata.uid as string;
}

function startIndex(server: FakeApiServer): PodIndex {
  const index = new PodIndex({
    kubeConfig: kubeConfigFor(server),
    clock: systemClock,
    retryMs: 50,
  });
  stops.push(() => index.stop());
  return index;
}

test('pods by name (UID, service account, node) and by (service account, node), from the first list and the watch', async () => {
  const uid = putPod(api, 'istio-system', 'ztunnel-a', 'ztunnel', 'node-a');
  putPod(api, 'app', 'web-1', 'web', 'node-a');
  putPod(api, 'app', 'pending', 'queue', undefined);
  const index = startIndex(api);
  await index.synced;
  assert.ok(index.isSynced);
  assert.deepEqual(index.pod('istio-system', 'ztunnel-a'), {
    uid,
    serviceAccount: 'ztunnel',
    nodeName: 'node-a',
  });
  assert.equal(index.runsOnNode('app', 'web', 'node-a'), true);
  assert.equal(index.runsOnNode('app', 'web', 'node-b'), false, 'another node');
  assert.equal(index.runsOnNode('istio-system', 'web', 'node-a'), false, 'another namespace');
  // Not scheduled yet: known by name, counted on no node (as istiod's index).
  assert.deepEqual(index.pod('app', 'pending'), {
    uid: index.pod('app', 'pending')!.uid,
    serviceAccount: 'queue',
    nodeName: '',
  });

  // Scheduled later: the watch moves it onto its node.
  putPod(api, 'app', 'pending', 'queue', 'node-b');
  await waitFor('the binding', () => index.runsOnNode('app', 'queue', 'node-b'));
  // No list per change: one list, then the watch.
  assert.equal(api.count({ verb: 'list', resource: 'pods' }), 1);
});

test('a pod in phase Failed does not count on its node; deleting the last pod of an identity removes it', async () => {
  putPod(api, 'app', 'batch-1', 'batch', 'node-c');
  putPod(api, 'app', 'batch-2', 'batch', 'node-c');
  const index = startIndex(api);
  await index.synced;
  assert.equal(index.runsOnNode('app', 'batch', 'node-c'), true);
  putPod(api, 'app', 'batch-1', 'batch', 'node-c', 'Failed');
  api.deleteObject('pods', 'app', 'batch-2');
  // One watch delivers in order: once the deletion is in, so is the earlier phase change.
  await waitFor('batch-2 gone', () => index.pod('app', 'batch-2') === undefined);
  assert.equal(index.runsOnNode('app', 'batch', 'node-c'), false, 'only a Failed pod is left');
  putPod(api, 'app', 'batch-3', 'batch', 'node-c', 'Succeeded');
  await waitFor('batch-3', () => index.pod('app', 'batch-3'));
  assert.equal(index.runsOnNode('app', 'batch', 'node-c'), true, 'only Failed is left out');
});

test('a re-created pod has a new UID; after a 410 relist the index holds what the API server holds', async () => {
  const index = startIndex(api);
  await index.synced;
  const before = putPod(api, 'istio-system', 'ztunnel-x', 'ztunnel', 'node-x');
  await waitFor('ztunnel-x', () => index.pod('istio-system', 'ztunnel-x')?.uid === before);
  api.deleteObject('pods', 'istio-system', 'ztunnel-x');
  const after = putPod(api, 'istio-system', 'ztunnel-x', 'ztunnel', 'node-x');
  assert.notEqual(after, before);
  await waitFor('the new UID', () => index.pod('istio-system', 'ztunnel-x')?.uid === after);

  // Missed while the watch was down and history was compacted: the resume gets 410 Gone.
  await waitFor('a watch', () => api.openWatches > 0);
  api.endWatches();
  api.deleteObject('pods', 'istio-system', 'ztunnel-x');
  putPod(api, 'app', 'late', 'late', 'node-x');
  api.store.compact();
  await waitFor('the relist', () => index.runsOnNode('app', 'late', 'node-x'));
  assert.equal(index.pod('istio-system', 'ztunnel-x'), undefined);
  assert.equal(index.runsOnNode('istio-system', 'ztunnel', 'node-x'), false);
});

test('one index per cluster: this one at once, a remote one on its first request; an unknown cluster is refused', async () => {
  putPod(west, 'app', 'db-1', 'db', 'w-1');
  const clock = new ManualClock();
  const indexes = new ClusterPodIndexes({
    kubeConfig: kubeConfigFor(api),
    localClusterId: 'east',
    remotes: [new StaticRemoteClusters(new Map([['west', kubeConfigFor(west)]]))],
    clock,
    retryMs: 50,
  });
  stops.push(() => indexes.stop());
  await indexes.synced;
  assert.equal(west.count({ verb: 'list', resource: 'pods' }), 0, 'no remote watch before use');
  for (const local of [undefined, '', 'east']) {
    const pods = await indexes.cluster(local);
    assert.equal(pods.runsOnNode('app', 'db', 'w-1'), false, `${local}: this cluster's pods`);
  }
  const pods = await indexes.cluster('west');
  assert.equal(pods.runsOnNode('app', 'db', 'w-1'), true);
  assert.equal(await indexes.cluster('west'), pods, 'started once');
  assert.equal(west.count({ verb: 'list', resource: 'pods' }), 1);
  await assert.rejects(
    indexes.cluster('Kubernetes'),
    (e) =>
      isCastellanError(e, 'impersonation-refused') &&
      e.message === 'unknown cluster "Kubernetes": no kubeconfig for it',
    'our id is "east" here',
  );
});

test('a cluster whose pods cannot be listed is refused after the wait, on the injected clock', async () => {
  const down = await FakeApiServer.start();
  const kubeConfig = kubeConfigFor(down);
  await down.stop();
  const clock = new ManualClock();
  const indexes = new ClusterPodIndexes({
    kubeConfig: kubeConfigFor(api),
    remotes: [new StaticRemoteClusters(new Map([['down', kubeConfig]]))],
    clock,
    syncWaitMs: 5000,
    retryMs: 50,
  });
  stops.push(() => indexes.stop());
  const waiting = indexes.cluster('down');
  let settled = false;
  void waiting.catch(() => undefined).finally(() => (settled = true));
  await clock.advance(4999);
  assert.equal(settled, false, 'still waiting for the first list');
  await clock.advance(1);
  await assert.rejects(
    waiting,
    (e) =>
      isCastellanError(e, 'impersonation-refused') &&
      e.message === 'the pods of cluster "down" are not listed yet (waited 5000 ms)',
  );
});

test("startInformer's transform: listed and watched objects are cached as transformed", async () => {
  putPod(api, 'app', 'listed', 'sa', 'node-t');
  const kubeConfig = kubeConfigFor(api);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const informer = startInformer<V1Pod>({
    kubeConfig,
    path: '/api/v1/pods',
    list: () => core.listPodForAllNamespaces(),
    transform: (p) => ({ metadata: p.metadata, spec: { containers: [] } }),
    clock: systemClock,
    handlers: {},
    retryMs: 50,
  });
  stops.push(() => informer.stop());
  await informer.synced;
  putPod(api, 'app', 'watched', 'sa', 'node-t');
  const watched = await waitFor('the watched pod', () => informer.get('watched', 'app'));
  for (const pod of [informer.get('listed', 'app'), watched]) {
    assert.deepEqual(pod?.spec, { containers: [] }, pod?.metadata?.name);
    assert.equal(pod.status, undefined);
  }
});
