// The fast leaf signer must produce the reference signer's certificates: same TBSCertificate
// bytes for the same parameters (ECDSA signatures are randomised, so the TBS is compared and
// both signatures verified; RSA PKCS#1 v1.5 is deterministic, so whole certificates match).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { X509Certificate } from '@peculiar/x509';
import { createReferenceLeafSigner } from '../../../src/pki/reference-leaf-signer.js';
import { createFastLeafSigner } from '../../../src/pki/fast/fast-leaf-signer.js';
import { spkiOf } from '../../../src/pki/keys.js';
import { toPem } from '../../../src/pki/pem.js';
import { randomSerial } from '../../../src/pki/serial.js';
import type { LeafParams } from '../../../src/pki/leaf-signer.js';
import { isCastellanError } from '../../../src/errors.js';
import { istioSampleCerts } from '../../support/paths.js';
import { makeTempDir, openssl, opensslText, opensslVerify } from '../../support/openssl.js';

interface Ca {
  name: string;
  certPem: string;
  key: KeyObject;
  root: string;
  untrusted?: string;
  strict: boolean;
}

const tmp = makeTempDir('castellan-fast-');
after(() => tmp.remove());

/** A root CA made by the openssl CLI, independent of our own code. */
function opensslRoot(name: string, newkey: string[]): Ca {
  const keyFile = join(tmp.dir, `${name}-key.pem`);
  const certFile = join(tmp.dir, `${name}-cert.pem`);
  openssl([
    'req',
    '-x509',
    '-nodes',
    ...newkey,
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '36500',
    '-subj',
    `/O=castellan test/CN=${name} root`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const certPem = readFileSync(certFile, 'utf8');
  return {
    name,
    certPem,
    key: createPrivateKey(readFileSync(keyFile)),
    root: certPem,
    strict: true,
  };
}

function sample(file: string): string {
  return readFileSync(join(istioSampleCerts, file), 'utf8');
}

const cas: Ca[] = [];
before(() => {
  cas.push(
    opensslRoot('p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']),
    opensslRoot('p384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']),
    opensslRoot('rsa2048', ['-newkey', 'rsa:2048']),
    opensslRoot('rsa4096', ['-newkey', 'rsa:4096']),
    {
      name: 'istio-2018 (no SKI)',
      certPem: sample('ca-cert.pem'),
      key: createPrivateKey(sample('ca-key.pem')),
      root: sample('root-cert.pem'),
      untrusted: sample('cert-chain.pem'),
      strict: false, // the 2018 set fails -x509_strict by itself (see ../shared/README.md)
    },
    {
      name: 'istio-alt (RSA-4096 intermediate)',
      certPem: sample('ca-cert-alt.pem'),
      key: createPrivateKey(sample('ca-key-alt.pem')),
      root: sample('root-cert-alt.pem'),
      untrusted: sample('ca-cert-alt.pem'),
      strict: true,
    },
  );
});

const leafKeys = {
  'ec-p256': generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
  'ec-p384': generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
  'rsa-2048': generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
  ed25519: generateKeyPairSync('ed25519').publicKey,
};

const notBefore = new Date(Date.UTC(2026, 0, 1, 10, 20, 30, 456));
const variants: { name: string; params: Omit<LeafParams, 'serial'> }[] = [
  {
    name: 'spiffe URI, empty subject, P-256 key',
    params: {
      spki: spkiOf(leafKeys['ec-p256']),
      sans: ['spiffe://cluster.local/ns/default/sa/bookinfo-productpage'],
      notBefore,
      notAfter: new Date(notBefore.getTime() + 24 * 3600_000),
    },
  },
  {
    name: 'CN, DNS + IPv4 + IPv6 SANs, RSA key',
    params: {
      spki: spkiOf(leafKeys['rsa-2048']),
      sans: [
        'spiffe://cluster.local/ns/a/sa/b',
        'castellan.istio-system.svc',
        '127.0.0.1',
        '::1',
        '2001:db8::8:800:200c:417a',
      ],
      commonName: 'spiffe://cluster.local/ns/a/sa/b',
      notBefore,
      notAfter: new Date(Date.UTC(2027, 5, 30, 23, 59, 59, 999)),
    },
  },
  {
    name: 'UTF8 CN, P-384 key, GeneralizedTime after 2049',
    params: {
      spki: spkiOf(leafKeys['ec-p384']),
      sans: ['spiffe://my_domain.example/ns/x/sa/y'],
      commonName: 'spiffe://my_domain.example/ns/x/sa/y',
      notBefore: new Date(Date.UTC(2049, 11, 31, 23, 58, 0)),
      notAfter: new Date(Date.UTC(2050, 0, 1, 0, 0, 0)),
    },
  },
  {
    name: 'the last time X.509 can express (9999-12-31T23:59:59Z)',
    params: {
      spki: spkiOf(leafKeys['ec-p256']),
      sans: ['spiffe://cluster.local/ns/far/sa/future'],
      notBefore,
      notAfter: new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)),
    },
  },
  {
    name: 'Ed25519 key, long SAN list (long-form lengths)',
    params: {
      spki: spkiOf(leafKeys.ed25519),
      sans: Array.from({ length: 40 }, (_, i) => `svc-${i}.ns.svc.cluster.local`),
      notBefore,
      notAfter: new Date(notBefore.getTime() + 3600_000),
    },
  },
];

