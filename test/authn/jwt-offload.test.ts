// The token check on the crypto thread (JwtAuthenticator.offloadTo a real CsrCheckPool) against
// the same authenticator checking inline: one row per branch of the checks (signature, kid,
// issuer, audience, times on the injected clock, algorithms, sub, the kubernetes.io claim,
// malformed tokens, several candidate keys, claim types, critical headers), each ending in the
// same Caller or the same error, kind and message. The thread must actually be used, and a
// thread that cannot take a check (none up, or it died holding it) never changes an outcome.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyObject, sign } from 'node:crypto';
import { createLocalJWKSet, SignJWT, base64url, type JWK } from 'jose';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import type { JwtOffload } from '../../src/authn/fast-jwt-check.js';
import { CsrCheckPool } from '../../src/server/csr-check-threads.js';
import { isCastellanError } from '../../src/errors.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { bearer, ISSUER, k8sToken, NOW_S, signingKey, type SigningKey } from './fixtures.js';

let pool: CsrCheckPool;
after(() => pool.close());

let es: SigningKey;
let rs: SigningKey;
const rows: [string, string][] = [];
let keys: JWK[];

before(async () => {
  pool = new CsrCheckPool(1, { clock: new ManualClock() });
  es = await signingKey('ES256', 'es-1');
  rs = await signingKey('RS256', 'rs-1');
  const intruder = await signingKey('ES256', 'es-1');
  const a = await signingKey('RS256', 'a');
  const b = await signingKey('RS256', 'b');
  const noKid = (k: SigningKey): JWK =>
    JSON.parse(JSON.stringify({ ...k.publicJwk, kid: undefined })) as JWK;
  keys = [es.publicJwk, rs.publicJwk, noKid(a), noKid(b)];
  const claims = {
    iss: ISSUER,
    sub: 'system:serviceaccount:default:sleep',
    aud: 'istio-ca',
    exp: NOW_S + 60,
  };
  const [h, , s] = (await k8sToken(es)).split('.');
  const critHeader = base64url.encode(
    JSON.stringify({ alg: 'ES256', kid: es.kid, crit: ['x-unknown'], 'x-unknown': true }),
  );
  const body = (await k8sToken(es)).split('.')[1]!;
  const critSignature = sign('sha256', Buffer.from(`${critHeader}.${body}`), {
    key: KeyObject.from(es.privateKey),
    dsaEncoding: 'ieee-p1363',
  });
  const add = async (name: string, token: string | Promise<string>): Promise<void> => {
    rows.push([name, await token]);
  };
  await add('ES256 bound token', k8sToken(es));
  await add('RS256 token without kubernetes.io', k8sToken(rs, { 'kubernetes.io': undefined }));
  await add('another key, same kid', k8sToken(intruder));
  await add('tampered payload', `${h}.${base64url.encode(JSON.stringify(claims))}.${s}`);
  await add('unknown kid', k8sToken(await signingKey('ES256', 'unknown'), {}));
  await add('wrong issuer', k8sToken(es, { iss: 'https://evil.example' }));
  await add('no issuer', k8sToken(es, { iss: undefined }));
  await add('issuer of the wrong type', k8sToken(es, { iss: 42 as unknown as string }));
  await add('wrong audience', k8sToken(es, { aud: ['https://kubernetes.default.svc'] }));
  await add('no audience', k8sToken(es, { aud: undefined }));
  await add('expired beyond the skew', k8sToken(es, { exp: NOW_S - 31 }));
  await add('expired within the skew', k8sToken(es, { exp: NOW_S - 29 }));
  await add('no exp', k8sToken(es, { exp: undefined }));
  await add('exp a string', k8sToken(es, { exp: String(NOW_S) as unknown as number }));
  await add('nbf in the future', k8sToken(es, { nbf: NOW_S + 31 }));
  await add('iat not a number', k8sToken(es, { iat: 'x' as unknown as number }));
  await add(
    'alg none',
    `${base64url.encode(JSON.stringify({ alg: 'none' }))}.${base64url.encode(JSON.stringify(claims))}.`,
  );
  await add(
    'HS256',
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: rs.kid })
      .sign(new TextEncoder().encode('secret')),
  );
  await add('sub not a service account', k8sToken(es, { sub: 'system:node:default:sleep' }));
  await add('no sub', k8sToken(es, { sub: undefined }));
  await add('kubernetes.io disagrees', k8sToken(es, { 'kubernetes.io': { namespace: 'x' } }));
  await add('garbage', 'not-a-jwt-at-all');
  await add('three garbage parts', 'aaaa.bbbb.cccc');
  await add('no kid, first of two keys', k8sToken(a, {}, { kid: undefined }));
  await add('no kid, second of two keys', k8sToken(b, {}, { kid: undefined }));
  await add(
    'no kid, neither key',
    k8sToken(await signingKey('RS256', 'c'), {}, { kid: undefined }),
  );
  await add('unknown critical header', `${critHeader}.${body}.${base64url.encode(critSignature)}`);
  await waitFor('a ready thread', () => pool.readyThreads === 1, 20_000);
});

