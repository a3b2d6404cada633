import {
  derChildren,
  derElementEquals,
  readDerElement,
  RSA_ENCRYPTION_ALGORITHM,
  type DerElement,
} from '../der.js';
import type { CsrStructure } from '../csr.js';
import { TAG } from './der.js';
import { isCanonicalP256Spki } from './p256-spki.js';

/**
 * Rule 3 (and rule 7) for the one shape nearly every sidecar sends, without building an ASN.1
 * object tree. The profile of `castellan serve` under load put the @peculiar/asn1-schema parse
 * of each CSR (asn1js's BER tree, then the schema walk, then the extensionRequest and the SAN
 * parsed again) at a quarter of the event loop's time; this recogniser reads the same fields
 * from the DER element headers in a few microseconds.
 *
 * It only *recognises*; it never refuses. Every byte it accepts is compared with an exact
 * expected encoding or checked to be the simplest form of its type, and anything else — another
 * key type or curve, a BMPString, an IP SAN, a second extension, a non-minimal length, a
 * constructed string — makes it answer `undefined`, and the caller runs the schema parse
 * (src/pki/csr.ts), which then accepts or refuses with the reference's own error. So the shapes
 * taken here are a strict subset of what the schema parse accepts, with the same fields read
 * (the differential fuzz test, test/pki/fast/fast-csr.test.ts, compares both on every input it
 * recognises).
 *
 * The shape: CertificationRequest { CertificationRequestInfo { version 0, subject of one-value
 * RDNs (C, CN, L, ST, O, OU; UTF8String or PrintableString of printable ASCII), SPKI (canonical
 * P-256, or RSA), attributes: none or one extensionRequest holding exactly one subjectAltName of
 * DNS names and URIs in printable ASCII }, a signature algorithm of CSR_RULES without
 * parameters (RSA: NULL or none), a BIT STRING signature with no unused bits }.
 */
export interface CommonCsr {
  readonly structure: CsrStructure;
  readonly commonName: string | undefined;
  readonly requestedSans: string[];
}

const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));

/** version INTEGER 0 (v1). */
const VERSION_1 = hex('020100');
/** Subject attribute types taken here (2.5.4.x), by their OID's DER. */
const SUBJECT_ATTRIBUTE_OIDS: readonly Uint8Array[] = [
  hex('0603550406'), // C
  hex('0603550403'), // CN
  hex('0603550407'), // L
  hex('0603550408'), // ST
  hex('060355040a'), // O
  hex('060355040b'), // OU
];
const COMMON_NAME_OID = hex('0603550403');
const EXTENSION_REQUEST_OID = hex('06092a864886f70d01090e');
const SUBJECT_ALT_NAME_OID = hex('0603551d11');
const BOOLEAN_TRUE = hex('0101ff');
/**
 * Signature AlgorithmIdentifiers taken here, DER → OID (the keys of
 * CSR_RULES.signatureAlgorithms): ECDSA and Ed25519 without parameters, RSA with NULL or none.
 */
const SIGNATURE_ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ['300a06082a8648ce3d040302', '1.2.840.10045.4.3.2'],
  ['300a06082a8648ce3d040303', '1.2.840.10045.4.3.3'],
  ['300a06082a8648ce3d040304', '1.2.840.10045.4.3.4'],
  ['300d06092a864886f70d01010b0500', '1.2.840.113549.1.1.11'],
  ['300d06092a864886f70d01010c0500', '1.2.840.113549.1.1.12'],
  ['300d06092a864886f70d01010d0500', '1.2.840.113549.1.1.13'],
  ['300b06092a864886f70d01010b', '1.2.840.113549.1.1.11'],
  ['300b06092a864886f70d01010c', '1.2.840.113549.1.1.12'],
  ['300b06092a864886f70d01010d', '1.2.840.113549.1.1.13'],
  ['300506032b6570', '1.3.101.112'],
]);

/** Not the common shape: the schema parse decides. Never leaves this module. */
class NotCommon extends Error {}

/** The CSR's fields when `der` has the common shape; `undefined` for anything else. */
export function recognizeCommonCsr(der: Uint8Array): CommonCsr | undefined {
  try {
    return walk(der);
  } catch {
    // NotCommon, or a DER header readDerElement refuses (BER, truncation): either way the
    // schema parse runs and gives the reference's answer.
    return undefined;
  }
}

