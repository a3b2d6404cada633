import { AsnConvert } from '@peculiar/asn1-schema';
import { type CertificationRequest } from '@peculiar/asn1-csr';
import { Extensions, SubjectAlternativeName, id_ce_subjectAltName } from '@peculiar/asn1-x509';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from '@peculiar/x509';
import {
  CSR_RULES,
  csrDerFromPem,
  csrStructureFromSchema,
  csrSubjectError,
  proofOfPossessionFailed,
  verifyCsrStructure,
  type CheckedCsr,
  type CsrStructure,
} from '../csr.js';
import type { CsrKeyType } from '../key-type.js';
import { recognizeCommonCsr } from './common-csr.js';
import { publicKeyFromSpki } from '../keys.js';
import {
  NATIVE_P256,
  P256_BAD_POINT,
  P256_BAD_SIGNATURE,
  P256_VALID,
  type NativeP256Verify,
} from './native-p256.js';
import {
  isCanonicalP256Spki,
  IMPORTS_FROM_COMPONENTS,
  p256PointOf,
  publicKeyFromSpkiFast,
  publicKeyFromSpkiRaw,
} from './p256-spki.js';

/** A CSR key import: canonical P-256 and RSA keys from their components where that pays (p256-spki.ts). */
const importCsrKey = IMPORTS_FROM_COMPONENTS ? publicKeyFromSpkiFast : publicKeyFromSpki;

/**
 * The hot-path CSR parser: the rules of src/pki/csr.ts (CSR_RULES, in the same order, with the
 * same error kinds). The common shape (common-csr.ts) is read from the DER headers without an
 * ASN.1 object tree; anything else gets one schema parse (@peculiar/asn1-csr) instead of the
 * reference's second one through @peculiar/x509's object model. The differential fuzz test
 * (test/pki/fast/fast-csr.test.ts) holds it to the reference parseCsr.
 *
 * Rule 7 (subject and requested SANs) is where @peculiar/x509 does the most: it interprets every
 * attribute and every requested extension with its own class. The fast path handles the shape
 * real sidecars send — at most an extensionRequest holding non-registered extensions and a SAN of
 * DNS names and URIs — and hands anything else to the same @peculiar/x509 code the reference
 * runs, so rare shapes are accepted or refused exactly as there.
 */
const OID_COMMON_NAME = '2.5.4.3';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_CHALLENGE_PASSWORD = '1.2.840.113549.1.9.7';
/** Extensions @peculiar/x509 interprets with a class of its own (ExtensionFactory). */
const INTERPRETED_EXTENSIONS = new Set([
  '2.5.29.32', // certificatePolicies
  '2.5.29.19', // basicConstraints
  '2.5.29.37', // extKeyUsage
  '2.5.29.15', // keyUsage
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.31', // cRLDistributionPoints
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
  '2.5.29.18', // issuerAltName
]);

/** Not the common shape: let @peculiar/x509 decide, as the reference does. */
class NeedsReference extends Error {}

function commonNameOf(asn: CertificationRequest): string | undefined {
  for (const rdn of asn.certificationRequestInfo.subject) {
    for (const atv of rdn) {
      if (atv.type === OID_COMMON_NAME) return atv.value.toString();
    }
  }
  return undefined;
}

function requestedSansFast(asn: CertificationRequest): string[] {
  let extensionRequest: ArrayBuffer | undefined;
  let seen = false;
  for (const attr of asn.certificationRequestInfo.attributes) {
    if (attr.type === OID_CHALLENGE_PASSWORD) throw new NeedsReference();
    if (attr.type === OID_EXTENSION_REQUEST) {
      // @peculiar/x509 interprets every extensionRequest attribute; take only the simple case.
      if (seen) throw new NeedsReference();
      seen = true;
      extensionRequest = attr.values[0];
    }
  }
  if (!extensionRequest) return [];
  const extensions = AsnConvert.parse(extensionRequest, Extensions);
  const sans: string[] = [];
  let sanSeen = false;
  for (const ext of extensions) {
    if (INTERPRETED_EXTENSIONS.has(ext.extnID)) throw new NeedsReference();
    if (ext.extnID !== id_ce_subjectAltName) continue;
    // Every SAN extension is interpreted; the first one is reported.
    const names = AsnConvert.parse(ext.extnValue, SubjectAlternativeName);
    for (const n of names) {
      const value = n.dNSName ?? n.uniformResourceIdentifier;
      if (value === undefined) throw new NeedsReference();
      if (!sanSeen) sans.push(value);
    }
    sanSeen = true;
  }
  return sans;
}

