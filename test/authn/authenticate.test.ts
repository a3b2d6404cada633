import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLocalJWKSet } from 'jose';
import { authenticateCaller } from '../../src/authn/authenticate.js';
import type { Authenticator, Caller } from '../../src/authn/authenticator.js';
import { ClientCertAuthenticator } from '../../src/authn/client-cert-authenticator.js';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import {
  TokenReviewAuthenticator,
  type TokenReviewResult,
} from '../../src/authn/token-review-authenticator.js';
import { ManualClock } from '../support/manual-clock.js';
import { type CastellanError, isCastellanError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import {
  authRequest,
  bearer,
  ISSUER,
  k8sToken,
  NOW_S,
  sampleCertDers,
  signingKey,
  type SigningKey,
} from './fixtures.js';

const clock = new ManualClock(NOW_S * 1000);
let key: SigningKey;
let reviews: TokenReviewResult | Error;
let chain: Authenticator[];
let logLines: string[];

before(async () => {
  key = await signingKey('ES256', 'k1');
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const logger = createLogger({ level: 'trace', destination: sink });
  chain = [
    new ClientCertAuthenticator({
      trustDomain: 'trust-domain-foo',
      roots: () => sampleCertDers('root-cert.pem'),
      clock,
    }),
    new JwtAuthenticator({
      issuer: ISSUER,
      keys: createLocalJWKSet({ keys: [key.publicJwk] }),
      clock,
      logger,
    }),
    new TokenReviewAuthenticator({
      reviewer: {
        review: () =>
          reviews instanceof Error ? Promise.reject(reviews) : Promise.resolve(reviews),
      },
      logger,
    }),
  ];
});

async function unauthenticated(
  request: Parameters<typeof authenticateCaller>[1],
): Promise<CastellanError> {
  try {
    await authenticateCaller(chain, request);
  } catch (e) {
    assert.ok(isCastellanError(e, 'unauthenticated'), String(e));
    return e;
  }
  assert.fail('expected a refusal');
}

test('the first authenticator that succeeds wins, in order', async () => {
  const token = await k8sToken(key);
  reviews = {
    authenticated: true,
    user: { username: 'system:serviceaccount:other:other', groups: ['system:serviceaccounts'] },
  };
  // Certificate and token: the certificate (first) names the caller.
  const both = authRequest(
    { authorization: [`Bearer ${token}`] },
    sampleCertDers('workload-foo-cert.pem'),
  );
  assert.equal((await authenticateCaller(chain, both)).authenticator, 'client-certificate');
  // Token only: the JWT authenticator, before TokenReview.
  assert.equal((await authenticateCaller(chain, bearer(token))).authenticator, 'jwt');
  // A token of another issuer fails offline and still passes TokenReview.
  const foreign = await k8sToken(await signingKey('RS256', 'k8s'), {
    iss: 'https://container.googleapis.com/x',
  });
  const caller: Caller = await authenticateCaller(chain, bearer(foreign));
  assert.equal(caller.authenticator, 'token-review');
  assert.equal(caller.namespace, 'other');
});

test('when none succeeds, every reason is joined in order', async () => {
  reviews = { authenticated: false, error: 'token has expired' };
  const token = await k8sToken(key, { exp: NOW_S - 3600 });
  const e = await unauthenticated(bearer(token));
  assert.match(
    e.message,
    /^client-certificate: no peer certificate; jwt: token expired at .*; token-review: TokenReview error: token has expired$/,
  );
  const none = await unauthenticated(authRequest());
  assert.equal(
    none.message,
    'client-certificate: no peer certificate; jwt: no bearer token; token-review: no bearer token',
  );
  const empty = await authenticateCaller([], authRequest()).catch((x: unknown) => x);
  assert.ok(isCastellanError(empty, 'unauthenticated'));
  assert.equal(empty.message, 'no authenticator configured');
});

test('an authenticator that throws something unexpected is a reason, not a crash', async () => {
  const broken: Authenticator = {
    name: 'jwt',
    authenticate: () => Promise.reject(new TypeError('cannot read x of undefined')),
  };
  const e = await authenticateCaller([broken], authRequest()).catch((x: unknown) => x);
  assert.ok(isCastellanError(e, 'unauthenticated'));
  assert.equal(e.message, 'jwt: internal error: cannot read x of undefined');
});

test('no error message and no log line contains the token, whatever the failure', async () => {
  logLines.length = 0;
  const tokens = [
    await k8sToken(key, { exp: NOW_S - 3600 }),
    await k8sToken(key, { iss: 'https://evil.example' }),
    await k8sToken(key, { sub: 'system:serviceaccount:x' }),
    await k8sToken(await signingKey('ES256', 'k1')),
    await k8sToken(key),
  ];
  const answers: (TokenReviewResult | Error)[] = [
    new Error('upstream said: bad token'),
    { authenticated: false, error: 'invalid bearer token' },
    {
      authenticated: true,
      user: { username: 'system:serviceaccount:a', groups: ['system:serviceaccounts'] },
    },
  ];
  let checked = 0;
  for (const token of tokens) {
    for (const answer of [...answers, new Error(`echo ${token}`)]) {
      reviews = answer;
      const outcome = await authenticateCaller(chain, bearer(token)).catch((x: unknown) => x);
      const seen = JSON.stringify(outcome, Object.getOwnPropertyNames(outcome)) + String(outcome);
      assert.ok(!seen.includes(token), `the outcome leaks the token: ${seen}`);
      for (const part of token.split('.')) assert.ok(!seen.includes(part) || part.length < 20);
      checked++;
    }
  }
  assert.equal(checked, 20);
  assert.ok(logLines.length >= 10, `the refusals were logged (${logLines.length} lines)`);
  const all = logLines.join('');
  assert.match(all, /TokenReview failed/);
  assert.match(all, /JWT refused/);
  for (const token of tokens) {
    assert.ok(!all.includes(token), 'no log line contains the token');
    assert.ok(!all.includes(token.split('.')[2]!), 'nor its signature');
  }
});
