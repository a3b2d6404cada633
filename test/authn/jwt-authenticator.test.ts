import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, KeyObject, sign } from 'node:crypto';
import { createLocalJWKSet, SignJWT, base64url, exportSPKI, importJWK, type JWK } from 'jose';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import type { JwksKeySource } from '../../src/authn/jwks.js';
import { TokenCache } from '../../src/authn/token-cache.js';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError } from '../../src/errors.js';
import {
  authRequest,
  bearer,
  ISSUER,
  k8sToken,
  NOW_S,
  signingKey,
  type SigningKey,
} from './fixtures.js';

let es: SigningKey;
let rs: SigningKey;
let intruder: SigningKey;
let clock: ManualClock;
let authn: JwtAuthenticator;

before(async () => {
  es = await signingKey('ES256', 'es-1');
  rs = await signingKey('RS256', 'rs-1');
  // Same kid as the trusted EC key, different key: a forgery attempt.
  intruder = await signingKey('ES256', 'es-1');
  clock = new ManualClock(NOW_S * 1000);
  authn = new JwtAuthenticator({
    issuer: ISSUER,
    keys: createLocalJWKSet({ keys: [es.publicJwk, rs.publicJwk] }),
    clock,
  });
});

async function refused(token: string, pattern: RegExp, a: JwtAuthenticator = authn): Promise<void> {
  await assert.rejects(a.authenticate(bearer(token)), (e: unknown) => {
    assert.ok(isCastellanError(e, 'unauthenticated'), String(e));
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes(token), 'the reason never quotes the token');
    return true;
  });
}

test("no bearer token: null (not this authenticator's credential)", async () => {
  assert.equal(await authn.authenticate(authRequest()), null);
});

test('an ES256 bound token names its service account and pod', async () => {
  const caller = await authn.authenticate(bearer(await k8sToken(es)));
  assert.deepEqual(caller, {
    authenticator: 'jwt',
    namespace: 'default',
    serviceAccount: 'sleep',
    subject: 'system:serviceaccount:default:sleep',
    podName: 'sleep-7d9c',
    podUid: 'b4f2d2e1-0000-4000-8000-000000000002',
  });
});

test('an RS256 token without the kubernetes.io claim authenticates without a pod', async () => {
  const token = await k8sToken(rs, {
    sub: 'system:serviceaccount:istio-system:istio-ingressgateway-service-account',
    'kubernetes.io': undefined,
  });
  const caller = await authn.authenticate(bearer(token));
  assert.equal(caller?.namespace, 'istio-system');
  assert.equal(caller.serviceAccount, 'istio-ingressgateway-service-account');
  assert.equal(caller.podName, undefined);
  assert.equal(caller.podUid, undefined);
});

test('a signature by another key is refused', async () => {
  await refused(await k8sToken(intruder), /signature does not verify/);
  // A tampered payload under a genuine signature.
  const [h, , s] = (await k8sToken(es)).split('.');
  const forged = base64url.encode(
    JSON.stringify({
      iss: ISSUER,
      sub: 'system:serviceaccount:kube-system:admin',
      aud: 'istio-ca',
      exp: NOW_S + 60,
    }),
  );
  await refused(`${h}.${forged}.${s}`, /signature does not verify/);
});

test('a kid absent from the JWKS is refused', async () => {
  const stranger = await signingKey('ES256', 'unknown-kid');
  await refused(await k8sToken(stranger), /no key in the JWKS matches/);
});

test('the issuer must match exactly', async () => {
  await refused(
    await k8sToken(es, { iss: 'https://evil.example' }),
    /issuer "https:\/\/evil.example" is not the configured issuer/,
  );
  await refused(await k8sToken(es, { iss: `${ISSUER}/` }), /is not the configured issuer/);
  await refused(await k8sToken(es, { iss: undefined }), /no "iss" claim/);
});