/** Rule 7 exactly as the reference runs it, for shapes the fast path does not take. */
function requestedSansReference(asn: CertificationRequest): string[] {
  const csr = new Pkcs10CertificateRequest(asn);
  const sans: string[] = [];
  const san = csr.getExtension(id_ce_subjectAltName);
  if (san instanceof SubjectAlternativeNameExtension)
    for (const n of san.names.items) sans.push(n.value);
  return sans;
}

const CSR_BEGIN = `-----BEGIN ${CSR_RULES.pemLabel}-----\n`;
const CSR_END = `-----END ${CSR_RULES.pemLabel}-----\n`;
/**
 * The body every CSR writer we know emits (openssl, Go's encoding/pem, our agent): full
 * 64-column lines, then a last line of whole 4-character groups with its padding, each line
 * ending "\n". Base64 that csrDerFromPem accepts too: canonical, padded only at its end, and a
 * multiple of 4 long.
 */
const CANONICAL_BODY =
  /^(?:[A-Za-z0-9+/]{64}\n)*(?:[A-Za-z0-9+/]{4}){0,15}(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)\n$/;

/**
 * Rules 1–2 (csrDerFromPem) for the canonical layout without splitting the text into lines and
 * blocks: ≈ 0.8 µs against ≈ 3.2 µs (Node 20.20, P-256 CSR). What it takes, csrDerFromPem
 * accepts with the same bytes (Buffer's base64 decoder skips the line breaks); anything else
 * goes to csrDerFromPem itself, so refusals keep their rule and message.
 */
function csrDerFromPemFast(pem: string): Uint8Array {
  if (pem.length <= CSR_RULES.maxPemLength && pem.startsWith(CSR_BEGIN) && pem.endsWith(CSR_END)) {
    const body = pem.slice(CSR_BEGIN.length, pem.length - CSR_END.length);
    if (CANONICAL_BODY.test(body)) return new Uint8Array(Buffer.from(body, 'base64'));
  }
  return csrDerFromPem(pem);
}

/**
 * Parses a PEM CSR and verifies its self-signature, following CSR_RULES (src/pki/csr.ts).
 * `p256`: the native P-256 check (native-p256.ts), where it was built; undefined checks every key
 * with node:crypto.
 */
export function parseCsrFast(
  pem: string,
  p256: NativeP256Verify | undefined = NATIVE_P256.verify,
): CheckedCsr {
  // 1–2. Size, PEM.
  return parseCsrDerFast(csrDerFromPem(pem), p256);
}

/**
 * parseCsrFast where the key import may be asynchronous (the crypto thread). Without the native
 * check, the common shape with a canonical P-256 key has its key imported through WebCrypto `raw`
 * (p256-spki.ts), the cheapest import on OpenSSL 3.0; everything else, and every CSR where
 * OpenSSL's DER import is the cheaper (IMPORTS_FROM_COMPONENTS false: OpenSSL 3.5), is
 * parseCsrFast's path. The import runs first, but its outcome is only read where rule 4 reads the
 * key, so a CSR that breaks an earlier rule is refused with that rule's error, as in parseCsrFast.
 */