function authenticator(offload?: JwtOffload): JwtAuthenticator {
  const a = new JwtAuthenticator({
    issuer: ISSUER,
    keys: createLocalJWKSet({ keys }),
    clock: new ManualClock(NOW_S * 1000),
    cache: false,
  });
  if (offload) a.offloadTo(offload);
  return a;
}

async function outcome(a: JwtAuthenticator, token: string): Promise<unknown> {
  try {
    return { caller: await a.authenticate(bearer(token)) };
  } catch (e) {
    return isCastellanError(e) ? { kind: e.kind, message: e.message } : { notOurs: String(e) };
  }
}

test('every row: the same caller or the same refusal, checked on the thread', async () => {
  let sent = 0;
  const counting: JwtOffload = {
    verifyJwt: (check) => {
      const answer = pool.verifyJwt(check);
      if (answer) sent++;
      return answer;
    },
  };
  const inline = authenticator();
  const threaded = authenticator(counting);
  let accepted = 0;
  for (const [name, token] of rows) {
    const want = await outcome(inline, token);
    assert.deepEqual(await outcome(threaded, token), want, name);
    if ('caller' in (want as object)) accepted++;
  }
  assert.equal(accepted, 5, 'the rows that must pass do');
  // Every token whose algorithm is allowed and whose key was found went to the thread.
  assert.ok(sent >= 20, `only ${sent} checks reached the thread`);
});

test('an offload that cannot take the check, or loses it, leaves every outcome as inline', async () => {
  const inline = authenticator();
  const none = authenticator({ verifyJwt: () => undefined });
  const lost = authenticator({ verifyJwt: () => Promise.reject(new Error('thread stopped')) });
  for (const [name, token] of rows) {
    const want = await outcome(inline, token);
    assert.deepEqual(await outcome(none, token), want, `${name} (no thread)`);
    assert.deepEqual(await outcome(lost, token), want, `${name} (thread died)`);
  }
});

test('a thread that dies holding a check: the check is made inline', async () => {
  const workerUrl = new URL('../server/support/exiting-csr-worker.js', import.meta.url);
  const dying = new CsrCheckPool(1, { clock: new ManualClock(), workerUrl });
  try {
    await waitFor('a ready thread', () => dying.readyThreads === 1, 20_000);
    const token = await k8sToken(es);
    // The test thread refuses every token as a bad signature: proof the check went there.
    const viaThread = authenticator(dying);
    assert.match(
      ((await outcome(viaThread, token)) as { message: string }).message,
      /signature does not verify/,
    );
    // Now it exits while holding the check: the token is verified inline and accepted.
    const exiting: JwtOffload = {
      verifyJwt: (check) => dying.verifyJwt({ ...check, token: 'exit' }),
    };
    assert.deepEqual(
      await outcome(authenticator(exiting), token),
      await outcome(authenticator(), token),
    );
  } finally {
    await dying.close();
  }
});