test('the audience must contain an accepted one', async () => {
  await refused(
    await k8sToken(es, { aud: ['https://kubernetes.default.svc'] }),
    /audience \["https:\/\/kubernetes.default.svc"\] contains none of the accepted audiences \["istio-ca"\]/,
  );
  await refused(await k8sToken(es, { aud: undefined }), /no "aud" claim/);
  const several = await k8sToken(es, { aud: ['https://kubernetes.default.svc', 'istio-ca'] });
  assert.equal((await authn.authenticate(bearer(several)))?.serviceAccount, 'sleep');
  const custom = new JwtAuthenticator({
    issuer: ISSUER,
    keys: createLocalJWKSet({ keys: [es.publicJwk] }),
    audiences: ['castellan', 'other'],
    clock,
  });
  assert.equal(
    (await custom.authenticate(bearer(await k8sToken(es, { aud: 'other' }))))?.namespace,
    'default',
  );
  await refused(
    await k8sToken(es),
    /contains none of the accepted audiences \["castellan","other"\]/,
    custom,
  );
});

test('exp is enforced with the clock skew, on the injected clock', async () => {
  await refused(
    await k8sToken(es, { exp: NOW_S - 31 }),
    /token expired at 2025-12-31T23:59:29.000Z \(now 2026-01-01T00:00:00.000Z, skew 30s\)/,
  );
  // Within the 30 s skew: still accepted.
  assert.ok(await authn.authenticate(bearer(await k8sToken(es, { exp: NOW_S - 29 }))));
  // The same token, once the clock moves on, is refused: no wall clock involved.
  const token = await k8sToken(es, { exp: NOW_S + 600 });
  const later = new ManualClock((NOW_S + 631) * 1000);
  const a = new JwtAuthenticator({
    issuer: ISSUER,
    keys: createLocalJWKSet({ keys: [es.publicJwk] }),
    clock: later,
  });
  await refused(token, /token expired/, a);
  later.set((NOW_S + 600) * 1000);
  assert.ok(await a.authenticate(bearer(token)));
  await refused(await k8sToken(es, { exp: undefined }), /no "exp" claim/);
});

test('nbf in the future beyond the skew is refused; within it accepted', async () => {
  await refused(
    await k8sToken(es, { nbf: NOW_S + 31 }),
    /token not valid before 2026-01-01T00:00:31.000Z/,
  );
  assert.ok(await authn.authenticate(bearer(await k8sToken(es, { nbf: NOW_S + 29 }))));
  const strict = new JwtAuthenticator({
    issuer: ISSUER,
    keys: createLocalJWKSet({ keys: [es.publicJwk] }),
    clock,
    clockSkewMs: 0,
  });
  await refused(await k8sToken(es, { nbf: NOW_S + 1 }), /not valid before/, strict);
});

test('alg none is refused', async () => {
  const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  const payload = base64url.encode(
    JSON.stringify({
      iss: ISSUER,
      sub: 'system:serviceaccount:default:sleep',
      aud: 'istio-ca',
      exp: NOW_S + 60,
    }),
  );
  await refused(`${header}.${payload}.`, /algorithm not allowed|malformed|refused/);
});

test('HS256 with the public key as the HMAC secret is refused', async () => {
  const rsaPublic = await importJWK(rs.publicJwk, 'RS256', { extractable: true });
  const pem = await exportSPKI(rsaPublic as Parameters<typeof exportSPKI>[0]);
  for (const secret of [
    new TextEncoder().encode(pem),
    new TextEncoder().encode(JSON.stringify(rs.publicJwk)),
  ]) {
    const token = await new SignJWT({
      iss: ISSUER,
      sub: 'system:serviceaccount:default:sleep',
      aud: 'istio-ca',
      exp: NOW_S + 60,
    })
      .setProtectedHeader({ alg: 'HS256', kid: rs.kid })
      .sign(secret);
    await refused(token, /algorithm not allowed/);
  }
});

test('symmetric algorithms cannot even be configured', () => {
  assert.throws(
    () =>
      new JwtAuthenticator({
        issuer: ISSUER,
        keys: createLocalJWKSet({ keys: [es.publicJwk] }),
        algorithms: ['ES256', 'HS256'],
      }),
    (e: unknown) => isCastellanError(e, 'invalid-argument') && /refused: HS256/.test(e.message),
  );
  assert.throws(
    () => new JwtAuthenticator({ issuer: '', keys: createLocalJWKSet({ keys: [es.publicJwk] }) }),
    (e: unknown) => isCastellanError(e, 'invalid-argument'),
  );
});