export async function parseCsrFastAsync(
  pem: string,
  p256: NativeP256Verify | undefined = NATIVE_P256.verify,
): Promise<CheckedCsr> {
  const der = csrDerFromPemFast(pem);
  const common = recognizeCommonCsr(der);
  if (p256 || !common || !IMPORTS_FROM_COMPONENTS || !isCanonicalP256Spki(common.structure.spki)) {
    return parseCsrDerFast(der, p256, common);
  }
  const { structure, commonName, requestedSans } = common;
  const imported = await publicKeyFromSpkiRaw(structure.spki, 'CSR').then(
    (key) => ({ key }),
    (error: unknown) => ({ error }),
  );
  const { keyType } = verifyCsrStructure(structure, () => {
    if ('error' in imported) throw imported.error;
    return imported.key;
  });
  return checkedCsr(der, structure, keyType, commonName, requestedSans);
}

/** Rules 3–7 of parseCsrFast on the DER (`common`: recognizeCommonCsr's answer, if asked). */
function parseCsrDerFast(
  der: Uint8Array,
  p256: NativeP256Verify | undefined,
  common = recognizeCommonCsr(der),
): CheckedCsr {
  // The common shape: rules 3 and 7 are read off the DER; 4–6 are the shared ones.
  if (common) {
    const { structure, commonName, requestedSans } = common;
    return checkedCsr(der, structure, verifyCsrKey(structure, p256), commonName, requestedSans);
  }

  // 3–6 with the schema parse.
  const { structure, asn } = csrStructureFromSchema(der, () => undefined);
  const keyType = verifyCsrKey(structure, p256);

  // 7. Subject and requested SANs.
  let commonName: string | undefined;
  let requestedSans: string[];
  try {
    commonName = commonNameOf(asn);
    try {
      requestedSans = requestedSansFast(asn);
    } catch (e) {
      if (!(e instanceof NeedsReference)) throw e;
      requestedSans = requestedSansReference(asn);
    }
  } catch (e) {
    throw csrSubjectError(e);
  }
  return checkedCsr(der, structure, keyType, commonName, requestedSans);
}

/** The SHA-2 digest of each ECDSA signature algorithm CSR_RULES takes, by OID. */
const ECDSA_DIGEST_BITS: ReadonlyMap<string, 256 | 384 | 512> = new Map(
  Object.entries(CSR_RULES.signatureAlgorithms).flatMap(([oid, { family, hash }]) => {
    const bits = hash === 'sha256' ? 256 : hash === 'sha384' ? 384 : hash === 'sha512' ? 512 : 0;
    return family === 'ec' && bits ? [[oid, bits] as const] : [];
  }),
);

/**
 * Rules 4–6 (verifyCsrStructure's): a canonical P-256 key under an ECDSA signature algorithm by
 * the native check, anything else — and any point the native check does not take, so that the
 * import reports it as the reference does — through node:crypto's import (importCsrKey).
 */
function verifyCsrKey(structure: CsrStructure, p256: NativeP256Verify | undefined): CsrKeyType {
  const digestBits = p256 && ECDSA_DIGEST_BITS.get(structure.signatureAlgorithm);
  if (p256 && digestBits && isCanonicalP256Spki(structure.spki)) {
    structure.checkKeyAlgorithm();
    let outcome: number;
    try {
      outcome = p256(p256PointOf(structure.spki), structure.tbs, structure.signature, digestBits);
    } catch {
      outcome = P256_BAD_POINT; // not expected (it throws only on bad argument types): node decides
    }
    if (outcome === P256_VALID) return 'ec-p256';
    if (outcome === P256_BAD_SIGNATURE) throw proofOfPossessionFailed();
    // P256_BAD_POINT, or OpenSSL could not check it: the import below decides, as the reference.
  }
  return verifyCsrStructure(structure, importCsrKey).keyType;
}

function checkedCsr(
  der: Uint8Array,
  structure: CsrStructure,
  keyType: CsrKeyType,
  commonName: string | undefined,
  requestedSans: string[],
): CheckedCsr {
  return {
    der,
    spki: structure.spki,
    keyType,
    ...(commonName !== undefined ? { commonName } : {}),
    requestedSans,
  };
}
