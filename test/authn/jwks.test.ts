import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadJwksFile, remoteJwks } from '../../src/authn/jwks.js';
import { JwtAuthenticator } from '../../src/authn/jwt-authenticator.js';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError } from '../../src/errors.js';
import { opensslSelfSigned } from '../support/openssl-certs.js';
import { bearer, ISSUER, k8sToken, NOW_S, signingKey, type SigningKey } from './fixtures.js';

let dir: string;
let server: Server;
let url: URL;
let caPem: string;
let served: SigningKey[];
let requests: { authorization: string | undefined }[];
const clock = new ManualClock(NOW_S * 1000);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'castellan-jwks-'));
  // A TLS server for 127.0.0.1 with a self-signed certificate: the "private API server CA".
  opensslSelfSigned(dir, 'tls', {
    subject: '/CN=127.0.0.1',
    days: 2,
    extensions: ['subjectAltName=IP:127.0.0.1'],
  });
  caPem = readFileSync(join(dir, 'tls.pem'), 'utf8');
  served = [await signingKey('ES256', 'k1')];
  requests = [];
  server = createServer({ key: readFileSync(join(dir, 'tls.key')), cert: caPem }, (req, res) => {
    requests.push({ authorization: req.headers.authorization });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: served.map((k) => k.publicJwk) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}/openid/v1/jwks`);
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

test('a JWKS file is loaded; bad files are refused naming the file', async () => {
  const key = await signingKey('RS256', 'file-key');
  const good = join(dir, 'jwks.json');
  writeFileSync(good, JSON.stringify({ keys: [key.publicJwk] }));
  const authn = new JwtAuthenticator({ issuer: ISSUER, keys: await loadJwksFile(good), clock });
  assert.equal((await authn.authenticate(bearer(await k8sToken(key))))?.serviceAccount, 'sleep');

  const cases: [string, string, string, RegExp][] = [
    ['missing.json', '', 'invalid-argument', /cannot read the JWKS file/],
    ['text.json', 'not json', 'malformed', /not JSON/],
    ['nokeys.json', '{"keys": []}', 'malformed', /holds no keys/],
    ['array.json', '[]', 'malformed', /expected an object with a "keys" array/],
    [
      'oct.json',
      '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}',
      'unsupported',
      /keys\[0\]: kty "oct" is not an asymmetric key type/,
    ],
    [
      'private.json',
      JSON.stringify({ keys: [{ ...key.publicJwk, d: 'AAAA' }] }),
      'malformed',
      /keys\[0\] holds a private key/,
    ],
  ];
  for (const [name, content, kind, pattern] of cases) {
    const path = join(dir, name);
    if (content) writeFileSync(path, content);
    await assert.rejects(loadJwksFile(path), (e: unknown) => {
      assert.ok(isCastellanError(e) && e.kind === kind, `${name}: ${String(e)}`);
      assert.match(e.message, pattern);
      assert.ok(e.message.startsWith(path), `${name}: the message names the file`);
      return true;
    });
  }
});

test('a remote JWKS over TLS with a private CA is fetched once, cached, and refetched for a new kid', async () => {
  requests.length = 0;
  const keys = remoteJwks(url, {
    ca: caPem,
    headers: { authorization: 'Bearer reviewer' },
    cooldownMs: 0,
  });
  const authn = new JwtAuthenticator({ issuer: ISSUER, keys, clock });
  for (let i = 0; i < 3; i++)
    assert.ok(await authn.authenticate(bearer(await k8sToken(served[0]!))));
  assert.equal(requests.length, 1, 'cached after the first fetch');
  assert.equal(requests[0]!.authorization, 'Bearer reviewer');
  // Rotation: the issuer adds a key; a token signed with it triggers one refetch.
  const rotated = await signingKey('RS256', 'k2');
  served = [...served, rotated];
  assert.ok(await authn.authenticate(bearer(await k8sToken(rotated))));
  assert.equal(requests.length, 2);
});

test('a remote JWKS whose TLS certificate is not trusted fails verification, unauthenticated', async () => {
  const authn = new JwtAuthenticator({ issuer: ISSUER, keys: remoteJwks(url), clock });
  await assert.rejects(authn.authenticate(bearer(await k8sToken(served[0]!))), (e: unknown) => {
    assert.ok(isCastellanError(e, 'unauthenticated'));
    assert.match(e.message, /cannot verify the token: .*(self.signed|certificate)/i);
    return true;
  });
  assert.throws(() => remoteJwks(new URL('file:///etc/passwd')), /is not http\(s\)/);
});