test('an empty audience list, or an empty audience, cannot be configured', () => {
  for (const audiences of [[], ['istio-ca', '']]) {
    assert.throws(
      () =>
        new JwtAuthenticator({
          issuer: ISSUER,
          keys: createLocalJWKSet({ keys: [es.publicJwk] }),
          audiences,
        }),
      (e: unknown) =>
        isCastellanError(e, 'invalid-argument') && /audiences must be non-empty/.test(e.message),
    );
  }
});

test('sub must be system:serviceaccount:<ns>:<sa>, exactly four valid parts', async () => {
  await refused(
    await k8sToken(es, { sub: 'system:serviceaccount:default' }),
    /sub "system:serviceaccount:default" is not system:serviceaccount:<namespace>:<name> \(3 parts, 4 expected\)/,
  );
  await refused(
    await k8sToken(es, { sub: 'system:serviceaccount:default:sleep:extra' }),
    /\(5 parts, 4 expected\)/,
  );
  await refused(
    await k8sToken(es, { sub: 'system:node:default:sleep' }),
    /is not a service account/,
  );
  await refused(await k8sToken(es, { sub: 'alice@example.com' }), /1 parts, 4 expected/);
  await refused(
    await k8sToken(es, { sub: 'system:serviceaccount:Default:sleep', 'kubernetes.io': undefined }),
    /invalid namespace "Default"/,
  );
  await refused(
    await k8sToken(es, { sub: 'system:serviceaccount:default:sl/eep', 'kubernetes.io': undefined }),
    /invalid service account "sl\/eep"/,
  );
  await refused(await k8sToken(es, { sub: undefined }), /no "sub" claim/);
});

test('a kubernetes.io claim that disagrees with sub is refused', async () => {
  await refused(
    await k8sToken(es, { 'kubernetes.io': { namespace: 'kube-system' } }),
    /namespace "kube-system" disagrees with sub namespace "default"/,
  );
  await refused(
    await k8sToken(es, {
      'kubernetes.io': { namespace: 'default', serviceaccount: { name: 'admin' } },
    }),
    /serviceaccount.name "admin" disagrees/,
  );
  await refused(await k8sToken(es, { 'kubernetes.io': 'pod' }), /not an object/);
});

test('garbage instead of a JWT is refused as malformed', async () => {
  await refused('not-a-jwt-at-all', /malformed token/);
  await refused('aaaa.bbbb.cccc', /malformed token/);
});

test('several JWKS keys match a token without kid: the one that verifies it wins', async () => {
  const a = await signingKey('RS256', 'a');
  const b = await signingKey('RS256', 'b');
  const other = await signingKey('RS256', 'c');
  const withoutKid = (k: SigningKey): Record<string, unknown> => ({
    ...k.publicJwk,
    kid: undefined,
  });
  const both = new JwtAuthenticator({
    issuer: ISSUER,
    keys: createLocalJWKSet({
      keys: [withoutKid(a), withoutKid(b)].map((k) => JSON.parse(JSON.stringify(k)) as JWK),
    }),
    clock,
  });
  // A header without kid: both keys are candidates.
  const tokenBy = (k: SigningKey): Promise<string> => k8sToken(k, {}, { kid: undefined });
  assert.equal((await both.authenticate(bearer(await tokenBy(b))))?.serviceAccount, 'sleep');
  assert.equal((await both.authenticate(bearer(await tokenBy(a))))?.serviceAccount, 'sleep');
  await refused(
    await tokenBy(other),
    /several JWKS keys match the token and none verifies it/,
    both,
  );
});

