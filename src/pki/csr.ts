import { verify, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { type SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import { ECParameters } from '@peculiar/asn1-ecc';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from '@peculiar/x509';
import { CastellanError, type ErrorKind } from '../errors.js';
import { derChildren, requireSingleDerElement } from './der.js';
import type { CsrKeyType } from './key-type.js';
import { publicKeyFromSpki } from './keys.js';
import { pemBlocks } from './pem.js';

/** A CSR that passed every rule below, proof of possession included. */
export interface ParsedCsr {
  readonly der: Uint8Array;
  /** The SubjectPublicKeyInfo DER, verbatim as signed in the CSR. */
  readonly spki: Uint8Array;
  readonly publicKey: KeyObject;
  readonly keyType: CsrKeyType;
  /** The subject's first CN, when there is one (Istio then sets CN = first SAN). */
  readonly commonName?: string;
  /**
   * SANs the CSR asks for (extensionRequest), as text: URIs, DNS names, IP addresses. For
   * logs only: the CA ignores them and uses the authenticated identity.
   */
  readonly requestedSans: string[];
}

/**
 * A checked CSR as issuance uses it: ParsedCsr without its KeyObject. The hot-path parser checks
 * most keys without making one (src/pki/fast/native-p256.ts), and issuance copies the
 * SubjectPublicKeyInfo bytes: it never needs the key.
 */
export type CheckedCsr = Omit<ParsedCsr, 'publicKey'>;

/**
 * The CSR acceptance rules. Every CSR parser in Castellan (this reference one and the fast one
 * in src/pki/fast/) applies them in this order and reports the first that fails with the same
 * error kind:
 *
 *  1. `too-large`     the PEM text is longer than `maxPemLength` characters.
 *  2. `malformed`     not exactly one PEM block labelled `CERTIFICATE REQUEST` with only
 *                     whitespace around it; bad base64.
 *  3. `malformed`     the DER is not one element (trailing bytes, truncation, BER lengths), or
 *                     does not parse as a PKCS#10 CertificationRequest, or version ≠ 0 (v1).
 *  4. `unsupported`   the SubjectPublicKeyInfo algorithm is not rsaEncryption,
 *                     id-ecPublicKey with a namedCurve of P-256/P-384, or Ed25519.
 *     `malformed`     node:crypto cannot read the key.
 *     `weak-key`      RSA modulus below 2048 bits; RSA public exponent even or below 3.
 *     `unsupported`   RSA modulus above 8192 bits (MAX_CSR_RSA_BITS); RSA public exponent
 *                     above 2^31 - 1 (MAX_CSR_RSA_EXPONENT, as Go's crypto/rsa).
 *  5. `unsupported`   the signature algorithm is not one of `signatureAlgorithms` (no SHA-1,
 *                     no RSA-PSS); its parameters are not examined.
 *  6. `bad-signature` the signature algorithm's key family does not match the key, or the
 *                     signature over the CertificationRequestInfo bytes (as received) fails.
 *  7. `malformed`     the subject or the extensionRequest attribute does not parse.
 */
export const CSR_RULES = {
  maxPemLength: 16 * 1024,
  pemLabel: 'CERTIFICATE REQUEST',
  /** SubjectPublicKeyInfo algorithm OIDs. */
  keyAlgorithms: {
    rsaEncryption: '1.2.840.113549.1.1.1',
    ecPublicKey: '1.2.840.10045.2.1',
    ed25519: '1.3.101.112',
  },
  /** Named curves accepted with id-ecPublicKey. */
  namedCurves: {
    '1.2.840.10045.3.1.7': 'P-256',
    '1.3.132.0.34': 'P-384',
  } as Readonly<Record<string, string>>,
  /** Signature algorithm OID → key family and node:crypto digest (null for Ed25519). */
  signatureAlgorithms: {
    '1.2.840.113549.1.1.11': { family: 'rsa', hash: 'sha256' },
    '1.2.840.113549.1.1.12': { family: 'rsa', hash: 'sha384' },
    '1.2.840.113549.1.1.13': { family: 'rsa', hash: 'sha512' },
    '1.2.840.10045.4.3.2': { family: 'ec', hash: 'sha256' },
    '1.2.840.10045.4.3.3': { family: 'ec', hash: 'sha384' },
    '1.2.840.10045.4.3.4': { family: 'ec', hash: 'sha512' },
    '1.3.101.112': { family: 'ed25519', hash: null },
  } as Readonly<Record<string, { family: 'rsa' | 'ec' | 'ed25519'; hash: string | null }>>,
} as const;

const SUBJECT = 'CSR';
const SAN_OID = '2.5.29.17';

function fail(kind: ErrorKind, message: string, cause?: unknown): CastellanError {
  return new CastellanError(kind, message, { subject: SUBJECT, cause });
}

/** Rule 4's algorithm check, on the parsed SubjectPublicKeyInfo (before node reads the key). */
function checkSpkiAlgorithm(spki: SubjectPublicKeyInfo): void {
  const oid = spki.algorithm.algorithm;
  const { rsaEncryption, ecPublicKey, ed25519 } = CSR_RULES.keyAlgorithms;
  if (oid === rsaEncryption || oid === ed25519) return;
  if (oid === ecPublicKey) {
    let curve: string | undefined;
    try {
      const params = spki.algorithm.parameters;
      curve = params ? AsnConvert.parse(params, ECParameters).namedCurve : undefined;
    } catch {
      curve = undefined;
    }
    if (curve !== undefined && CSR_RULES.namedCurves[curve]) return;
    throw fail(
      'unsupported',
      `ECDSA key on curve ${curve ?? '(not a named curve)'}: use P-256 or P-384`,
    );
  }
  throw fail('unsupported', `public key algorithm ${oid} is not supported`);
}

/**
 * What rule 3 reads from a CertificationRequest, whichever way it was read: the signed bytes and
 * the SubjectPublicKeyInfo verbatim, the signature algorithm and value, and rule 4's algorithm
 * check (which needs the parsed AlgorithmIdentifier).
 */
export interface CsrStructure {
  /** The CertificationRequestInfo DER, as received: what the signature covers. */
  readonly tbs: Uint8Array;
  /** The SubjectPublicKeyInfo DER, as received. */
  readonly spki: Uint8Array;
  readonly signatureAlgorithm: string;
  /** The signature BIT STRING's bits (whole bytes). */
  readonly signature: Uint8Array;
  /** Rule 4's first step: throws `unsupported` for a key algorithm or curve we do not take. */
  checkKeyAlgorithm(): void;
}

/** Reads the SubjectPublicKeyInfo DER into a node:crypto key (rule 4, after the algorithm check). */
export type SpkiReader = (
  spki: Uint8Array,
  subject: string,
) => { publicKey: KeyObject; keyType: CsrKeyType };

/** Rules 1–2: size, then exactly one `CERTIFICATE REQUEST` PEM block; returns its DER. */
export function csrDerFromPem(pem: string): Uint8Array {
  if (pem.length > CSR_RULES.maxPemLength) {
    throw fail('too-large', `CSR of ${pem.length} characters: at most ${CSR_RULES.maxPemLength}`);
  }
  const blocks = pemBlocks(pem, { subject: SUBJECT, strict: true });
  const block = blocks[0];
  if (blocks.length !== 1 || block === undefined)
    throw fail('malformed', `expected one PEM block, found ${blocks.length}`);
  if (block.label !== CSR_RULES.pemLabel) {
    throw fail('malformed', `expected a "${CSR_RULES.pemLabel}" PEM block, found "${block.label}"`);
  }
  return block.der;
}

/**
 * Rule 3 with the @peculiar/asn1-csr schema: one schema parse (`onParsed` runs inside it, so
 * whatever it throws is `malformed` too); the signed bytes and the SPKI are taken verbatim.
 */
export function csrStructureFromSchema<T>(
  der: Uint8Array,
  onParsed: (asn: CertificationRequest) => T,
): { structure: CsrStructure; asn: CertificationRequest; parsed: T } {
  const outer = requireSingleDerElement(der, SUBJECT);
  let asn: CertificationRequest;
  let parsed: T;
  try {
    asn = AsnConvert.parse(der, CertificationRequest);
    parsed = onParsed(asn);
  } catch (e) {
    throw fail('malformed', 'not a PKCS#10 certificate request', e);
  }
  const info = asn.certificationRequestInfo;
  if (info.version !== 0) throw fail('malformed', `unknown CSR version ${info.version}`);
  const infoEl = derChildren(der, outer, SUBJECT)[0];
  const spkiEl = infoEl ? derChildren(der, infoEl, SUBJECT)[2] : undefined;
  if (!infoEl || !spkiEl) throw fail('malformed', 'CertificationRequestInfo has no public key');
  const structure: CsrStructure = {
    tbs: der.subarray(infoEl.start, infoEl.end),
    spki: der.slice(spkiEl.start, spkiEl.end),
    signatureAlgorithm: asn.signatureAlgorithm.algorithm,
    signature: new Uint8Array(asn.signature),
    checkKeyAlgorithm: () => checkSpkiAlgorithm(info.subjectPKInfo),
  };
  return { structure, asn, parsed };
}

/** Rules 4–6 on a CSR's structure: public key, signature algorithm, proof of possession. */
export function verifyCsrStructure(
  structure: CsrStructure,
  readKey: SpkiReader,
): { publicKey: KeyObject; keyType: CsrKeyType } {
  // 4. Public key.
  structure.checkKeyAlgorithm();
  const { publicKey, keyType } = readKey(structure.spki, SUBJECT);

  // 5–6. Signature.
  const sigOid = structure.signatureAlgorithm;
  const sigAlg = CSR_RULES.signatureAlgorithms[sigOid];
  if (!sigAlg) throw fail('unsupported', `signature algorithm ${sigOid} is not supported`);
  const family = keyType.startsWith('rsa') ? 'rsa' : keyType.startsWith('ec') ? 'ec' : 'ed25519';
  if (sigAlg.family !== family) {
    throw fail('bad-signature', `a ${sigAlg.family} signature algorithm with a ${family} key`);
  }
  let valid: boolean;
  try {
    valid = verify(
      sigAlg.hash,
      structure.tbs,
      family === 'ec' ? { key: publicKey, dsaEncoding: 'der' } : publicKey,
      structure.signature,
    );
  } catch {
    valid = false;
  }
  if (!valid) throw proofOfPossessionFailed();
  return { publicKey, keyType };
}

/** Rule 6 failing: the signature over the CertificationRequestInfo does not verify. */
export function proofOfPossessionFailed(): CastellanError {
  return fail('bad-signature', 'the CSR signature does not verify (proof of possession failed)');
}

/** The ParsedCsr of a CSR that passed rules 1–6 and what rule 7 read from it. */
export function toParsedCsr(
  verified: Pick<ParsedCsr, 'der' | 'spki' | 'publicKey' | 'keyType'>,
  commonName: string | undefined,
  requestedSans: string[],
): ParsedCsr {
  const { der, spki, publicKey, keyType } = verified;
  return {
    der,
    spki,
    publicKey,
    keyType,
    ...(commonName !== undefined ? { commonName } : {}),
    requestedSans,
  };
}

/** Rule 7 failing: the subject or the extensionRequest attribute does not parse. */
export function csrSubjectError(cause: unknown): CastellanError {
  return fail('malformed', 'the CSR subject or requested extensions do not parse', cause);
}

/**
 * Parses a PEM CSR and verifies its self-signature (proof of possession), following
 * CSR_RULES. The reference implementation: clear rather than fast (@peculiar/x509's object
 * model for rule 7).
 */
export function parseCsr(pem: string): ParsedCsr {
  // 1–6: the steps the fast parser shares (src/pki/fast/fast-csr.ts), with the schema parse.
  const der = csrDerFromPem(pem);
  const { structure, parsed: csr } = csrStructureFromSchema(
    der,
    (asn) => new Pkcs10CertificateRequest(asn),
  );
  const { publicKey, keyType } = verifyCsrStructure(structure, publicKeyFromSpki);

  // 7. Subject and requested SANs.
  let commonName: string | undefined;
  const requestedSans: string[] = [];
  try {
    commonName = csr.subjectName.getField('CN')[0];
    const san = csr.getExtension(SAN_OID);
    if (san instanceof SubjectAlternativeNameExtension)
      for (const n of san.names.items) requestedSans.push(n.value);
  } catch (e) {
    throw csrSubjectError(e);
  }
  return toParsedCsr({ der, spki: structure.spki, publicKey, keyType }, commonName, requestedSans);
}
