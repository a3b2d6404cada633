// istiod's settings in Kubernetes mode (src/cli/serve/kube-runtime.ts), in process against the
// fake API server, from the flags and environment serve completes (src/cli/serve/options.ts):
// the root ConfigMap's name (PILOT_CA_CERT_CONFIGMAP), the self-signed root's lifetime
// (CITADEL_SELF_SIGNED_CA_CERT_TTL), and the TokenReview cache, which `0` turns off.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { authenticateCaller } from '../../src/authn/authenticate.js';
import type { Authenticator } from '../../src/authn/authenticator.js';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { startKubeRuntime, type KubeRuntime } from '../../src/cli/serve/kube-runtime.js';
import { completeServeOptions, type Environment } from '../../src/cli/serve/options.js';
import { systemClock } from '../../src/clock.js';
import { isCastellanError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { SELF_SIGNED_SECRET } from '../../src/kube/self-signed-secret.js';
import { FakeApiServer } from '../support/fake-apiserver/index.js';
import { waitFor } from '../support/wait-for.js';

const NS = 'istio-system';
const HOUR = 3_600_000;
let dir: string;
const open: { runtime?: KubeRuntime; api: FakeApiServer }[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'istiod-settings-'));
});
after(async () => {
  for (const o of open) {
    await o.runtime?.close();
    await o.api.stop();
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A fresh API server and Kubernetes mode started on it, as serve would from these settings. */
async function start(
  flags: ServeFlags,
  env: Environment = {},
): Promise<{ api: FakeApiServer; runtime: KubeRuntime }> {
  const api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  const entry: { runtime?: KubeRuntime; api: FakeApiServer } = { api };
  open.push(entry);
  const options = completeServeOptions(
    { kube: true, kubeconfig: api.writeKubeconfig(join(dir, `kc-${open.length}`)), ...flags },
    env,
  );
  const runtime = await startKubeRuntime(options.kube!, {
    ca: options.ca,
    authn: options.authn,
    trustDomain: () => options.ca.trustDomain,
    clock: systemClock,
    env: {},
    logger: silentLogger,
  });
  entry.runtime = runtime;
  return { api, runtime };
}

const request = (token: string) => ({
  metadata: { authorization: [`Bearer ${token}`] },
  peerCertificates: [],
  peerAddress: 'x',
});

test('PILOT_CA_CERT_CONFIGMAP names the published ConfigMap; CITADEL_SELF_SIGNED_CA_CERT_TTL the root lifetime', async () => {
  const { api, runtime } = await start(
    {},
    { PILOT_CA_CERT_CONFIGMAP: 'mesh-root-cert', CITADEL_SELF_SIGNED_CA_CERT_TTL: '17520h' },
  );
  assert.equal(runtime.trustBundle, 'ConfigMap mesh-root-cert');
  const root = Buffer.from(
    (api.getObject('secrets', NS, SELF_SIGNED_SECRET)!.data as Record<string, string>)[
      'root-cert.pem'
    ]!,
    'base64',
  ).toString();
  const cert = new X509Certificate(root);
  // Two years from now, the NotBefore backdated two minutes (Istio).
  assert.equal(Date.parse(cert.validTo) - Date.parse(cert.validFrom), 17_520 * HOUR + 120_000);
  await runtime.publishTrustBundle();
  for (const ns of [NS, 'app']) {
    await waitFor(
      `mesh-root-cert in ${ns}`,
      () =>
        (
          api.getObject('configmaps', ns, 'mesh-root-cert')?.data as
            Record<string, string> | undefined
        )?.['root-cert.pem'] === root,
    );
  }
  assert.equal(api.getObject('configmaps', 'app', 'istio-ca-root-cert'), undefined);
});

/** A token the API server stops accepting when `revoked` is set (a deleted service account). */
function revocable(api: FakeApiServer): { revoke(): void } {
  let revoked = false;
  api.setTokenReviewHandler(() =>
    revoked ? { authenticated: false, error: 'service account deleted' } : undefined,
  );
  return { revoke: () => (revoked = true) };
}

test('--token-review-cache-ttl 0: every request is reviewed, so a revoked token stops at once', async () => {
  const { api, runtime } = await start({ tokenReviewCacheTtl: '0' });
  const token = await api.issuer.issueToken({
    namespace: 'app',
    serviceAccount: 'web',
    audiences: ['istio-ca'],
  });
  const sa = revocable(api);
  api.resetRequests();
  // Sequential and concurrent requests with one token: one review each (no cache, no sharing).
  for (let i = 0; i < 3; i++) {
    await authenticateCaller(runtime.tokenAuthenticators, request(token));
  }
  await Promise.all(
    [1, 2, 3].map(() => authenticateCaller(runtime.tokenAuthenticators, request(token))),
  );
  assert.equal(api.count({ resource: 'tokenreviews', verb: 'create' }), 6);
  sa.revoke();
  await assert.rejects(authenticateCaller(runtime.tokenAuthenticators, request(token)), (e) =>
    isCastellanError(e, 'unauthenticated'),
  );
});

test('the default cache: one review per token, and a revoked token keeps working until it expires from the cache', async () => {
  const { api, runtime } = await start({});
  const token = await api.issuer.issueToken({
    namespace: 'app',
    serviceAccount: 'web',
    audiences: ['istio-ca'],
  });
  const sa = revocable(api);
  api.resetRequests();
  for (let i = 0; i < 3; i++) {
    await authenticateCaller(runtime.tokenAuthenticators, request(token));
  }
  assert.equal(api.count({ resource: 'tokenreviews', verb: 'create' }), 1);
  sa.revoke();
  // The trade-off docs/kubernetes-mode.md states: up to --token-review-cache-ttl (60 s).
  const caller = await authenticateCaller(runtime.tokenAuthenticators, request(token));
  assert.equal(caller.serviceAccount, 'web');
});

test('--jwt-offline with --token-review-cache-ttl 0: no verified-token cache either', async () => {
  const jwtOf = (authenticators: readonly Authenticator[]): JwtAuthenticator => {
    const jwt = authenticators.find((a) => a instanceof JwtAuthenticator);
    assert.ok(jwt instanceof JwtAuthenticator);
    return jwt;
  };
  const off = await start({ jwtOffline: true, tokenReviewCacheTtl: '0' });
  assert.equal(jwtOf(off.runtime.tokenAuthenticators).cacheStats(), undefined);
  const on = await start({ jwtOffline: true, tokenReviewCacheTtl: '5s' });
  assert.equal(jwtOf(on.runtime.tokenAuthenticators).cacheStats()?.size, 0);
});
