import { hash } from 'node:crypto';
import { AsnConvert, AsnProp, AsnPropTypes, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  SubjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_clientAuth,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import { X509Certificate } from '@peculiar/x509';
import { CastellanError } from '../../errors.js';
import { derChildren, readDerElement } from '../der.js';
import type { KeyType } from '../key-type.js';
import type { LeafParams } from '../leaf-signer.js';
import { checkLastTime, checkValidDate, subjectKeyIdOf } from '../issue.js';
import { caSignatureAlgorithm, checkCommonName, checkSans, sanKind } from '../profiles.js';
import { TAG, concat, header, ia5, time, tlv, unsignedInteger } from './der.js';

/**
 * The workload leaf of src/pki/profiles.ts, split into what is fixed per CA (encoded once here
 * with the @peculiar/asn1-x509 schemas) and what changes per request (placed by `encodeTbs`).
 *
 * TBSCertificate ::= SEQUENCE {
 *   [0] version v3           fixed
 *   serialNumber             per request
 *   signature AlgorithmId    fixed  } one precomputed run: `algorithmAndIssuer`
 *   issuer Name              fixed  }   (issuer copied verbatim from the CA's subject DER)
 *   validity                 per request
 *   subject                  per request (empty SEQUENCE, or one CN)
 *   subjectPublicKeyInfo     per request (the CSR's, verbatim)
 *   [3] extensions           KU, EKU, BC fixed; SKI patched; AKI fixed; SAN per request
 * }
 */
export interface LeafTemplate {
  /** The signatureAlgorithm AlgorithmIdentifier DER (appears in TBS and outer Certificate). */
  readonly algorithm: Uint8Array;
  /** version [0] v3, as one run (precedes the serial). */
  readonly version: Uint8Array;
  /** signature AlgorithmIdentifier + issuer Name, contiguous in the TBS. */
  readonly algorithmAndIssuer: Uint8Array;
  /** keyUsage, extKeyUsage, basicConstraints Extension DERs, in profile order. */
  readonly fixedExtensionsHead: Uint8Array;
  /** subjectKeyIdentifier Extension DER with a zero key id; the last 20 bytes get the SHA-1. */
  readonly skiExtension: Uint8Array;
  /** authorityKeyIdentifier Extension DER (the issuer's key id). */
  readonly akiExtension: Uint8Array;
  /** subjectAltName Extension: `SEQUENCE { extnID, critical TRUE` — the OCTET STRING follows. */
  readonly sanExtensionPrefix: Uint8Array;
}

/**
 * Reads only the issuer certificate's subject, keeping its DER bytes as they are: the same
 * fields as TBSCertificate, each taken as raw `Any` (asn1-schema returns an element's own
 * bytes for Any), so nothing is re-encoded.
 */
class TbsRawFields {
  @AsnProp({ type: AsnPropTypes.Any, context: 0, optional: true })
  version?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any })
  serialNumber: ArrayBuffer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any })
  signature: ArrayBuffer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any })
  issuer: ArrayBuffer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any })
  validity: ArrayBuffer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any })
  subject: ArrayBuffer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any })
  subjectPublicKeyInfo: ArrayBuffer = new ArrayBuffer(0);
  @AsnProp({ type: AsnPropTypes.Any, context: 1, implicit: true, optional: true })
  issuerUniqueID?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any, context: 2, implicit: true, optional: true })
  subjectUniqueID?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any, context: 3, optional: true })
  extensions?: ArrayBuffer;
}

function der(value: object): Uint8Array {
  return new Uint8Array(AsnConvert.serialize(value));
}

function extension(extnID: string, critical: boolean, value: object): Uint8Array {
  return der(new Extension({ extnID, critical, extnValue: new OctetString(der(value)) }));
}

/**
 * Encodes everything fixed for one CA. Runs once per CA snapshot, never per request; any
 * problem with the issuing certificate is `malformed` naming it.
 */
export function buildLeafTemplate(issuerCertDer: Uint8Array, issuerKeyType: KeyType): LeafTemplate {
  let raw: TbsRawFields;
  let issuerKeyId: Uint8Array;
  try {
    const tbsRaw = AsnConvert.parse(issuerCertDer, Certificate).tbsCertificateRaw;
    if (!tbsRaw) throw new Error('no TBSCertificate bytes');
    raw = AsnConvert.parse(tbsRaw, TbsRawFields);
    // AKI: the issuer's own SKI, or (Istio's 2018 sample CA has none) the SHA-1 of its public
    // key: the reference signer's rule, from the same function.
    issuerKeyId = subjectKeyIdOf(new X509Certificate(issuerCertDer));
  } catch (e) {
    throw new CastellanError('malformed', 'the CA certificate does not parse', {
      subject: 'CA certificate',
      cause: e,
    });
  }
  // The signature algorithm a CA key signs leaves with (profiles.ts: caSignatureAlgorithm).
  const sig = caSignatureAlgorithm(issuerKeyType, 'CA key');
  const algorithm = der(
    new AlgorithmIdentifier(
      sig.family === 'ecdsa' ? { algorithm: sig.oid } : { algorithm: sig.oid, parameters: null },
    ),
  );

  const fixedExtensionsHead = concat(
    extension(
      id_ce_keyUsage,
      true,
      new KeyUsage(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment),
    ),
    extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
    extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
  );
  const skiExtension = extension(
    id_ce_subjectKeyIdentifier,
    false,
    new SubjectKeyIdentifier(new Uint8Array(20)),
  );
  const akiExtension = extension(
    id_ce_authorityKeyIdentifier,
    false,
    new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(issuerKeyId) }),
  );
  // The SAN extension with an empty value ends in the OCTET STRING header `04 00`; what sits
  // between the SEQUENCE header and it (extnID, critical TRUE) is the fixed prefix.
  const emptySan = der(
    new Extension({ extnID: id_ce_subjectAltName, critical: true, extnValue: new OctetString() }),
  );
  const sanExtensionPrefix = emptySan.subarray(2, emptySan.length - 2);

  return {
    algorithm,
    version: tlv(TAG.CONTEXT_0_CONSTRUCTED, unsignedInteger(Uint8Array.of(2))),
    algorithmAndIssuer: concat(algorithm, new Uint8Array(raw.subject)),
    fixedExtensionsHead,
    skiExtension,
    akiExtension,
    sanExtensionPrefix,
  };
}

