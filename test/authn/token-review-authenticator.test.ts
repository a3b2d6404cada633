import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TokenReviewAuthenticator,
  type TokenReviewResult,
  type TokenReviewer,
} from '../../src/authn/token-review-authenticator.js';
import { isCastellanError } from '../../src/errors.js';
import { authRequest, bearer } from './fixtures.js';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJlLWJ5dGVz';

/** A reviewer that answers with a fixed status and records what it was asked. */
class FakeReviewer implements TokenReviewer {
  calls: { token: string; audiences: readonly string[]; clusterId: string | undefined }[] = [];
  constructor(private readonly answer: TokenReviewResult | Error) {}
  review(
    token: string,
    audiences: readonly string[],
    clusterId?: string,
  ): Promise<TokenReviewResult> {
    this.calls.push({ token, audiences, clusterId });
    return this.answer instanceof Error
      ? Promise.reject(this.answer)
      : Promise.resolve(this.answer);
  }
}

const GOOD: TokenReviewResult = {
  authenticated: true,
  user: {
    username: 'system:serviceaccount:default:sleep',
    uid: 'ff578a9e-65d3-11e8-aad2-42010a8a001d',
    groups: ['system:serviceaccounts', 'system:serviceaccounts:default', 'system:authenticated'],
    extra: {
      'authentication.kubernetes.io/pod-name': ['sleep-7d9c'],
      'authentication.kubernetes.io/pod-uid': ['b4f2d2e1-0000-4000-8000-000000000002'],
    },
  },
  audiences: ['istio-ca'],
};

async function refused(answer: TokenReviewResult | Error, pattern: RegExp): Promise<void> {
  const a = new TokenReviewAuthenticator({ reviewer: new FakeReviewer(answer) });
  await assert.rejects(a.authenticate(bearer(TOKEN)), (e: unknown) => {
    assert.ok(isCastellanError(e, 'unauthenticated'), String(e));
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes(TOKEN));
    return true;
  });
}

test('no bearer token: null, and the API server is not asked', async () => {
  const reviewer = new FakeReviewer(GOOD);
  assert.equal(await new TokenReviewAuthenticator({ reviewer }).authenticate(authRequest()), null);
  assert.equal(reviewer.calls.length, 0);
});

test('an authenticated service account review names the caller and its pod', async () => {
  const reviewer = new FakeReviewer(GOOD);
  const caller = await new TokenReviewAuthenticator({ reviewer }).authenticate(bearer(TOKEN));
  assert.deepEqual(caller, {
    authenticator: 'token-review',
    namespace: 'default',
    serviceAccount: 'sleep',
    subject: 'system:serviceaccount:default:sleep',
    podName: 'sleep-7d9c',
    podUid: 'b4f2d2e1-0000-4000-8000-000000000002',
  });
  assert.deepEqual(reviewer.calls, [
    { token: TOKEN, audiences: ['istio-ca'], clusterId: undefined },
  ]);
});

test('configured audiences and the clusterid metadata are passed to the reviewer', async () => {
  const reviewer = new FakeReviewer({ ...GOOD, audiences: ['castellan'] });
  const a = new TokenReviewAuthenticator({ reviewer, audiences: ['castellan', 'istio-ca'] });
  const request = authRequest({ authorization: [`Bearer ${TOKEN}`], clusterid: ['cluster-2'] });
  assert.ok(await a.authenticate(request));
  assert.deepEqual(reviewer.calls[0], {
    token: TOKEN,
    audiences: ['castellan', 'istio-ca'],
    clusterId: 'cluster-2',
  });
  await assert.rejects(
    a.authenticate(authRequest({ authorization: [`Bearer ${TOKEN}`], clusterid: ['a', 'b'] })),
    /2 clusterid values/,
  );
});

test('an empty audience list, or an empty audience, cannot be configured', () => {
  for (const audiences of [[], ['istio-ca', '']]) {
    assert.throws(
      () => new TokenReviewAuthenticator({ reviewer: new FakeReviewer(GOOD), audiences }),
      (e: unknown) =>
        isCastellanError(e, 'invalid-argument') && /audiences must be non-empty/.test(e.message),
    );
  }
});

test('an API server that returns no audiences (not supported) is accepted, as in Istio', async () => {
  const caller = await new TokenReviewAuthenticator({
    reviewer: new FakeReviewer({ ...GOOD, audiences: [] }),
  }).authenticate(bearer(TOKEN));
  assert.equal(caller?.serviceAccount, 'sleep');
});

test('each refusal of the status has its reason', async () => {
  await refused({ ...GOOD, authenticated: false }, /token not authenticated/);
  await refused({}, /token not authenticated/);
  await refused(
    { authenticated: false, error: '[invalid bearer token, token has been invalidated]' },
    /TokenReview error: \[invalid bearer token, token has been invalidated\]/,
  );
  await refused(
    { ...GOOD, user: { ...GOOD.user, groups: ['system:authenticated'] } },
    /not in group system:serviceaccounts/,
  );
  await refused(
    { ...GOOD, user: { ...GOOD.user, username: 'system:serviceaccount:default' } },
    /TokenReview username "system:serviceaccount:default" .*3 parts/,
  );
  await refused(
    { ...GOOD, user: { ...GOOD.user, username: 'system:serviceaccount:default:sleep:x' } },
    /5 parts/,
  );
  await refused(
    { ...GOOD, user: { ...GOOD.user, username: 'system:node:default:sleep' } },
    /not a service account/,
  );
  await refused(
    { ...GOOD, audiences: ['https://kubernetes.default.svc'] },
    /audiences \["https:\/\/kubernetes.default.svc"\] contain none of \["istio-ca"\]/,
  );
});

test('reviewer failures are unauthenticated, logged without the token', async () => {
  await refused(
    new Error('connect ECONNREFUSED 10.0.0.1:443'),
    /TokenReview failed: connect ECONNREFUSED/,
  );
  await refused(new Error(`server echoed ${TOKEN} back`), /server echoed \[token\] back/);
});

test('pod extras with several values are not trusted', async () => {
  const extra = { 'authentication.kubernetes.io/pod-name': ['a', 'b'] };
  const caller = await new TokenReviewAuthenticator({
    reviewer: new FakeReviewer({ ...GOOD, user: { ...GOOD.user, extra } }),
  }).authenticate(bearer(TOKEN));
  assert.equal(caller?.podName, undefined);
  assert.equal(caller?.podUid, undefined);
});
