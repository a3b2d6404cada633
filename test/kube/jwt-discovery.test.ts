import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { systemClock } from '../../src/clock.js';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import { isCastellanError } from '../../src/errors.js';
import { ApiServerJwks } from '../../src/kube/jwt-discovery.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { capturingLogger, kubeConfigFor } from './helpers.js';

let api: FakeApiServer;
before(async () => {
  api = await FakeApiServer.start();
});
after(() => api.stop());

const request = (token: string) => ({
  metadata: { authorization: [`Bearer ${token}`] },
  peerCertificates: [],
  peerAddress: '127.0.0.1:1',
});

test('--jwt-offline: keys from issuer discovery keep verifying while the API server is down', async () => {
  const jwks = new ApiServerJwks({ kubeConfig: kubeConfigFor(api), clock: systemClock });
  await jwks.start();
  try {
    assert.equal(jwks.issuer, 'https://kubernetes.default.svc.cluster.local');
    const authn = new JwtAuthenticator({ issuer: jwks.issuer, keys: jwks.keys });
    const token = await api.issuer.issueToken({
      namespace: 'foo',
      serviceAccount: 'bar',
      audiences: ['istio-ca'],
    });
    assert.equal((await authn.authenticate(request(token)))?.serviceAccount, 'bar');
    await api.stop();
    const again = await api.issuer.issueToken({
      namespace: 'foo',
      serviceAccount: 'baz',
      audiences: ['istio-ca'],
    });
    assert.equal((await authn.authenticate(request(again)))?.serviceAccount, 'baz');
    await api.start();
    // A token signed by a key the API server never published is refused.
    const other = await FakeApiServer.start();
    const forged = await other.issuer.issueToken({
      namespace: 'foo',
      serviceAccount: 'bar',
      audiences: ['istio-ca'],
    });
    await other.stop();
    await assert.rejects(authn.authenticate(request(forged)), (e) =>
      isCastellanError(e, 'unauthenticated'),
    );
  } finally {
    await jwks.stop();
  }
});

test('discovery needs the API server at start: a clear error when it is unreachable', async () => {
  const down = await FakeApiServer.start();
  const kc = kubeConfigFor(down);
  await down.stop();
  const jwks = new ApiServerJwks({ kubeConfig: kc, clock: systemClock });
  await assert.rejects(jwks.start(), (e) => isCastellanError(e, 'unavailable'));
});

test('--jwt-offline: keys are refreshed every interval on the clock; a failed refresh keeps the cached ones', async () => {
  const clock = new ManualClock();
  const { logger, lines } = capturingLogger();
  const jwks = new ApiServerJwks({
    kubeConfig: kubeConfigFor(api),
    clock,
    refreshMs: 60_000,
    logger,
  });
  const loaded = () => lines.filter((l) => l.msg === 'service account issuer keys loaded').length;
  await jwks.start();
  try {
    assert.equal(loaded(), 1);
    assert.equal(clock.nextDue(), clock.now() + 60_000, 'the next refresh is one interval away');
    api.failNext({ path: '/.well-known/openid-configuration' }, 500);
    await clock.advance(60_000);
    await waitFor('the failed refresh', () =>
      lines.some((l) => l.msg === 'JWKS refresh failed; keeping the cached keys'),
    );
    const authn = new JwtAuthenticator({ issuer: jwks.issuer, keys: jwks.keys });
    const token = await api.issuer.issueToken({
      namespace: 'foo',
      serviceAccount: 'bar',
      audiences: ['istio-ca'],
    });
    assert.equal((await authn.authenticate(request(token)))?.serviceAccount, 'bar');
    await clock.advance(60_000);
    await waitFor('the next refresh', () => loaded() === 2);
  } finally {
    await jwks.stop();
  }
  assert.equal(clock.pending, 0, 'no timer left after stop()');
});
