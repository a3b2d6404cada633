// The PKCS#11 signer against SoftHSM2, a real PKCS#11 module loaded in this process: keys made
// inside a token, leaves issued through both issuance paths and checked with openssl, the
// probe that refuses a key of another certificate, a wrong PIN, and the token taken away and
// returned while signing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { X509Certificate } from '@peculiar/x509';
import { buildSignerBundle, certificatePem } from '../../../src/ca/build-key-cert-bundle.js';
import { generatePkcs11Key } from '../../../src/ca/signers/pkcs11-keygen.js';
import { openPkcs11Signer, type Pkcs11Signer } from '../../../src/ca/signers/pkcs11-signer.js';
import { isCastellanError } from '../../../src/errors.js';
import { createCrl } from '../../../src/pki/crl.js';
import { createFastLeafSigner } from '../../../src/pki/fast/fast-leaf-signer.js';
import { issueCertificate } from '../../../src/pki/issue.js';
import type { CaKeyType } from '../../../src/pki/key-type.js';
import { spkiOf } from '../../../src/pki/keys.js';
import { toPem } from '../../../src/pki/pem.js';
import { caSignatureAlgorithm } from '../../../src/pki/profiles.js';
import { createReferenceLeafSigner } from '../../../src/pki/reference-leaf-signer.js';
import { randomSerial } from '../../../src/pki/serial.js';
import { ManualClock } from '../../support/manual-clock.js';
import { makeRoot, type TestCa } from '../../support/ca-hierarchy.js';
import { opensslVerify } from '../../support/openssl.js';
import {
  makeSoftHsm,
  privateKeyAccess,
  privateKeyObjects,
  USER_PIN,
  type SoftHsm,
} from '../../support/softhsm.js';

const TOKEN = 'castellan-ca';
const HOUR = 3_600_000;
let hsm: SoftHsm;
let root: TestCa;
const clock = new ManualClock(Date.now());
const open: Pkcs11Signer[] = [];

async function signer(uri: string, retryAfterMs?: number): Promise<Pkcs11Signer> {
  const s = await openPkcs11Signer({ uri, env: hsm.env, clock, retryAfterMs });
  open.push(s);
  return s;
}

/** An intermediate CA certificate under `root` for a public key (SPKI DER). */
async function intermediateFor(spki: Uint8Array, cn: string): Promise<X509Certificate> {
  return issueCertificate({
    profile: { kind: 'intermediate', subject: [['CN', cn]] },
    publicKey: spki,
    issuer: { cert: root.cert, key: root.key },
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 100 * HOUR),
  });
}

async function rejectsWith(p: Promise<unknown>, kind: string, pattern: RegExp): Promise<Error> {
  const e = await p.then(
    () => assert.fail(`expected ${kind}`),
    (err: unknown) => err as Error,
  );
  assert.ok(isCastellanError(e, kind as never), `${kind} expected, got ${String(e)}`);
  assert.match(e.message, pattern);
  return e;
}

const spkis = new Map<string, Uint8Array>();

before(async () => {
  hsm = makeSoftHsm({ thisProcess: true });
  hsm.addToken(TOKEN);
  // Its own token: login is per token and process, and the main one is logged in.
  hsm.addToken('pin-test');
  await generatePkcs11Key({ uri: hsm.uri('pin-test', 'k'), keyType: 'ec-p256', env: hsm.env });
  root = await makeRoot('HSM Test Root');
  for (const [object, keyType] of [
    ['p256', 'ec-p256'],
    ['p384', 'ec-p384'],
    ['rsa2048', 'rsa-2048'],
    ['other-p256', 'ec-p256'],
  ] as const) {
    spkis.set(
      object,
      await generatePkcs11Key({ uri: hsm.uri(TOKEN, object), keyType, env: hsm.env }),
    );
  }
});
after(async () => {
  for (const s of open) await s.close();
  hsm.remove();
});