function parse(der: Uint8Array): Certificate {
  return AsnConvert.parse(der, Certificate);
}

describe('fast leaf signer = reference leaf signer', () => {
  test('same TBSCertificate bytes and valid signatures, every CA and variant', async () => {
    for (const ca of cas) {
      const caCert = new X509Certificate(ca.certPem);
      const reference = createReferenceLeafSigner(caCert, ca.key);
      const fast = createFastLeafSigner(new Uint8Array(caCert.rawData), ca.key);
      for (const v of variants) {
        const params: LeafParams = { ...v.params, serial: randomSerial() };
        const [r, f] = await Promise.all([reference.sign(params), fast.sign(params)]);
        const rc = parse(r);
        const fc = parse(f);
        const label = `${ca.name} / ${v.name}`;
        assert.deepEqual(
          Buffer.from(fc.tbsCertificateRaw!).toString('hex'),
          Buffer.from(rc.tbsCertificateRaw!).toString('hex'),
          `${label}: TBSCertificate differs`,
        );
        assert.deepEqual(
          AsnConvert.serialize(fc.signatureAlgorithm),
          AsnConvert.serialize(rc.signatureAlgorithm),
          `${label}: signatureAlgorithm differs`,
        );
        const fastSig = new Uint8Array(fc.signatureValue);
        const algo =
          ca.key.asymmetricKeyType === 'rsa' ? 'sha256' : ca.name === 'p384' ? 'sha384' : 'sha256';
        assert.ok(
          verify(
            algo,
            new Uint8Array(fc.tbsCertificateRaw!),
            {
              key: Buffer.from(caCert.publicKey.rawData),
              format: 'der',
              type: 'spki',
              dsaEncoding: 'der',
            },
            fastSig,
          ),
          `${label}: fast signature does not verify`,
        );
        if (ca.key.asymmetricKeyType === 'rsa') {
          assert.equal(
            Buffer.from(f).toString('hex'),
            Buffer.from(r).toString('hex'),
            `${label}: RSA certificates differ`,
          );
        }
      }
    }
  });

  test('fast leaves pass openssl verify -purpose sslserver and sslclient', async () => {
    for (const ca of cas) {
      const caCert = new X509Certificate(ca.certPem);
      const fast = createFastLeafSigner(new Uint8Array(caCert.rawData), ca.key);
      const leaf = toPem(
        'CERTIFICATE',
        await fast.sign({
          ...variants[0]!.params,
          serial: randomSerial(),
          notBefore: new Date(Date.now() - 120_000),
          notAfter: new Date(Date.now() + 3600_000),
        }),
      );
      for (const purpose of ['sslserver', 'sslclient']) {
        const r = opensslVerify({
          root: ca.root,
          leaf,
          purpose,
          strict: ca.strict,
          ...(ca.untrusted ? { untrusted: ca.untrusted } : {}),
        });
        assert.ok(r.ok, `${ca.name} ${purpose}: ${r.output}`);
      }
      const text = opensslText(leaf);
      assert.match(
        text,
        /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/bookinfo-productpage/,
      );
      assert.match(text, /X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
      assert.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
      assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
    }
  });

  test('bad parameters are refused with invalid-argument', async () => {
    const ca = cas[0]!;
    const fast = createFastLeafSigner(
      new Uint8Array(new X509Certificate(ca.certPem).rawData),
      ca.key,
    );
    const base: LeafParams = { ...variants[0]!.params, serial: randomSerial() };
    for (const bad of [
      { ...base, sans: [] },
      { ...base, sans: ['has space'] },
      { ...base, notAfter: base.notBefore },
      { ...base, serial: new Uint8Array(16) },
      // A second past the last time GeneralizedTime holds; and a date past any date at all.
      { ...base, notAfter: new Date(Date.UTC(10000, 0, 1, 0, 0, 0)) },
      { ...base, notAfter: new Date(NaN) },
    ]) {
      await assert.rejects(fast.sign(bad), (e: unknown) => isCastellanError(e, 'invalid-argument'));
    }
    // The reference (src/pki/issue.ts) refuses it the same way, naming the limit.
    const reference = createReferenceLeafSigner(new X509Certificate(ca.certPem), ca.key);
    await assert.rejects(
      reference.sign({ ...base, notAfter: new Date(Date.UTC(10000, 0, 1, 0, 0, 0)) }),
      (e: unknown) =>
        isCastellanError(e, 'invalid-argument') &&
        /valid until \+?010000-01-01T00:00:00\.000Z, after 9999-12-31T23:59:59Z/.test(e.message),
    );
  });

  test('a certificate that is not DER is refused as malformed', () => {
    const ca = cas[0]!;
    assert.throws(
      () => createFastLeafSigner(Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x01), ca.key),
      (e: unknown) => isCastellanError(e, 'malformed'),
    );
  });
});
