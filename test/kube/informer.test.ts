// startInformer (src/kube/informer.ts) against the fake API server: a stop() that comes while
// the first list is in flight leaves no watch behind. client-node's ListWatch starts the watch
// after the list without looking at its stopped flag; an open watch keeps the process alive,
// so serve did not exit on SIGTERM (test/kube/serve-kube-waiting.test.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, type KubernetesListObject, type V1Secret } from '@kubernetes/client-node';
import { systemClock } from '../../src/clock.js';
import { startInformer } from '../../src/kube/informer.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';
import { ManualClock } from '../support/manual-clock.js';
import { capturingLogger, kubeConfigFor } from './helpers.js';

const NS = 'istio-system';
let api: FakeApiServer;

before(async () => {
  api = await FakeApiServer.start({
    namespaces: [NS],
    users: { 'token-stopped': 'stopped', 'token-live': 'live', 'token-failing': 'failing' },
  });
});
after(async () => {
  await api.stop();
});

function informer(token: string, list: () => Promise<KubernetesListObject<V1Secret>>) {
  return startInformer<V1Secret>({
    kubeConfig: kubeConfigFor(api, token),
    path: `/api/v1/namespaces/${NS}/secrets`,
    list,
    clock: systemClock,
    handlers: {},
  });
}

test('stopped while its list is in flight: no watch is opened afterwards', async () => {
  const core = kubeConfigFor(api, 'token-stopped').makeApiClient(CoreV1Api);
  let releaseList: () => void = () => {};
  const listHeld = new Promise<void>((resolve) => (releaseList = resolve));
  let listed = false;
  const stopped = informer('token-stopped', async () => {
    const l = await core.listNamespacedSecret({ namespace: NS });
    await listHeld;
    listed = true;
    return l;
  });
  await waitFor('the list under way', () => api.count({ verb: 'list', user: 'stopped' }) === 1);
  await stopped.stop();
  releaseList();
  await stopped.synced;
  assert.ok(listed);

  // Another informer, started after, opens its watch: the stopped one's would have come first.
  const liveCore = kubeConfigFor(api, 'token-live').makeApiClient(CoreV1Api);
  const live = informer('token-live', () => liveCore.listNamespacedSecret({ namespace: NS }));
  try {
    await waitFor('the live watch', () => api.count({ verb: 'watch', user: 'live' }) === 1);
    await waitFor('one watch open', () => api.openWatches === 1);
    assert.equal(api.count({ verb: 'watch', user: 'stopped' }), 0, 'no watch after stop()');
  } finally {
    await live.stop();
  }
  await waitFor('no watch open', () => api.openWatches === 0);
});

// A replica that cannot reach the API server (or is refused by it) must say so at the default log
// level: it was a debug line only, and `serve --kube` waited in silence. One warning per run of
// failures, debug lines while it lasts, and one line when a list succeeds again.
test('a run of failed lists: one warning, then debug lines, then one line when it resumes', async () => {
  const clock = new ManualClock();
  const { logger, lines } = capturingLogger();
  const core = kubeConfigFor(api, 'token-failing').makeApiClient(CoreV1Api);
  let failuresLeft = 3;
  const failing = startInformer<V1Secret>({
    kubeConfig: kubeConfigFor(api, 'token-failing'),
    path: `/api/v1/namespaces/${NS}/secrets`,
    list: () => {
      if (failuresLeft > 0) {
        failuresLeft -= 1;
        return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6443'));
      }
      return core.listNamespacedSecret({ namespace: NS });
    },
    clock,
    retryMs: 1000,
    logger,
    handlers: {},
  });
  const failed = () => lines.filter((l) => l.msg.startsWith('list or watch failed'));
  try {
    for (let n = 1; n <= 3; n++) {
      await waitFor(`failure ${n} logged`, () => failed().length === n);
      await clock.advance(1000);
    }
    await failing.synced;
    const resumed = await waitFor('the resumption logged', () =>
      lines.find((l) => l.msg === 'list and watch resumed'),
    );
    const [first, ...rest] = failed();
    assert.ok(first);
    assert.equal(first.level, 40, 'the first failure is a warning');
    assert.equal(first['path'], `/api/v1/namespaces/${NS}/secrets`);
    assert.match(String(first['error']), /ECONNREFUSED/);
    assert.deepEqual(
      rest.map((l) => l.level),
      [20, 20],
      'the rest of the run at debug level',
    );
    assert.equal(resumed.level, 30);
    assert.equal(resumed['failures'], 3);
  } finally {
    await failing.stop();
  }
});

// Found in review: client-node resumes a failed watch from its resourceVersion without a list,
// and only a list ended the run of failures: the next outage, days later, was a debug line.
test('a watch that fails and resumes without a list: resumption said, and the next outage warned again', async () => {
  const clock = new ManualClock();
  const { logger, lines } = capturingLogger();
  const core = kubeConfigFor(api, 'token-live').makeApiClient(CoreV1Api);
  const watching = startInformer<V1Secret>({
    kubeConfig: kubeConfigFor(api, 'token-live'),
    path: `/api/v1/namespaces/${NS}/secrets`,
    list: () => core.listNamespacedSecret({ namespace: NS }),
    clock,
    retryMs: 1000,
    logger,
    handlers: {},
  });
  const warnings = () =>
    lines.filter((l) => l.msg === 'list or watch failed; retrying until it succeeds');
  const resumptions = () => lines.filter((l) => l.msg === 'list and watch resumed');
  try {
    await watching.synced;
    for (let outage = 1; outage <= 2; outage++) {
      const watches = api.count({ verb: 'watch', user: 'live' });
      await waitFor('a watch open', () => api.openWatches > 0);
      api.failNext({ verb: 'watch', user: 'live' }, 500);
      api.endWatches(); // the client re-watches at once, and that watch is refused
      await waitFor(`outage ${outage} warned`, () => warnings().length === outage);
      await clock.advance(1000); // the retry: a watch from the kept resourceVersion
      await waitFor(`outage ${outage} over`, () => resumptions().length === outage);
      assert.ok(api.count({ verb: 'watch', user: 'live' }) >= watches + 2);
    }
    assert.ok(warnings().every((l) => l.level === 40));
  } finally {
    await watching.stop();
  }
});