test('claims of the wrong type and unknown critical headers are refused', async () => {
  await refused(
    await k8sToken(es, { iat: 'yesterday' as unknown as number }),
    /claim "iat" is invalid/,
  );
  await refused(
    await k8sToken(es, { exp: String(NOW_S + 60) as unknown as number }),
    /claim "exp" is invalid/,
  );
  await refused(
    await k8sToken(es, { nbf: [NOW_S] as unknown as number }),
    /claim "nbf" is invalid/,
  );
  await refused(await k8sToken(es, { iss: 42 as unknown as string }), /"iss"|issuer/);
  // jose will not sign an unknown critical header, so this one is signed by hand.
  const header = base64url.encode(
    JSON.stringify({ alg: 'ES256', kid: es.kid, crit: ['x-unknown'], 'x-unknown': true }),
  );
  const body = (await k8sToken(es)).split('.')[1]!;
  const signature = sign('sha256', Buffer.from(`${header}.${body}`), {
    key: KeyObject.from(es.privateKey),
    dsaEncoding: 'ieee-p1363',
  });
  await refused(
    `${header}.${body}.${base64url.encode(signature)}`,
    /unsupported token|malformed token|refused/,
  );
});

describe('verified tokens are remembered (TokenCache): one token, many calls, one verification', () => {
  /** Counts key lookups: one per verification (cache hits never reach the keys). */
  function counted(): { keys: JwksKeySource; lookups: () => number } {
    const inner = createLocalJWKSet({ keys: [es.publicJwk, rs.publicJwk] });
    let n = 0;
    const keys: JwksKeySource = (header, token) => {
      n++;
      return inner(header, token);
    };
    return { keys, lookups: () => n };
  }

  test("ztunnel's burst: 200 calls with one token, sequential or concurrent, verify it once", async () => {
    const { keys, lookups } = counted();
    const a = new JwtAuthenticator({ issuer: ISSUER, keys, clock: new ManualClock(NOW_S * 1000) });
    const token = await k8sToken(rs);
    const first = await a.authenticate(bearer(token));
    for (let i = 0; i < 199; i++) assert.deepEqual(await a.authenticate(bearer(token)), first);
    assert.equal(lookups(), 1);
    assert.deepEqual(a.cacheStats(), { hits: 199, misses: 1, shared: 0, size: 1 });

    const other = await k8sToken(rs, {
      sub: 'system:serviceaccount:istio-system:ztunnel',
      'kubernetes.io': undefined,
    });
    const callers = await Promise.all(
      Array.from({ length: 200 }, () => a.authenticate(bearer(other))),
    );
    assert.equal(lookups(), 2, 'concurrent calls join the one verification in flight');
    assert.ok(callers.every((c) => c?.serviceAccount === 'ztunnel'));
    assert.deepEqual(a.cacheStats(), { hits: 199, misses: 2, shared: 199, size: 2 });
  });

  test("an entry never outlives the token's exp, nor 60 s; refusals are not remembered", async () => {
    const { keys, lookups } = counted();
    const clock = new ManualClock(NOW_S * 1000);
    const a = new JwtAuthenticator({ issuer: ISSUER, keys, clock });
    const soon = await k8sToken(rs, { exp: NOW_S + 10 });
    await a.authenticate(bearer(soon));
    await clock.advance(9_999);
    await a.authenticate(bearer(soon));
    assert.equal(lookups(), 1);
    await clock.advance(1);
    // At exp, verified again (accepted within the 30 s skew, and then not kept).
    await a.authenticate(bearer(soon));
    await a.authenticate(bearer(soon));
    assert.equal(lookups(), 3);

    const later = await k8sToken(rs, { exp: NOW_S + 3600 });
    await a.authenticate(bearer(later));
    await clock.advance(59_999);
    await a.authenticate(bearer(later));
    assert.equal(lookups(), 4);
    await clock.advance(1);
    await a.authenticate(bearer(later));
    assert.equal(lookups(), 5, 'verified again after the maximum age');

    const forged = await k8sToken(intruder);
    await refused(forged, /signature/, a);
    await refused(forged, /signature/, a);
    assert.equal(lookups(), 7);
  });

  test('the key is the SHA-256 of the token; with cache: false every call verifies', async () => {
    const token = await k8sToken(es);
    assert.equal(
      Buffer.from(TokenCache.key(token), 'binary').toString('hex'),
      createHash('sha256').update(token).digest('hex'),
    );
    const { keys, lookups } = counted();
    const a = new JwtAuthenticator({ issuer: ISSUER, keys, clock, cache: false });
    await a.authenticate(bearer(token));
    await a.authenticate(bearer(token));
    assert.equal(lookups(), 2);
    assert.equal(a.cacheStats(), undefined);
  });
});
