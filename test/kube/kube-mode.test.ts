// Kubernetes mode as serve starts it (src/cli/serve/kube-runtime.ts), several replicas
// in-process against the fake API server. Its flags: test/cli/serve-options.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { authenticateCaller } from '../../src/authn/authenticate.js';
import { isCastellanError } from '../../src/errors.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import {
  startKubeRuntime,
  type KubeRuntime,
  type KubeRuntimeDeps,
} from '../../src/cli/serve/kube-runtime.js';
import type { KubeOptions } from '../../src/kube/options.js';
import { ROOT_CERT_CONFIGMAP } from '../../src/kube/configmap-publisher.js';
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

/** Kubernetes mode's options as serve completes them from these flags. */
function kubeOptions(flags: ServeFlags): KubeOptions {
  const kube = completeServeOptions({ kube: true, ...flags }, {}).kube;
  assert.ok(kube, 'Kubernetes mode');
  return kube;
}

const deps = (identity?: string): KubeRuntimeDeps => ({
  ca: {
    selfSignedKeyType: 'ec-p256',
    selfSignedRootTtlMs: 10 * 365 * 86_400_000,
    caKeyUri: undefined,
    enableCaCrl: true,
  },
  trustDomain: () => 'cluster.local',
  authn: { tokenAudiences: ['istio-ca'] },
  clock: systemClock,
  env: {},
  logger: silentLogger,
  identity,
});

test('an unreadable --remote-kubeconfig is refused before anything is written to the cluster', async () => {
  const missing = join(dir, 'no-such-kubeconfig');
  const config = kubeOptions({
    kubeconfig: api.writeKubeconfig(join(dir, 'kubeconfig')),
    remoteKubeconfig: [`c2=${missing}`],
  });
  api.resetRequests();
  await assert.rejects(
    startKubeRuntime(config, deps()),
    (e) => isCastellanError(e, 'invalid-argument') && e.message.includes(missing),
  );
  assert.equal(api.requests.length, 0, 'no API call was made');
});

test('three replicas: one root, one leader publishing ConfigMaps, failover moves the work', async () => {
  const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));
  const config = kubeOptions({ kubeconfig, jwtOffline: true, leaseDuration: '1s' });
  const started = await Promise.all(
    ['r0', 'r1', 'r2'].map((identity) => startKubeRuntime(config, deps(identity))),
  );
  runtimes.push(...started);
  assert.deepEqual(
    started.map((r) => r.trustBundle),
    [
      'ConfigMap istio-ca-root-cert',
      'ConfigMap istio-ca-root-cert',
      'ConfigMap istio-ca-root-cert',
    ],
  );
  // Publishing the trust bundle is joining the election: the leader writes the ConfigMaps.
  await Promise.all(started.map((r) => r.publishTrustBundle()));
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
