// Differential test: parseCsrFast must accept and refuse exactly what the reference parseCsr
// does, with the same error kinds, and return the same fields when both accept; and whatever
// its common-shape walker recognises must read the same fields as the schema parse. Inputs: real
// CSRs made by the openssl CLI (P-256, P-384, P-521, RSA-1024/2048/3072, Ed25519), CSRs with
// unusual but correctly signed contents built here, and thousands of seeded mutations of them.
// Rerun a failure with CSR_FUZZ_SEED=<seed printed in the message>.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { CertificationRequest, CertificationRequestInfo, Attributes } from '@peculiar/asn1-csr';
import {
  AlgorithmIdentifier,
  Attribute,
  AttributeTypeAndValue,
  BasicConstraints,
  Extension,
  Extensions,
  GeneralName,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
} from '@peculiar/asn1-x509';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from '@peculiar/x509';
import {
  csrDerFromPem,
  csrStructureFromSchema,
  parseCsr,
  type CheckedCsr,
  type CsrStructure,
} from '../../../src/pki/csr.js';
import { recognizeCommonCsr } from '../../../src/pki/fast/common-csr.js';
import { parseCsrFast, parseCsrFastAsync } from '../../../src/pki/fast/fast-csr.js';
import {
  NATIVE_P256,
  P256_BAD_POINT,
  P256_BAD_SIGNATURE,
  P256_VALID,
  type NativeP256Verify,
} from '../../../src/pki/fast/native-p256.js';
import { isCastellanError } from '../../../src/errors.js';
import { makeTempDir, openssl } from '../../support/openssl.js';
import { seededRng } from '../../support/seeded-rng.js';

