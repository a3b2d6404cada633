import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  extractBearerToken,
  MAX_BEARER_TOKEN_BYTES,
  withoutToken,
} from '../../src/authn/bearer.js';
import { isCastellanError } from '../../src/errors.js';
import { authRequest } from './fixtures.js';

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

function refusal(headers: string[], pattern: RegExp): void {
  assert.throws(
    () => extractBearerToken(authRequest({ authorization: headers })),
    (e: unknown) => {
      assert.ok(isCastellanError(e, 'unauthenticated'), String(e));
      assert.match(e.message, pattern);
      assert.ok(!e.message.includes(TOKEN), 'the message does not quote the token');
      return true;
    },
  );
}

test('no authorization header: null, so the next authenticator is tried', () => {
  assert.equal(extractBearerToken(authRequest()), null);
  assert.equal(extractBearerToken(authRequest({ authorization: [] })), null);
});

test('the Bearer scheme is case-insensitive and surrounding blanks are ignored', () => {
  for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
    assert.equal(extractBearerToken(authRequest({ authorization: [`${scheme} ${TOKEN}`] })), TOKEN);
  }
  assert.equal(
    extractBearerToken(authRequest({ authorization: [`  Bearer   ${TOKEN}  `] })),
    TOKEN,
  );
});

test('malformed headers are refused with a precise reason', () => {
  refusal([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`], /2 authorization headers/);
  refusal([`Basic ${TOKEN}`], /not of the Bearer scheme/);
  refusal([TOKEN], /not of the Bearer scheme/);
  refusal(['Bearer'], /no token/);
  refusal([`Bearer ${TOKEN} ${TOKEN}`], /more than one token/);
  refusal([`Bearer ${TOKEN}"x`], /characters outside RFC 6750/);
});

test('a token over the size limit is refused before anything else', () => {
  const big = 'a'.repeat(MAX_BEARER_TOKEN_BYTES + 1);
  refusal([`Bearer ${big}`], new RegExp(`larger than ${MAX_BEARER_TOKEN_BYTES} bytes`));
  const justFits = 'a'.repeat(MAX_BEARER_TOKEN_BYTES);
  assert.equal(
    extractBearerToken(authRequest({ authorization: [`Bearer ${justFits}`] })),
    justFits,
  );
});

test('withoutToken removes every occurrence of the token from a message', () => {
  assert.equal(withoutToken(`bad ${TOKEN} and ${TOKEN}.`, TOKEN), 'bad [token] and [token].');
  assert.equal(withoutToken('nothing here', TOKEN), 'nothing here');
});