describe('keys made inside the token', () => {
  test('are sensitive, never extractable and only sign, as pkcs11-tool reads them', async () => {
    const objects = privateKeyObjects(hsm, TOKEN);
    assert.deepEqual([...objects.keys()].sort(), ['other-p256', 'p256', 'p384', 'rsa2048']);
    for (const [label, { access: line, usage }] of objects) {
      assert.equal(usage, 'sign', label);
      const flags = line.split(',').map((f) => f.trim());
      assert.ok(flags.includes('sensitive'), `${label}: ${line}`);
      assert.ok(flags.includes('never extractable'), `${label}: ${line}`);
      assert.ok(!flags.includes('extractable'), `${label}: ${line}`);
    }
    const s = await signer(hsm.uri(TOKEN, 'rsa2048'));
    const a = await s.keyAttributes();
    assert.deepEqual(
      { label: a.label, sensitive: a.sensitive, extractable: a.extractable },
      { label: 'rsa2048', sensitive: true, extractable: false },
    );
    assert.equal(s.keyType, 'rsa-2048');
  });

  test('a second key under a label already in use is refused, and nothing is made', async () => {
    await rejectsWith(
      generatePkcs11Key({ uri: hsm.uri(TOKEN, 'p256'), keyType: 'ec-p256', env: hsm.env }),
      'invalid-argument',
      /already holds a private key/,
    );
    assert.equal(privateKeyAccess(hsm, TOKEN).size, 4);
  });
});

describe('a CA whose key is in the token', () => {
  for (const [object, keyType] of [
    ['p256', 'ec-p256'],
    ['p384', 'ec-p384'],
    ['rsa2048', 'rsa-2048'],
  ] as const) {
    test(`${keyType}: both issuance paths and CRLs sign through it; openssl verifies them`, async () => {
      const s = await signer(hsm.uri(TOKEN, object));
      assert.equal(s.keyType, keyType satisfies CaKeyType);
      const cert = await intermediateFor(spkis.get(object) as Uint8Array, `HSM ${object}`);
      const bundle = await buildSignerBundle(
        {
          certPem: certificatePem(cert),
          chainPem: certificatePem(cert) + root.pem,
          rootPem: root.pem,
          signer: s,
          source: 'test',
        },
        clock,
      );
      assert.equal(bundle.signer, s);
      assert.equal(bundle.signingKeyType, keyType);
      const leafKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
      const params = {
        spki: spkiOf(leafKey),
        sans: ['spiffe://cluster.local/ns/hsm/sa/leaf'],
        serial: randomSerial(),
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + HOUR),
      };
      for (const leafSigner of [
        createFastLeafSigner(new Uint8Array(cert.rawData), s),
        createReferenceLeafSigner(cert, s),
      ]) {
        const leaf = toPem('CERTIFICATE', await leafSigner.sign(params));
        const r = opensslVerify({ root: root.pem, untrusted: certificatePem(cert), leaf });
        assert.ok(r.ok, r.output);
      }
      const crl = await createCrl({
        issuer: { cert, key: s },
        thisUpdate: new Date(),
        nextUpdate: new Date(Date.now() + HOUR),
        crlNumber: 1,
        entries: [],
      });
      const dir = hsm.dir;
      writeFileSync(join(dir, 'ca.pem'), certificatePem(cert));
      writeFileSync(join(dir, 'crl.pem'), crl);
      const r = spawnSync(
        'openssl',
        ['crl', '-in', join(dir, 'crl.pem'), '-CAfile', join(dir, 'ca.pem'), '-noout', '-verify'],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr + r.stdout, /verify OK/);
    });
  }

  test('a key that does not belong to ca-cert.pem is refused with the reason', async () => {
    const cert = await intermediateFor(spkis.get('p256') as Uint8Array, 'HSM p256');
    const input = {
      certPem: certificatePem(cert),
      chainPem: certificatePem(cert) + root.pem,
      rootPem: root.pem,
      source: 'test',
    };
    const other = await signer(hsm.uri(TOKEN, 'other-p256'));
    const e = await rejectsWith(
      buildSignerBundle({ ...input, signer: other }, clock),
      'key-mismatch',
      /a probe it signed does not verify with the certificate's public key/,
    );
    assert.match(e.message, /^pkcs11:token=castellan-ca;object=other-p256;type=private\?/);
    await rejectsWith(
      buildSignerBundle({ ...input, signer: await signer(hsm.uri(TOKEN, 'rsa2048')) }, clock),
      'key-mismatch',
      /the key is rsa-2048 but the certificate in ca-cert.pem holds a ec-p256 key/,
    );
  });
});