const seed = Number(process.env.CSR_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

type Outcome = { ok: true; csr: CheckedCsr } | { ok: false; kind: string };
function run(parse: (pem: string) => CheckedCsr, pem: string): Outcome {
  try {
    return { ok: true, csr: parse(pem) };
  } catch (e) {
    return { ok: false, kind: isCastellanError(e) ? e.kind : `NOT A CastellanError: ${String(e)}` };
  }
}

/** The whole refusal (kind, subject, message) or the fields: parseCsrFastAsync = parseCsrFast. */
async function exactly(parse: (pem: string) => CheckedCsr | Promise<CheckedCsr>, pem: string) {
  try {
    return summary({ ok: true, csr: await parse(pem) });
  } catch (e) {
    return isCastellanError(e)
      ? `${e.kind} ${e.subject} ${e.message}`
      : `NOT A CastellanError: ${String(e)}`;
  }
}

function summary(o: Outcome): unknown {
  if (!o.ok) return o.kind;
  return {
    spki: Buffer.from(o.csr.spki).toString('hex'),
    der: Buffer.from(o.csr.der).toString('hex'),
    keyType: o.csr.keyType,
    commonName: o.csr.commonName,
    requestedSans: o.csr.requestedSans,
  };
}

/**
 * For an input the common-shape walker recognises: its fields, and the same fields read with the
 * schema parse and @peculiar/x509 (rule 7 as the reference reads it). `undefined` otherwise.
 */
function recognizedFields(pem: string): { walker: unknown; schema: unknown } | undefined {
  let der: Uint8Array;
  try {
    der = csrDerFromPem(pem);
  } catch {
    return undefined;
  }
  const common = recognizeCommonCsr(der);
  if (!common) return undefined;
  const fieldsOf = (
    s: CsrStructure,
    commonName: string | undefined,
    requestedSans: readonly string[],
  ): unknown => ({
    tbs: Buffer.from(s.tbs).toString('hex'),
    spki: Buffer.from(s.spki).toString('hex'),
    signatureAlgorithm: s.signatureAlgorithm,
    signature: Buffer.from(s.signature).toString('hex'),
    commonName,
    requestedSans,
  });
  const { structure, parsed } = csrStructureFromSchema(
    der,
    (asn) => new Pkcs10CertificateRequest(asn),
  );
  structure.checkKeyAlgorithm();
  const san = parsed.getExtension('2.5.29.17');
  const sans =
    san instanceof SubjectAlternativeNameExtension ? san.names.items.map((n) => n.value) : [];
  return {
    walker: fieldsOf(common.structure, common.commonName, common.requestedSans),
    schema: fieldsOf(structure, parsed.subjectName.getField('CN')[0], sans),
  };
}

function pemOf(der: Uint8Array, label = 'CERTIFICATE REQUEST'): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

function derOf(pem: string): Uint8Array {
  return new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64'));
}

const tmp = makeTempDir('castellan-csr-fuzz-');
after(() => tmp.remove());

/** CSRs from the openssl CLI: an implementation we did not write. */
const opensslCsrs: string[] = [];
before(() => {
  const spiffeAndIp =
    'subjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b,DNS:x.example,IP:10.0.0.1';
  const specs: [string, string[], string?][] = [
    ['p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['p384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']],
    ['p521', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521']],
    ['rsa1024', ['-newkey', 'rsa:1024']],
    ['rsa2048', ['-newkey', 'rsa:2048']],
    ['ed25519', ['-newkey', 'ed25519']],
    ['p256-sha512', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha512']],
    ['p256-sha1', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha1']],
    // The common shape (src/pki/fast/common-csr.ts): no IP SAN.
    [
      'p256-common',
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      'subjectAltName=URI:spiffe://cluster.local/ns/a/sa/b,DNS:x.example',
    ],
    ['rsa2048-common', ['-newkey', 'rsa:2048'], 'subjectAltName=critical,DNS:rsa.example'],
  ];
  for (const [name, args, san] of specs) {
    const out = join(tmp.dir, `${name}.csr`);
    openssl([
      'req',
      '-new',
      '-nodes',
      ...args,
      '-keyout',
      join(tmp.dir, `${name}.key`),
      '-out',
      out,
      '-subj',
      `/O=test/CN=${name}.example`,
      '-addext',
      san ?? spiffeAndIp,
    ]);
    opensslCsrs.push(readFileSync(out, 'utf8'));
  }
  // RSA-PSS signature over an RSA key: unsupported signature algorithm.
  const out = join(tmp.dir, 'pss.csr');
  openssl([
    'req',
    '-new',
    '-key',
    join(tmp.dir, 'rsa2048.key'),
    '-out',
    out,
    '-subj',
    '/CN=pss',
    '-sigopt',
    'rsa_padding_mode:pss',
  ]);
  opensslCsrs.push(readFileSync(out, 'utf8'));
});

const keys: Record<string, KeyObject> = {
  p256: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
  ed: generateKeyPairSync('ed25519').privateKey,
};

/** A CSR with the given contents, correctly signed, so rule 7 is reached. */
function signedCsr(
  key: KeyObject,
  o: { subject?: Name; attributes?: Attribute[]; version?: number; sigOid?: string } = {},
): string {
  const spki = AsnConvert.parse(spkiDer(key), SubjectPublicKeyInfo);
  const info = new CertificationRequestInfo({
    version: o.version ?? 0,
    subject: o.subject ?? new Name(),
    subjectPKInfo: spki,
    attributes: new Attributes(o.attributes ?? []),
  });
  const infoDer = new Uint8Array(AsnConvert.serialize(info));
  const type = key.asymmetricKeyType;
  const sigOid =
    o.sigOid ??
    (type === 'ec'
      ? '1.2.840.10045.4.3.2'
      : type === 'rsa'
        ? '1.2.840.113549.1.1.11'
        : '1.3.101.112');
  const signature = sign(
    type === 'ed25519' ? null : 'sha256',
    infoDer,
    type === 'ec' ? { key, dsaEncoding: 'der' } : key,
  );
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier(
      type === 'rsa' ? { algorithm: sigOid, parameters: null } : { algorithm: sigOid },
    ),
    signature: new Uint8Array(signature).buffer,
  });
  return pemOf(new Uint8Array(AsnConvert.serialize(csr)));
}

function spkiDer(key: KeyObject): Uint8Array {
  return new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }));
}

function cn(value: AttributeTypeAndValue['value']): Name {
  return new Name([
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: '2.5.4.3', value })]),
  ]);
}

function extReq(...exts: Extension[]): Attribute {
  return new Attribute({
    type: '1.2.840.113549.1.9.14',
    values: [AsnConvert.serialize(new Extensions(exts))],
  });
}

function sanExt(...names: GeneralName[]): Extension {
  return new Extension({
    extnID: '2.5.29.17',
    critical: true,
    extnValue: new OctetString(AsnConvert.serialize(new SubjectAlternativeName(names))),
  });
}

