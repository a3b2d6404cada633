import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import {
  DEV_ISSUER_JWKS_FILE,
  DEV_ISSUER_KEY_FILE,
  DEV_TOKEN_ISSUER,
  DevTokenIssuer,
} from '../../src/authn/dev-token-issuer.js';
import { loadJwksFile } from '../../src/authn/jwks.js';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError } from '../../src/errors.js';
import { bearer } from './fixtures.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'castellan-dev-issuer-'));
  dirs.push(d);
  return d;
}
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const T0 = Date.UTC(2026, 0, 1);

test('creates an RSA-2048 key (0600) and its JWKS once, then reuses them', async () => {
  const dir = join(tempDir(), 'nested', 'data');
  const first = await DevTokenIssuer.open(dir);
  const keyPath = join(dir, DEV_ISSUER_KEY_FILE);
  assert.equal(statSync(keyPath).mode & 0o777, 0o600);
  const text = execFileSync('openssl', ['pkey', '-in', keyPath, '-noout', '-text'], {
    encoding: 'utf8',
  });
  assert.match(text, /Private-Key: \(2048 bit, 2 primes\)/);
  const keyBefore = readFileSync(keyPath, 'utf8');
  const jwks = JSON.parse(readFileSync(join(dir, DEV_ISSUER_JWKS_FILE), 'utf8')) as JSONWebKeySet;
  assert.equal(jwks.keys.length, 1);
  const [key] = jwks.keys;
  assert.ok(key);
  assert.equal(key.kid, first.keyId);
  assert.equal(key.d, undefined, 'the JWKS holds no private part');
  const second = await DevTokenIssuer.open(dir);
  assert.equal(second.keyId, first.keyId);
  assert.equal(readFileSync(keyPath, 'utf8'), keyBefore);
});

test('concurrent first opens agree on one key', async () => {
  const dir = tempDir();
  const issuers = await Promise.all(Array.from({ length: 8 }, () => DevTokenIssuer.open(dir)));
  assert.equal(new Set(issuers.map((i) => i.keyId)).size, 1);
});

test('a deleted JWKS is rebuilt from the key; a broken key is refused naming the file', async () => {
  const dir = tempDir();
  const { keyId } = await DevTokenIssuer.open(dir);
  rmSync(join(dir, DEV_ISSUER_JWKS_FILE));
  assert.equal((await DevTokenIssuer.open(dir)).keyId, keyId);
  writeFileSync(join(dir, DEV_ISSUER_KEY_FILE), 'garbage');
  await assert.rejects(
    DevTokenIssuer.open(dir),
    (e: unknown) => isCastellanError(e, 'malformed') && e.message.includes(DEV_ISSUER_KEY_FILE),
  );
  writeFileSync(
    join(dir, DEV_ISSUER_KEY_FILE),
    execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519']),
  );
  await assert.rejects(
    DevTokenIssuer.open(dir),
    (e: unknown) => isCastellanError(e, 'unsupported') && /RSA .* or EC P-256/.test(e.message),
  );
});

test('a data dir made before RS256 keeps its EC P-256 key and signs ES256', async () => {
  const dir = tempDir();
  writeFileSync(
    join(dir, DEV_ISSUER_KEY_FILE),
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']),
    { mode: 0o600 },
  );
  const issuer = await DevTokenIssuer.open(dir);
  assert.equal(issuer.algorithm, 'ES256');
  const token = await issuer.mintToken({ namespace: 'a', serviceAccount: 'b', ttlMs: 60_000 });
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'ES256', kid: issuer.keyId });
  const { payload } = await jwtVerify(token, await loadJwksFile(join(dir, DEV_ISSUER_JWKS_FILE)));
  assert.equal(payload.sub, 'system:serviceaccount:a:b');
});

test('minted tokens look like Kubernetes bound tokens and pass the JWT authenticator', async () => {
  const dir = tempDir();
  const clock = new ManualClock(T0);
  const issuer = await DevTokenIssuer.open(dir, { clock });
  const token = await issuer.mintToken({
    namespace: 'shop',
    serviceAccount: 'cart',
    ttlMs: 3_600_000,
    podName: 'cart-1',
  });
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'RS256', kid: issuer.keyId });
  // Verified against the JWKS file on disk, as serve will read it.
  const { payload } = await jwtVerify(token, await loadJwksFile(join(dir, DEV_ISSUER_JWKS_FILE)), {
    currentDate: new Date(T0),
  });
  assert.equal(payload.iss, DEV_TOKEN_ISSUER);
  assert.equal(payload.sub, 'system:serviceaccount:shop:cart');
  assert.deepEqual(payload.aud, ['istio-ca']);
  assert.equal(payload.iat, T0 / 1000);
  assert.equal(payload.nbf, T0 / 1000);
  assert.equal(payload.exp, T0 / 1000 + 3600);
  const k8s = payload['kubernetes.io'] as {
    namespace: string;
    serviceaccount: { name: string; uid: string };
    pod: { name: string };
  };
  assert.equal(k8s.namespace, 'shop');
  assert.equal(k8s.serviceaccount.name, 'cart');
  assert.match(
    k8s.serviceaccount.uid,
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  );
  assert.equal(k8s.pod.name, 'cart-1');

  const authn = new JwtAuthenticator({ issuer: issuer.issuer, keys: issuer.keySource(), clock });
  const caller = await authn.authenticate(bearer(token));
  assert.equal(caller?.namespace, 'shop');
  assert.equal(caller.podName, 'cart-1');
  await clock.advance(3_600_000 + 31_000);
  await assert.rejects(authn.authenticate(bearer(token)), /token expired/);

  const other = await issuer.mintToken({
    namespace: 'a',
    serviceAccount: 'b',
    ttlMs: 60_000,
    audiences: ['x', 'y'],
  });
  assert.deepEqual(
    (await jwtVerify(other, createLocalJWKSet(issuer.jwks), { currentDate: new Date(clock.now()) }))
      .payload.aud,
    ['x', 'y'],
  );
});

test('bad names, TTLs and audiences are refused', async () => {
  const issuer = await DevTokenIssuer.open(tempDir());
  const cases: [Parameters<DevTokenIssuer['mintToken']>[0], RegExp][] = [
    [{ namespace: 'Bad_NS', serviceAccount: 'a', ttlMs: 60_000 }, /invalid namespace "Bad_NS"/],
    [{ namespace: 'ns', serviceAccount: 'a:b', ttlMs: 60_000 }, /invalid service account "a:b"/],
    [{ namespace: 'ns', serviceAccount: 'a', ttlMs: 500 }, /at least 1s/],
    [{ namespace: 'ns', serviceAccount: 'a', ttlMs: 60_000, audiences: [] }, /audiences/],
  ];
  for (const [request, pattern] of cases) {
    await assert.rejects(
      issuer.mintToken(request),
      (e: unknown) => isCastellanError(e, 'invalid-argument') && pattern.test(e.message),
    );
  }
});