describe('opening a key URI', () => {
  test('a wrong PIN: a clear error naming the URI, never the PIN', async () => {
    const wrong = join(hsm.dir, 'wrong-pin');
    const pin = `${USER_PIN}9`;
    writeFileSync(wrong, `${pin}\n`);
    const uri = hsm.uri('pin-test', 'k').replace(hsm.pinFile, wrong);
    const e = await rejectsWith(
      openPkcs11Signer({ uri, env: hsm.env, clock }),
      'permission-denied',
      /refused the PIN \(CKR_PIN_INCORRECT\) read from file .*wrong-pin/,
    );
    assert.ok(e.message.startsWith(`${uri}: `), e.message);
    assert.ok(!e.message.includes(pin));
  });

  test('the PIN from an environment variable; pin-value refused without showing it', async () => {
    const uri = hsm.uri(TOKEN, 'p256').replace(`file:${hsm.pinFile}`, 'env:CASTELLAN_TEST_PIN');
    const s = await openPkcs11Signer({
      uri,
      env: { ...hsm.env, CASTELLAN_TEST_PIN: USER_PIN },
      clock,
    });
    await s.close();
    await rejectsWith(
      openPkcs11Signer({ uri, env: hsm.env, clock }),
      'invalid-argument',
      /environment variable CASTELLAN_TEST_PIN is not set/,
    );
    const withValue = `${hsm.uri(TOKEN, 'p256')}&pin-value=${USER_PIN}`.replace(
      /&pin-source=[^&]*/,
      '',
    );
    const e = await rejectsWith(
      openPkcs11Signer({ uri: withValue, env: hsm.env, clock }),
      'invalid-argument',
      /pin-value puts the PIN where ps, logs and Secrets show it/,
    );
    assert.ok(!e.message.includes(USER_PIN), e.message);
  });

  test('no such token, no such key, no such module: each named', async () => {
    await rejectsWith(
      openPkcs11Signer({ uri: hsm.uri('nope', 'p256'), env: hsm.env, clock }),
      'unavailable',
      /no token matches \(tokens present: "castellan-ca", "pin-test"\)/,
    );
    await rejectsWith(
      openPkcs11Signer({ uri: hsm.uri(TOKEN, 'nope'), env: hsm.env, clock }),
      'unavailable',
      /no private key with object=nope in token "castellan-ca"/,
    );
    await rejectsWith(
      openPkcs11Signer({
        uri: hsm.uri(TOKEN, 'p256').replace(/module-path=[^&]*/, 'module-path=/nonexistent.so'),
        env: hsm.env,
        clock,
      }),
      'invalid-argument',
      /cannot load the PKCS#11 module \/nonexistent.so/,
    );
  });
});

describe('faults while signing', () => {
  test('the token taken away: unavailable, then signing again once it is back', async () => {
    const s = await signer(hsm.uri(TOKEN, 'p256'), 1000);
    const alg = caSignatureAlgorithm('ec-p256');
    const probe = (): Promise<Uint8Array> => s.sign(randomBytes(32), alg);
    await probe();
    hsm.takeTokensAway();
    try {
      await rejectsWith(probe(), 'unavailable', /the HSM could not sign \(CKR_/);
      // Reopening fails while it is away; in between, requests fail at once.
      await rejectsWith(
        probe(),
        'unavailable',
        /cannot be reopened|did not initialize|no token|no private key/,
      );
      await rejectsWith(
        probe(),
        'unavailable',
        /cannot be reopened|did not initialize|no token|no private key/,
      );
      await clock.advance(1000);
      await rejectsWith(
        probe(),
        'unavailable',
        /cannot be reopened|did not initialize|no token|no private key/,
      );
    } finally {
      hsm.putTokensBack();
    }
    // Within the retry interval of the last failed attempt: still refused.
    await rejectsWith(probe(), 'unavailable', /./);
    await clock.advance(1000);
    const signature = await probe();
    assert.ok(signature.length > 8);
    // And the same key: a leaf it signs verifies under the certificate.
    const cert = await intermediateFor(spkis.get('p256') as Uint8Array, 'HSM p256');
    await buildSignerBundle(
      {
        certPem: certificatePem(cert),
        chainPem: certificatePem(cert),
        rootPem: root.pem,
        signer: s,
        source: 'test',
      },
      clock,
    );
  });

  test('signatures run off the event loop', async () => {
    const s = await signer(hsm.uri(TOKEN, 'rsa2048'));
    const alg = caSignatureAlgorithm('rsa-2048');
    let turns = 0;
    let done = false;
    const spin = (): void => {
      turns++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    await Promise.all(Array.from({ length: 40 }, () => s.sign(randomBytes(64), alg)));
    done = true;
    // Signed on the event loop, the 40 signatures would run back to back in one turn; on the
    // thread pool, the loop keeps turning while they are computed.
    assert.ok(turns > 40, `the event loop turned ${turns} times during 40 RSA signatures`);
  });
});