/** Correctly signed CSRs with unusual contents: rule 7 and the fallback path. */
function unusualCsrs(): string[] {
  const k = keys.p256!;
  const v = (o: object): AttributeTypeAndValue['value'] =>
    Object.assign(new AttributeTypeAndValue().value, o);
  return [
    signedCsr(k),
    // What Istio's agent sends (Go's x509.CreateCertificateRequest with Org ""): O = "" as a
    // PrintableString, and a SAN with the SPIFFE URI.
    signedCsr(k, {
      subject: new Name([
        new RelativeDistinguishedName([
          new AttributeTypeAndValue({ type: '2.5.4.10', value: v({ printableString: '' }) }),
        ]),
      ]),
      attributes: [
        extReq(sanExt(new GeneralName({ uniformResourceIdentifier: 'spiffe://td/ns/n/sa/s' }))),
      ],
    }),
    signedCsr(keys.rsa!, { subject: cn(v({ printableString: 'printable' })) }),
    signedCsr(keys.ed!, { subject: cn(v({ utf8String: 'üñí_code' })) }),
    signedCsr(k, { subject: cn(v({ ia5String: 'ia5' })) }),
    signedCsr(k, { subject: cn(v({ bmpString: 'bmp' })) }),
    signedCsr(k, { subject: cn(v({ anyValue: new Uint8Array([0x05, 0x00]).buffer })) }),
    signedCsr(k, { version: 1 }),
    signedCsr(k, { sigOid: '1.2.840.113549.1.1.11' }),
    signedCsr(k, { sigOid: '1.2.840.10045.4.1' }),
    signedCsr(k, {
      attributes: [
        extReq(
          sanExt(
            new GeneralName({ dNSName: 'a.example' }),
            new GeneralName({ uniformResourceIdentifier: 'spiffe://td/ns/n/sa/s' }),
          ),
        ),
      ],
    }),
    signedCsr(k, { attributes: [extReq(sanExt(new GeneralName({ iPAddress: '10.1.2.3' })))] }),
    signedCsr(k, { attributes: [extReq(sanExt(new GeneralName({ rfc822Name: 'a@b.example' })))] }),
    signedCsr(k, { attributes: [extReq(sanExt(new GeneralName({ registeredID: '1.2.3.4' })))] }),
    signedCsr(k, {
      attributes: [
        extReq(
          sanExt(new GeneralName({ dNSName: 'one' })),
          sanExt(new GeneralName({ dNSName: 'two' })),
        ),
      ],
    }),
    signedCsr(k, {
      attributes: [extReq(), extReq(sanExt(new GeneralName({ dNSName: 'second' })))],
    }),
    signedCsr(k, {
      attributes: [
        extReq(
          new Extension({
            extnID: '2.5.29.19',
            extnValue: new OctetString(AsnConvert.serialize(new BasicConstraints({ cA: true }))),
          }),
        ),
      ],
    }),
    signedCsr(k, {
      attributes: [
        extReq(
          new Extension({
            extnID: '2.5.29.19',
            extnValue: new OctetString(new Uint8Array([1, 2, 3])),
          }),
        ),
      ],
    }),
    signedCsr(k, {
      attributes: [
        extReq(
          new Extension({
            extnID: '2.5.29.17',
            extnValue: new OctetString(new Uint8Array([0x30, 0x03, 0x99, 0x01, 0x00])),
          }),
        ),
      ],
    }),
    signedCsr(k, {
      attributes: [
        extReq(
          new Extension({
            extnID: '1.2.3.4.5',
            extnValue: new OctetString(new Uint8Array([0xff])),
          }),
        ),
      ],
    }),
    signedCsr(k, {
      attributes: [
        new Attribute({
          type: '1.2.840.113549.1.9.14',
          values: [new Uint8Array([0x04, 0x01, 0x00]).buffer],
        }),
      ],
    }),
    signedCsr(k, { attributes: [new Attribute({ type: '1.2.840.113549.1.9.14', values: [] })] }),
    signedCsr(k, {
      attributes: [
        new Attribute({
          type: '1.2.840.113549.1.9.7',
          values: [new Uint8Array([0x13, 0x02, 0x61, 0x62]).buffer],
        }),
      ],
    }),
    signedCsr(k, {
      attributes: [
        new Attribute({
          type: '1.2.840.113549.1.9.7',
          values: [new Uint8Array([0x02, 0x01, 0x01]).buffer],
        }),
      ],
    }),
    signedCsr(k, {
      attributes: [
        new Attribute({ type: '1.2.3.4', values: [new Uint8Array([0x05, 0x00]).buffer] }),
      ],
    }),
  ];
}