const OID_COMMON_NAME = Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x03);
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const utf8 = new TextEncoder();

/** Subject: empty, or one CN (PrintableString when it fits, else UTF8String; profiles.ts). */
function subjectName(commonName: string | undefined): Uint8Array {
  if (commonName === undefined) return Uint8Array.of(TAG.SEQUENCE, 0);
  checkCommonName(commonName);
  const value = PRINTABLE.test(commonName)
    ? tlv(TAG.PRINTABLE_STRING, utf8.encode(commonName))
    : tlv(TAG.UTF8_STRING, utf8.encode(commonName));
  return tlv(TAG.SEQUENCE, tlv(TAG.SET, tlv(TAG.SEQUENCE, OID_COMMON_NAME, value)));
}

function ipBytes(text: string): Uint8Array {
  if (!text.includes(':')) return Uint8Array.from(text.split('.').map(Number));
  // IPv6 (already validated by sanKind): expand `::`, then 8 groups of 16 bits.
  const [head = '', tail] = text.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

function generalName(san: string): Uint8Array {
  switch (sanKind(san)) {
    case 'uri':
      return ia5(TAG.SAN_URI, san);
    case 'ip':
      return tlv(TAG.SAN_IP, ipBytes(san));
    case 'dns':
      return ia5(TAG.SAN_DNS, san);
  }
}

function checkParams(p: LeafParams): void {
  checkSans(p.sans);
  if (!p.serial.some((b) => b !== 0)) {
    throw new CastellanError('invalid-argument', 'the serial number must be positive');
  }
  checkValidDate(p.notBefore, 'notBefore');
  if (p.notAfter.getTime() <= p.notBefore.getTime()) {
    throw new CastellanError('invalid-argument', 'notAfter must be after notBefore');
  }
  checkLastTime(p.notAfter);
}

/**
 * SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2, method 1). The SPKI
 * came from a CSR that parseCsr/parseCsrFast already parsed with the schemas, so only its
 * element boundaries are read here (src/pki/der.ts): SEQUENCE { algorithm, BIT STRING }.
 */
function subjectKeyId(spki: Uint8Array): Uint8Array {
  const outer = readDerElement(spki, 0, 'public key');
  const bits = derChildren(spki, outer, 'public key')[1];
  if (!bits || spki[bits.start] !== TAG.BIT_STRING || bits.end - bits.contentStart < 1) {
    throw new CastellanError('malformed', 'not a SubjectPublicKeyInfo', { subject: 'public key' });
  }
  // Skip the unused-bits count byte: the hash covers the key bits only.
  return hash('sha1', spki.subarray(bits.contentStart + 1, bits.end), 'buffer');
}

/** The TBSCertificate for one request: the template's fixed runs with the request's fields. */
export function encodeTbs(t: LeafTemplate, p: LeafParams): Uint8Array {
  checkParams(p);
  const ski = t.skiExtension.slice();
  ski.set(subjectKeyId(p.spki), ski.length - 20);
  const names = tlv(TAG.SEQUENCE, ...p.sans.map(generalName));
  const san = tlv(
    TAG.SEQUENCE,
    t.sanExtensionPrefix,
    header(TAG.OCTET_STRING, names.length),
    names,
  );
  const extensions = tlv(
    TAG.CONTEXT_3_CONSTRUCTED,
    tlv(TAG.SEQUENCE, t.fixedExtensionsHead, ski, t.akiExtension, san),
  );
  return tlv(
    TAG.SEQUENCE,
    t.version,
    unsignedInteger(p.serial),
    t.algorithmAndIssuer,
    tlv(TAG.SEQUENCE, time(p.notBefore), time(p.notAfter)),
    subjectName(p.commonName),
    p.spki,
    extensions,
  );
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }. */
export function encodeCertificate(
  t: LeafTemplate,
  tbs: Uint8Array,
  signature: Uint8Array,
): Uint8Array {
  return tlv(
    TAG.SEQUENCE,
    tbs,
    t.algorithm,
    header(TAG.BIT_STRING, signature.length + 1),
    Uint8Array.of(0),
    signature,
  );
}