function walk(der: Uint8Array): CommonCsr {
  const outer = readDerElement(der, 0);
  expect(der[outer.start] === TAG.SEQUENCE && outer.end === der.length);
  const [info, sigAlg, sig] = fields(der, outer, [TAG.SEQUENCE, TAG.SEQUENCE, TAG.BIT_STRING]);
  const [version, subject, spki, attributes] = fields(der, info, [
    TAG.INTEGER,
    TAG.SEQUENCE,
    TAG.SEQUENCE,
    TAG.CONTEXT_0_CONSTRUCTED, // attributes: [0] IMPLICIT SET OF Attribute
  ]);
  expect(derElementEquals(der, version, VERSION_1));
  const commonName = commonNameOf(der, subject);
  const spkiBytes = der.subarray(spki.start, spki.end);
  expect(isCanonicalP256Spki(spkiBytes) || isRsaSpki(der, spki));
  const requestedSans = requestedSansOf(der, attributes);
  const signatureAlgorithm = SIGNATURE_ALGORITHMS.get(
    Buffer.from(der.buffer, der.byteOffset + sigAlg.start, sigAlg.end - sigAlg.start).toString(
      'hex',
    ),
  );
  expect(signatureAlgorithm !== undefined);
  expect(sig.end - sig.contentStart >= 2 && der[sig.contentStart] === 0);
  return {
    structure: {
      tbs: der.subarray(info.start, info.end),
      spki: der.slice(spki.start, spki.end),
      signatureAlgorithm,
      signature: der.subarray(sig.contentStart + 1, sig.end),
      // Only canonical P-256 and rsaEncryption keys are recognised: both pass rule 4's check.
      checkKeyAlgorithm: () => undefined,
    },
    commonName,
    requestedSans,
  };
}

function expect(condition: boolean): asserts condition {
  if (!condition) throw new NotCommon();
}

/** The children of `parent`, exactly as many as `tags` and with those tags. */
function fields<const Tags extends readonly number[]>(
  der: Uint8Array,
  parent: DerElement,
  tags: Tags,
): { [K in keyof Tags]: DerElement } {
  const children = derChildren(der, parent);
  expect(children.length === tags.length);
  children.forEach((c, i) => expect(der[c.start] === tags[i]));
  // One child per tag: the length was checked above.
  return children as { [K in keyof Tags]: DerElement };
}

/** The `i`th of `elements`; not common when there is none. */
function nth(elements: readonly DerElement[], i: number): DerElement {
  const element = elements[i];
  expect(element !== undefined);
  return element;
}

/** The contents as text when every byte is printable ASCII (0x20–0x7e); otherwise not common. */
function printableAscii(der: Uint8Array, el: DerElement): string {
  let s = '';
  for (let i = el.contentStart; i < el.end; i++) {
    const b = der[i];
    expect(b !== undefined && b >= 0x20 && b <= 0x7e);
    s += String.fromCharCode(b);
  }
  return s;
}

/** Subject: RDNs of one AttributeTypeAndValue each; the first CN's value, if any. */
function commonNameOf(der: Uint8Array, subject: DerElement): string | undefined {
  let commonName: string | undefined;
  for (const rdn of derChildren(der, subject)) {
    expect(der[rdn.start] === TAG.SET);
    const [atv] = fields(der, rdn, [TAG.SEQUENCE]);
    const parts = derChildren(der, atv);
    expect(parts.length === 2);
    const [type, value] = parts as [DerElement, DerElement];
    expect(SUBJECT_ATTRIBUTE_OIDS.some((oid) => derElementEquals(der, type, oid)));
    const tag = der[value.start];
    expect(tag === TAG.UTF8_STRING || tag === TAG.PRINTABLE_STRING);
    const text = printableAscii(der, value);
    if (commonName === undefined && derElementEquals(der, type, COMMON_NAME_OID)) commonName = text;
  }
  return commonName;
}

/** SubjectPublicKeyInfo { rsaEncryption NULL, BIT STRING with no unused bits }. */
function isRsaSpki(der: Uint8Array, spki: DerElement): boolean {
  const [alg, key] = fields(der, spki, [TAG.SEQUENCE, TAG.BIT_STRING]);
  return (
    derElementEquals(der, alg, RSA_ENCRYPTION_ALGORITHM) &&
    key.end - key.contentStart >= 2 &&
    der[key.contentStart] === 0
  );
}

/** Attributes: none, or one extensionRequest holding exactly one subjectAltName. */
function requestedSansOf(der: Uint8Array, attributes: DerElement): string[] {
  const attrs = derChildren(der, attributes);
  if (attrs.length === 0) return [];
  expect(attrs.length === 1 && der[nth(attrs, 0).start] === TAG.SEQUENCE);
  const [type, values] = fields(der, nth(attrs, 0), [TAG.OID, TAG.SET]);
  expect(derElementEquals(der, type, EXTENSION_REQUEST_OID));
  const [extensions] = fields(der, values, [TAG.SEQUENCE]);
  const [extension] = fields(der, extensions, [TAG.SEQUENCE]);
  const parts = derChildren(der, extension);
  expect(parts.length === 2 || parts.length === 3);
  expect(derElementEquals(der, nth(parts, 0), SUBJECT_ALT_NAME_OID));
  // critical: absent (DER's encoding of the default FALSE) or TRUE.
  if (parts.length === 3) expect(derElementEquals(der, nth(parts, 1), BOOLEAN_TRUE));
  const extnValue = nth(parts, parts.length - 1);
  expect(der[extnValue.start] === TAG.OCTET_STRING);
  const names = readDerElement(der, extnValue.contentStart);
  expect(der[names.start] === TAG.SEQUENCE && names.end === extnValue.end);
  const sans: string[] = [];
  for (const name of derChildren(der, names)) {
    const tag = der[name.start];
    expect(tag === TAG.SAN_DNS || tag === TAG.SAN_URI);
    sans.push(printableAscii(der, name));
  }
  expect(sans.length > 0);
  return sans;
}
