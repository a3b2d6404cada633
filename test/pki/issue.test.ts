import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from '@peculiar/x509';
import { issueCertificate } from '../../src/pki/issue.js';
import { generateKeyPair, parsePrivateKeyPem, spkiOf } from '../../src/pki/keys.js';
import { toPem } from '../../src/pki/pem.js';
import { sanKind } from '../../src/pki/profiles.js';
import { createReferenceLeafSigner } from '../../src/pki/reference-leaf-signer.js';
import { randomSerial } from '../../src/pki/serial.js';
import { istioSampleCerts } from '../support/paths.js';
import {
  makeTempDir,
  opensslBinary,
  opensslExtensions,
  opensslText,
  opensslVerify,
} from '../support/openssl.js';
import { HOUR, opensslP256Csr, testIntermediate, testRoot, type TestCa } from './fixtures.js';

const tmp = makeTempDir();
after(() => tmp.remove());
const pem = (c: X509Certificate): string => toPem('CERTIFICATE', c.rawData);

const csrSpki = (): Uint8Array => opensslP256Csr(tmp.dir, '/CN=x').spki;

const sha1Hex = (b: Uint8Array): string =>
  createHash('sha1')
    .update(b)
    .digest('hex')
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1:');

describe('CA profiles', () => {
  let root: TestCa;
  let inter: TestCa;
  before(async () => {
    root = await testRoot('ec-p384');
    inter = await testIntermediate(root, { keyType: 'ec-p256' });
  });

  test('root: self-signed, strict-valid, exactly the root extensions', () => {
    assert.ok(opensslVerify({ root: pem(root.cert), leaf: pem(root.cert) }).ok);
    const ext = opensslExtensions(pem(root.cert));
    assert.deepEqual(
      [...ext.keys()],
      [
        'X509v3 Basic Constraints',
        'X509v3 Key Usage',
        'X509v3 Subject Key Identifier',
        'X509v3 Authority Key Identifier',
      ],
    );
    assert.deepEqual(ext.get('X509v3 Basic Constraints'), { critical: true, value: 'CA:TRUE' });
    assert.deepEqual(ext.get('X509v3 Key Usage'), {
      critical: true,
      value: 'Certificate Sign, CRL Sign',
    });
    assert.equal(
      ext.get('X509v3 Authority Key Identifier')!.value,
      ext.get('X509v3 Subject Key Identifier')!.value,
    );
    const text = opensslText(pem(root.cert));
    assert.match(text, /Subject: O = test, CN = Test Root/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA384/);
  });

  test('intermediate: pathlen 0, AKI = root SKI, strict-valid under the root', () => {
    const r = opensslVerify({ root: pem(root.cert), leaf: pem(inter.cert) });
    assert.ok(r.ok, r.output);
    const ext = opensslExtensions(pem(inter.cert));
    assert.deepEqual(ext.get('X509v3 Basic Constraints'), {
      critical: true,
      value: 'CA:TRUE, pathlen:0',
    });
    assert.deepEqual(ext.get('X509v3 Key Usage'), {
      critical: true,
      value: 'Certificate Sign, CRL Sign',
    });
    assert.equal(
      ext.get('X509v3 Authority Key Identifier')!.value,
      opensslExtensions(pem(root.cert)).get('X509v3 Subject Key Identifier')!.value,
    );
  });
});