/** One mutation of a valid CSR's PEM or DER. */
function mutate(pem: string, r: () => number): string {
  const der = derOf(pem);
  const pick = (n: number): number => Math.floor(r() * n);
  switch (pick(12)) {
    case 10: {
      // The same base64 in another layout (csrDerFromPemFast takes only the canonical one; the
      // others must reach the same outcome through csrDerFromPem).
      const b64 = Buffer.from(der).toString('base64');
      const width = [1, 60, 63, 64, 65, 76][pick(6)]!;
      const lines = b64.match(new RegExp(`.{1,${width}}`, 'g')) ?? [];
      const eol = ['\n', '\r\n', ' \n', '\n\n'][pick(4)]!;
      const text = `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join(eol)}\n-----END CERTIFICATE REQUEST-----`;
      return text + ['\n', '', '\n\n', ' ', '\r\n'][pick(5)]!;
    }
    case 11: {
      // Padding where it does not belong, or a character base64 does not have, in one line.
      const lines = pem.split('\n');
      const i = 1 + pick(Math.max(1, lines.length - 3));
      const at = pick(lines[i]!.length);
      lines[i] =
        lines[i]!.slice(0, at) +
        ['=', '==', '-', '_', ' ', '\t'][pick(6)]! +
        lines[i]!.slice(at + 1);
      return lines.join('\n');
    }
    case 0: {
      const d = der.slice();
      for (let i = 1 + pick(3); i > 0; i--) d[pick(d.length)]! ^= 1 << pick(8);
      return pemOf(d);
    }
    case 1:
      return pemOf(der.subarray(0, pick(der.length)));
    case 2:
      return pemOf(
        Uint8Array.from([...der, ...Array.from({ length: 1 + pick(4) }, () => pick(256))]),
      );
    case 3:
      return pemOf(der, ['CERTIFICATE', 'NEW CERTIFICATE REQUEST', 'PRIVATE KEY'][pick(3)]);
    case 4: {
      // A length byte made huge, or an element header replaced.
      const d = der.slice();
      const at = pick(Math.min(d.length, 40));
      d[at] = [0x84, 0xff, 0x80, 0x00][pick(4)]!;
      return pemOf(d);
    }
    case 5: {
      // Swap the signature algorithm OID's last arc (e.g. SHA-256 → SHA-384, EC ↔ RSA).
      const hex = Buffer.from(der).toString('hex');
      const swaps: [string, string][] = [
        ['2a8648ce3d040302', '2a8648ce3d040303'],
        ['2a8648ce3d040302', '2a864886f70d01010b'.slice(0, 16)],
        ['2a864886f70d01010b', '2a864886f70d01010a'],
        ['2a864886f70d01010b', '2a864886f70d010105'],
        ['2b6570', '2b6571'],
      ];
      const [a, b] = swaps[pick(swaps.length)]!;
      const idx = hex.lastIndexOf(a);
      return idx < 0
        ? pem
        : pemOf(Buffer.from(hex.slice(0, idx) + b + hex.slice(idx + a.length), 'hex'));
    }
    case 6:
      return pem + ['garbage\n', '-----BEGIN CERTIFICATE REQUEST-----\n', pem][pick(3)]!;
    case 7: {
      const lines = pem.split('\n');
      const i = 1 + pick(Math.max(1, lines.length - 3));
      lines[i] = lines[i]!.slice(0, pick(lines[i]!.length)) + '*' + lines[i]!.slice(1);
      return lines.join('\n');
    }
    case 8:
      return pemOf(Uint8Array.from({ length: pick(64) }, () => pick(256)));
    default:
      return pem.replace(
        'CERTIFICATE REQUEST-----\n',
        `CERTIFICATE REQUEST-----\n${'A'.repeat(pick(20000))}`,
      );
  }
}

