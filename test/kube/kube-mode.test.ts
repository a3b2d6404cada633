// Kubernetes mode as serve starts it (src/cli/kube-wiring.ts), several replicas in-process
// against the fake API server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { authenticateCaller } from '../../src/authn/authenticate.js';
import { isCastellanError } from '../../src/errors.js';
import { parseKubeOptions, startKubeMode, type KubeRuntime } from '../../src/cli/kube-wiring.js';
import { ROOT_CERT_CONFIGMAP } from '../../src/kube/root-publisher.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';

const NS = 'istio-system';
let api: FakeApiServer;
let dir: string;
const runtimes: KubeRuntime[] = [];

before(async () => {
  api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  dir = mkdtempSync(join(tmpdir(), 'kube-mode-'));
});
after(async () => {
  await Promise.all(runtimes.map((r) => r.close()));
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('flags: bad values are refused before anything starts', () => {
  assert.throws(
    () => parseKubeOptions({ kube: true, remoteKubeconfig: ['nope'] }, {}),
    /clusterid=path/,
  );
  assert.throws(() => parseKubeOptions({ kube: true, leaseName: 'Bad_Name' }, {}), /--lease-name/);
  assert.throws(() => parseKubeOptions({ jwtOffline: true }, {}), /needs --kube/);
  assert.throws(
    () => parseKubeOptions({ kube: true, tokenReviewCacheTtl: 'soon' }, {}),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message.startsWith('invalid --token-review-cache-ttl "soon"'),
  );
  const c = parseKubeOptions(
    { remoteKubeconfig: ['c2=/x'] },
    { KUBERNETES_SERVICE_HOST: '10.0.0.1' },
  );
  assert.equal(c.enabled, true, 'automatic in a pod');
  assert.equal(c.remoteKubeconfigs.get('c2'), '/x');
  assert.equal(c.tokenReviewCacheMaxAgeMs, 60_000);
});

test('an unreadable --remote-kubeconfig is refused before anything is written to the cluster', async () => {
  const missing = join(dir, 'no-such-kubeconfig');
  const config = parseKubeOptions(
    {
      kube: true,
      kubeconfig: api.writeKubeconfig(join(dir, 'kubeconfig')),
      remoteKubeconfig: [`c2=${missing}`],
    },
    {},
  );
  api.resetRequests();
  await assert.rejects(
    startKubeMode(config, {
      namespace: NS,
      trustDomain: 'cluster.local',
      tokenAudiences: ['istio-ca'],
      clock: systemClock,
      logger: silentLogger,
    }),
    (e) => isCastellanError(e, 'invalid-argument') && e.message.includes(missing),
  );
  assert.equal(api.requests.length, 0, 'no API call was made');
});

test('three replicas: one root, one leader publishing ConfigMaps, failover moves the work', async () => {
  const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
  const config = {
    ...parseKubeOptions({ kube: true, kubeconfig, jwtOffline: true, leaseDuration: '1s' }, {}),
  };
  const started = await Promise.all(
    ['r0', 'r1', 'r2'].map((identity) =>
      startKubeMode(config, {
        namespace: NS,
        trustDomain: 'cluster.local',
        tokenAudiences: ['istio-ca'],
        clock: systemClock,
        logger: silentLogger,
        identity,
      }),
    ),
  );
  runtimes.push(...started);
  const roots = new Set(started.map((r) => r.caState.current()!.bundle.rootBundlePem));
  assert.equal(roots.size, 1, 'every replica serves the same root');
  assert.ok(api.getObject('secrets', NS, SELF_SIGNED_SECRET));
  const [root] = [...roots];

  const leaders = await waitFor('one leader', () => {
    const l = started.filter((r) => r.leader.isLeader);
    return l.length === 1 ? l : undefined;
  });
  for (const ns of ['default', NS, 'app']) {
    await waitFor(
      `the root in ${ns}`,
      () =>
        (
          api.getObject('configmaps', ns, ROOT_CERT_CONFIGMAP)?.data as
            Record<string, string> | undefined
        )?.['root-cert.pem'] === root,
    );
  }

  // Both authenticators work: offline JWT and TokenReview.
  const token = await api.issuer.issueToken({
    namespace: 'app',
    serviceAccount: 'web',
    audiences: ['istio-ca'],
  });
  const request = {
    metadata: { authorization: [`Bearer ${token}`] },
    peerCertificates: [],
    peerAddress: 'x',
  };
  const caller = await authenticateCaller(started[1]!.tokenAuthenticators, request);
  assert.equal(caller.serviceAccount, 'web');
  // authenticateCaller stops at the first that accepts (jwt): ask each one on its own.
  const authenticators = started[1]!.tokenAuthenticators;
  assert.deepEqual(
    authenticators.map((a) => a.name),
    ['jwt', 'token-review'],
  );
  const reviews = api.count({ resource: 'tokenreviews' });
  for (const a of authenticators) {
    assert.equal((await a.authenticate(request))?.serviceAccount, 'web', a.name);
  }
  assert.equal(api.count({ resource: 'tokenreviews' }), reviews + 1, 'one TokenReview call');

  // The leader goes away: another replica takes over and repairs what is deleted afterwards.
  const oldLeader = leaders[0]!;
  await oldLeader.close();
  runtimes.splice(runtimes.indexOf(oldLeader), 1);
  const next = await waitFor('a new leader', () => runtimes.find((r) => r.leader.isLeader), 5000);
  assert.notEqual(next, oldLeader);
  api.deleteObject('configmaps', 'app', ROOT_CERT_CONFIGMAP);
  await waitFor(
    'repair by the new leader',
    () => api.getObject('configmaps', 'app', ROOT_CERT_CONFIGMAP) !== undefined,
  );
});
