import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AuthenticationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError } from '../../src/errors.js';
import { CachingTokenReviewer } from '../../src/authn/caching-token-reviewer.js';
import { TokenReviewAuthenticator } from '../../src/authn/token-review-authenticator.js';
import {
  KubeTokenReviewer,
  SecretRemoteClusters,
  StaticRemoteClusters,
  MULTI_CLUSTER_LABEL,
} from '../../src/kube/kube-token-reviewer.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { kubeConfigFor } from './helpers.js';

let local: FakeApiServer;
let remote: FakeApiServer;
let clock: ManualClock;

before(async () => {
  clock = new ManualClock(Date.now());
  const now = () => clock.now();
  [local, remote] = await Promise.all([
    FakeApiServer.start({ namespaces: ['istio-system'], now }),
    FakeApiServer.start({ now, issuer: 'https://remote.example' }),
  ]);
});
after(async () => {
  await Promise.all([local.stop(), remote.stop()]);
});

const request = (token: string, clusterId?: string) => ({
  metadata: {
    authorization: [`Bearer ${token}`],
    ...(clusterId ? { clusterid: [clusterId] } : {}),
  },
  peerCertificates: [],
  peerAddress: '127.0.0.1:1',
});

test('a bound token is reviewed by the API server: identity and pod from the status', async () => {
  const reviewer = new KubeTokenReviewer(kubeConfigFor(local).makeApiClient(AuthenticationV1Api));
  const token = await local.issuer.issueToken({
    namespace: 'foo',
    serviceAccount: 'bar',
    audiences: ['istio-ca'],
    pod: { name: 'p', uid: 'u' },
  });
  const authn = new TokenReviewAuthenticator({ reviewer });
  const caller = await authn.authenticate(request(token));
  assert.equal(caller?.namespace, 'foo');
  assert.equal(caller.serviceAccount, 'bar');
  assert.equal(caller.podName, 'p');
  const other = await local.issuer.issueToken({
    namespace: 'foo',
    serviceAccount: 'bar',
    audiences: ['x'],
  });
  await assert.rejects(authn.authenticate(request(other)), (e) =>
    isCastellanError(e, 'unauthenticated'),
  );
});

test('the cache cuts TokenReview calls and never accepts a token past its exp', async () => {
  const inner = new KubeTokenReviewer(kubeConfigFor(local).makeApiClient(AuthenticationV1Api));
  const reviewer = new CachingTokenReviewer(inner, { clock, maxAgeMs: 60_000 });
  const authn = new TokenReviewAuthenticator({ reviewer });
  const token = await local.issuer.issueToken({
    namespace: 'foo',
    serviceAccount: 'burst',
    audiences: ['istio-ca'],
    expiresInSeconds: 30,
    issuedAtMs: clock.now(),
  });
  local.resetRequests();
  // A burst of 50 sidecars with the same token.
  await Promise.all(Array.from({ length: 50 }, () => authn.authenticate(request(token))));
  assert.equal(local.count({ resource: 'tokenreviews' }), 1);
  await clock.advance(20_000);
  await authn.authenticate(request(token));
  assert.equal(local.count({ resource: 'tokenreviews' }), 1, 'still cached within exp');
  await clock.advance(11_000); // past exp (30 s), within the cache's maximum age (60 s)
  await assert.rejects(authn.authenticate(request(token)), (e) =>
    isCastellanError(e, 'unauthenticated'),
  );
  assert.equal(local.count({ resource: 'tokenreviews' }), 2, 'the expired entry was not served');
});

test('multi-cluster: clusterid selects a remote API server (file or Secret); unknown → unauthenticated', async () => {
  const remoteToken = await remote.issuer.issueToken({
    namespace: 'r',
    serviceAccount: 'sa',
    audiences: ['istio-ca'],
  });
  const kcLocal = kubeConfigFor(local);
  const files = new StaticRemoteClusters(new Map([['cluster-file', kubeConfigFor(remote)]]));
  local.createNamespace('ms');
  local.putObject('secrets', 'istio-system', {
    metadata: { name: 'istio-remote-secret-c2', labels: { [MULTI_CLUSTER_LABEL]: 'true' } },
    data: { 'cluster-secret': Buffer.from(remote.kubeconfigYaml()).toString('base64') },
  });
  const secrets = new SecretRemoteClusters({
    kubeConfig: kcLocal,
    core: kcLocal.makeApiClient(CoreV1Api),
    namespace: 'istio-system',
    clock,
  });
  await secrets.synced;
  try {
    const reviewer = new KubeTokenReviewer(kcLocal.makeApiClient(AuthenticationV1Api), {
      remotes: [files, secrets],
    });
    const authn = new TokenReviewAuthenticator({ reviewer });
    remote.resetRequests();
    for (const id of ['cluster-file', 'cluster-secret']) {
      const caller = await authn.authenticate(request(remoteToken, id));
      assert.equal(caller?.namespace, 'r');
    }
    assert.equal(remote.count({ resource: 'tokenreviews' }), 2);
    // The local cluster does not know the remote issuer's tokens.
    await assert.rejects(authn.authenticate(request(remoteToken)), (e) =>
      isCastellanError(e, 'unauthenticated'),
    );
    await assert.rejects(
      authn.authenticate(request(remoteToken, 'nowhere')),
      (e) => isCastellanError(e, 'unauthenticated') && /nowhere/.test(e.message),
    );
  } finally {
    await secrets.stop();
  }
});