describe('parseCsrFast = parseCsrFastAsync = parseCsr', () => {
  test('same outcome on real, unusual and mutated CSRs, with and without the native P-256 check', async () => {
    const bases = [...opensslCsrs, ...unusualCsrs()];
    const inputs: string[] = [...bases, '', 'not pem', 'x'.repeat(17000)];
    const r = seededRng(seed);
    for (let i = 0; i < 3000; i++) inputs.push(mutate(bases[Math.floor(r() * bases.length)]!, r));
    // And the walker's shapes mutated on their own, so its edges are fuzzed too.
    const commonBases = bases.filter((b) => recognizedFields(b) !== undefined);
    assert.ok(commonBases.length >= 4, `only ${commonBases.length} bases have the common shape`);
    for (let i = 0; i < 2000; i++) {
      inputs.push(mutate(commonBases[Math.floor(r() * commonBases.length)]!, r));
    }
    // The native check (native-p256.ts) where it is built, counted by outcome so the test shows
    // it decided; test/pki/fast/native-p256.test.ts fails where it should be and is not.
    const nativeOutcomes = new Map<number, number>();
    const native = NATIVE_P256.verify;
    const counted: NativeP256Verify | undefined =
      native &&
      ((...args) => {
        const outcome = native(...args);
        nativeOutcomes.set(outcome, (nativeOutcomes.get(outcome) ?? 0) + 1);
        return outcome;
      });
    const kinds = new Map<string, number>();
    let accepted = 0;
    let recognized = 0;
    let acceptedViaWalker = 0;
    for (const [i, pem] of inputs.entries()) {
      const ref = run(parseCsr, pem);
      const where = `input #${i} (CSR_FUZZ_SEED=${seed})`;
      // node:crypto's imports (JWK or DER on the event loop, WebCrypto raw on the crypto thread).
      const fast = run((p) => parseCsrFast(p, undefined), pem);
      assert.deepEqual(summary(fast), summary(ref), `${where} differs:\n${pem.slice(0, 2000)}`);
      const exact = await exactly((p) => parseCsrFast(p, undefined), pem);
      assert.deepEqual(
        await exactly((p) => parseCsrFastAsync(p, undefined), pem),
        exact,
        `${where}: parseCsrFastAsync differs:\n${pem.slice(0, 2000)}`,
      );
      // The native check: the very same outcome, message too, on both parsers.
      if (counted) {
        assert.deepEqual(
          await exactly((p) => parseCsrFast(p, counted), pem),
          exact,
          `${where}: parseCsrFast with the native check differs:\n${pem.slice(0, 2000)}`,
        );
        assert.deepEqual(
          await exactly((p) => parseCsrFastAsync(p, counted), pem),
          exact,
          `${where}: parseCsrFastAsync with the native check differs:\n${pem.slice(0, 2000)}`,
        );
      }
      // Whatever the walker recognises, signed correctly or not, the schema parse must accept
      // with the same fields: so rule 7 is compared even where rule 6 stops the reference.
      const common = recognizedFields(pem);
      if (common) {
        recognized++;
        assert.deepEqual(common.walker, common.schema, `${where}: walker and schema differ`);
        if (ref.ok) acceptedViaWalker++;
      }
      if (ref.ok) accepted++;
      else kinds.set(ref.kind, (kinds.get(ref.kind) ?? 0) + 1);
    }
    // The corpus reaches every outcome, so agreement means something.
    for (const k of ['malformed', 'unsupported', 'weak-key', 'bad-signature', 'too-large']) {
      assert.ok((kinds.get(k) ?? 0) > 0, `no input ended in ${k}: ${JSON.stringify([...kinds])}`);
    }
    assert.ok(accepted >= 5, `only ${accepted} inputs accepted`);
    // The walker's path is exercised, on valid and on mutated inputs.
    assert.ok(acceptedViaWalker >= 4, `only ${acceptedViaWalker} accepted via the walker`);
    assert.ok(recognized >= 200, `only ${recognized} inputs recognised by the walker`);
    // The native check answered all three ways: valid, a bad signature, not a point.
    if (counted) {
      for (const outcome of [P256_VALID, P256_BAD_SIGNATURE, P256_BAD_POINT]) {
        assert.ok(
          (nativeOutcomes.get(outcome) ?? 0) > 0,
          `the native check never answered ${outcome}: ${JSON.stringify([...nativeOutcomes])}`,
        );
      }
    }
  });
});