describe('workload leaf (reference signer)', () => {
  for (const keyType of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
    test(`Istio's profile under a ${keyType} intermediate`, async () => {
      const root = await testRoot('ec-p256');
      const inter = await testIntermediate(root, { keyType });
      const signer = createReferenceLeafSigner(inter.cert, inter.key);
      const spki = csrSpki();
      const serial = randomSerial();
      const now = Date.now();
      const sans = [
        'spiffe://cluster.local/ns/default/sa/foo',
        '10.1.2.3',
        'fd00::1',
        'foo.default.svc',
      ];
      const der = await signer.sign({
        spki,
        sans,
        serial,
        notBefore: new Date(now - 120_000),
        notAfter: new Date(now + HOUR),
      });
      const leaf = toPem('CERTIFICATE', der);
      for (const purpose of ['sslserver', 'sslclient']) {
        const r = opensslVerify({
          root: pem(root.cert),
          untrusted: pem(inter.cert),
          leaf,
          purpose,
        });
        assert.ok(r.ok, r.output);
      }
      const ext = opensslExtensions(leaf);
      assert.deepEqual(
        [...ext.keys()],
        [
          'X509v3 Key Usage',
          'X509v3 Extended Key Usage',
          'X509v3 Basic Constraints',
          'X509v3 Subject Key Identifier',
          'X509v3 Authority Key Identifier',
          'X509v3 Subject Alternative Name',
        ],
      );
      assert.deepEqual(ext.get('X509v3 Key Usage'), {
        critical: true,
        value: 'Digital Signature, Key Encipherment',
      });
      assert.deepEqual(ext.get('X509v3 Extended Key Usage'), {
        critical: false,
        value: 'TLS Web Server Authentication, TLS Web Client Authentication',
      });
      assert.deepEqual(ext.get('X509v3 Basic Constraints'), { critical: true, value: 'CA:FALSE' });
      assert.deepEqual(ext.get('X509v3 Subject Alternative Name'), {
        critical: true,
        value:
          'URI:spiffe://cluster.local/ns/default/sa/foo, IP Address:10.1.2.3, IP Address:FD00:0:0:0:0:0:0:1, DNS:foo.default.svc',
      });
      // SKI = SHA-1 of the public key bits: for P-256 the last 65 bytes of the SPKI (the point).
      assert.equal(
        ext.get('X509v3 Subject Key Identifier')!.value,
        sha1Hex(spki.subarray(spki.length - 65)),
      );
      assert.equal(
        ext.get('X509v3 Authority Key Identifier')!.value,
        opensslExtensions(pem(inter.cert)).get('X509v3 Subject Key Identifier')!.value,
      );
      const text = opensslText(leaf);
      assert.match(text, /Subject: *\n/);
      const sigAlg = {
        'ec-p256': 'ecdsa-with-SHA256',
        'ec-p384': 'ecdsa-with-SHA384',
        'rsa-2048': 'sha256WithRSAEncryption',
      }[keyType];
      assert.match(text, new RegExp(`Signature Algorithm: ${sigAlg}`));
      const serialHex = /Serial Number:\s*\n\s*([0-9a-f:]+)/.exec(text)![1]!.replaceAll(':', '');
      assert.equal(serialHex, Buffer.from(serial).toString('hex'));
      assert.equal(serialHex.length, 34);
      const parsed = new X509Certificate(der);
      assert.equal(parsed.notBefore.getTime(), Math.floor((now - 120_000) / 1000) * 1000);
      assert.equal(parsed.notAfter.getTime(), Math.floor((now + HOUR) / 1000) * 1000);
      assert.deepEqual(new Uint8Array(parsed.publicKey.rawData), spki);
    });
  }

  test('CN is set only when given', async () => {
    const root = await testRoot('ec-p256');
    const signer = createReferenceLeafSigner(root.cert, root.key);
    const now = Date.now();
    const der = await signer.sign({
      spki: csrSpki(),
      sans: ['spiffe://td/ns/a/sa/b'],
      commonName: 'spiffe://td/ns/a/sa/b',
      serial: randomSerial(),
      notBefore: new Date(now - 1000),
      notAfter: new Date(now + HOUR),
    });
    assert.match(
      opensslText(toPem('CERTIFICATE', der)),
      /Subject: CN = spiffe:\/\/td\/ns\/a\/sa\/b/,
    );
  });

  test("a leaf signed by Istio's 2018 sample CA chains to its root (plain openssl verify)", async () => {
    const caCert = new X509Certificate(readFileSync(join(istioSampleCerts, 'ca-cert.pem')));
    const { key } = parsePrivateKeyPem(readFileSync(join(istioSampleCerts, 'ca-key.pem'), 'utf8'));
    const signer = createReferenceLeafSigner(caCert, key);
    const now = Date.now();
    const der = await signer.sign({
      spki: csrSpki(),
      sans: ['spiffe://cluster.local/ns/default/sa/foo'],
      serial: randomSerial(),
      notBefore: new Date(now - 120_000),
      notAfter: new Date(now + HOUR),
    });
    const r = opensslVerify({
      root: readFileSync(join(istioSampleCerts, 'root-cert.pem'), 'utf8'),
      untrusted: readFileSync(join(istioSampleCerts, 'cert-chain.pem'), 'utf8'),
      leaf: toPem('CERTIFICATE', der),
      strict: false,
    });
    assert.ok(r.ok, r.output);
    // No SKI on that CA: the AKI is computed from its public key (RFC 5280 method 1).
    const aki = opensslExtensions(toPem('CERTIFICATE', der)).get(
      'X509v3 Authority Key Identifier',
    )!.value;
    const bits = opensslBinary(
      ['rsa', '-pubin', '-inform', 'DER', '-RSAPublicKey_out', '-outform', 'DER'],
      spkiOf(key),
    );
    assert.equal(aki, sha1Hex(bits));
  });
});

describe('serving certificate', () => {
  test('DNS and IP SANs, passes sslserver', async () => {
    const root = await testRoot('rsa-2048');
    const { publicKey } = await generateKeyPair('ec-p256');
    const now = Date.now();
    const cert = await issueCertificate({
      profile: { kind: 'serving', sans: ['castellan.istio-system.svc', 'localhost', '127.0.0.1'] },
      publicKey,
      issuer: root,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + HOUR),
    });
    const r = opensslVerify({ root: pem(root.cert), leaf: pem(cert), purpose: 'sslserver' });
    assert.ok(r.ok, r.output);
    assert.equal(
      opensslExtensions(pem(cert)).get('X509v3 Subject Alternative Name')!.value,
      'DNS:castellan.istio-system.svc, DNS:localhost, IP Address:127.0.0.1',
    );
  });
});

test('SAN classification and serial shape', () => {
  assert.equal(sanKind('spiffe://a/b'), 'uri');
  assert.equal(sanKind('192.168.0.1'), 'ip');
  assert.equal(sanKind('::1'), 'ip');
  assert.equal(sanKind('300.1.1.1'), 'dns');
  assert.equal(sanKind('example.com'), 'dns');
  const seenLead = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const s = randomSerial();
    // ≥ 128 random bits: a positive leading byte, then 16 random bytes.
    assert.equal(s.length, 17);
    assert.ok(s[0]! >= 1 && s[0]! <= 0x7f);
    seenLead.add(s[0]!);
  }
  assert.ok(seenLead.size > 50, 'the leading byte is random too');
});
