import { createHash } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  GeneralName,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
} from '@peculiar/x509';
import { id_ecdsaWithSHA256, id_ecdsaWithSHA384 } from '@peculiar/asn1-ecc';
import { id_sha256WithRSAEncryption } from '@peculiar/asn1-rsa';
import { CastellanError } from '../errors.js';
import type { KeyType } from './key-type.js';

/**
 * Certificate profiles: what each kind of certificate Castellan makes contains. issue.ts turns
 * a profile into a certificate; the fast leaf signer (src/pki/fast/) must reproduce the
 * workload profile byte for byte, so every encoding choice is written down here.
 *
 * Common to all profiles:
 *  - X.509 v3; serial from randomSerial() (17 bytes, first byte 0x01–0x7f: positive, DER
 *    INTEGER of exactly 17 content bytes, ≥ 128 random bits); validity in whole seconds, UTCTime up to 2049 and
 *    GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
 *  - The issuer Name is the issuing certificate's subject, re-encoded from its parsed form
 *    (attribute string types kept), so it matches the issuer's subject byte for byte.
 *  - Signature: ecdsa-with-SHA256 for P-256 issuers, ecdsa-with-SHA384 for P-384 issuers (no
 *    parameters), sha256WithRSAEncryption for RSA issuers (NULL parameters).
 *  - Subject attributes: PrintableString when the value fits it, else UTF8String.
 *  - SKI = SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2 method 1);
 *    AKI = keyIdentifier [0] only, equal to the issuer's SKI (or, when the issuer has none,
 *    as in Istio's 2018 sample CA, the SHA-1 of the issuer's public key, computed the same way).
 *
 * Workload leaf (Istio's profile), extensions in this order:
 *  1. keyUsage, critical: digitalSignature + keyEncipherment (BIT STRING 05 a0)
 *  2. extKeyUsage, not critical: serverAuth, clientAuth (in that order)
 *  3. basicConstraints, critical: CA:FALSE, encoded as an empty SEQUENCE (DER omits the default)
 *  4. subjectKeyIdentifier, not critical
 *  5. authorityKeyIdentifier, not critical
 *  6. subjectAltName, critical (the subject is empty, RFC 5280 §4.2.1.6), names in request
 *     order: URI [6] for `scheme://…`, iPAddress [7] (4 or 16 bytes) for IP addresses,
 *     dNSName [2] otherwise. At least one SAN; each printable ASCII (0x21–0x7e), else
 *     `invalid-argument`.
 *  Subject: empty SEQUENCE, or a single CN when the CSR carried one (Istio: CN = first SAN,
 *  omitted when longer than 64 characters: dualUseCommonName).
 *
 * Serving certificate (the CA's own TLS certificate): the workload layout with DNS and IP SANs
 * only; serverAuth + clientAuth.
 *
 * Root: self-signed; basicConstraints critical CA:TRUE (no path length); keyUsage critical
 * keyCertSign + cRLSign; SKI; AKI = own SKI (as `openssl req -x509` writes it).
 * Intermediate: basicConstraints critical CA:TRUE, pathlen 0 by default; keyUsage critical
 * keyCertSign + cRLSign; SKI; AKI = issuer's SKI.
 */
export type CertificateProfile =
  | {
      readonly kind: 'workload';
      readonly sans: readonly string[];
      readonly commonName?: string | undefined;
    }
  | {
      readonly kind: 'serving';
      /** DNS names and IP addresses, in order. */
      readonly sans: readonly string[];
      readonly commonName?: string | undefined;
    }
  | { readonly kind: 'root'; readonly subject: SubjectName }
  | {
      readonly kind: 'intermediate';
      readonly subject: SubjectName;
      /** basicConstraints pathLenConstraint; 0 (the default) = may only sign leaves. */
      readonly pathLength?: number;
    };

/**
 * Subject attributes in order, e.g. [['O', 'Istio'], ['CN', 'Root CA']]; attribute names as
 * @peculiar/x509 reads them (CN, O, OU, L, ST, C, or a dotted OID).
 */
export type SubjectName = readonly (readonly [string, string])[];

export type SanKind = 'uri' | 'ip' | 'dns';

/**
 * RFC 5280's upper bound on a common name (ub-common-name, Appendix A.1): no certificate made
 * here carries a longer CN — checkCommonName refuses one in every profile, the fast leaf
 * template included.
 */
export const MAX_COMMON_NAME_LENGTH = 64;

/** Refuses a CN longer than RFC 5280 allows (`invalid-argument`, naming its length). */
export function checkCommonName(cn: string): string {
  // UTF-16 units are never fewer than characters: the common case costs one comparison.
  if (cn.length <= MAX_COMMON_NAME_LENGTH) return cn;
  // Characters as RFC 5280 counts them: code points, not UTF-16 units.
  const length = Array.from(cn).length;
  if (length > MAX_COMMON_NAME_LENGTH) {
    throw new CastellanError(
      'invalid-argument',
      `common name "${cn}" is ${length} characters long; RFC 5280 allows at most ${MAX_COMMON_NAME_LENGTH}`,
    );
  }
  return cn;
}

/**
 * A workload leaf's CN, as istiod's DualUseCommonName sets it (security/pkg/pki/util/dual_use.go,
 * used by genCertTemplateFromCSR when the CSR has a CN): the first SAN, or no CN at all when that
 * is longer than 64 characters — istiod logs it and issues the certificate without a CN, and so
 * do we; a SPIFFE ID of a long namespace or service account name easily is.
 */
export function dualUseCommonName(firstSan: string): string | undefined {
  try {
    return checkCommonName(firstSan);
  } catch {
    return undefined;
  }
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-fA-F:]+$/;
const URI = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//;

function isIpv6(text: string): boolean {
  if (!IPV6.test(text) || !text.includes(':')) return false;
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = halves.flatMap((h) => (h === '' ? [] : h.split(':')));
  if (groups.some((g) => g.length < 1 || g.length > 4)) return false;
  return halves.length === 2 ? groups.length < 8 : groups.length === 8;
}

/** How a SAN string is encoded: URI for `scheme://…`, IP for addresses, DNS otherwise. */
export function sanKind(san: string): SanKind {
  if (URI.test(san)) return 'uri';
  if (IPV4.test(san) || isIpv6(san)) return 'ip';
  return 'dns';
}

/** At least one SAN, each printable ASCII (0x21–0x7e): else `invalid-argument`. */
export function checkSans(sans: readonly string[]): void {
  if (sans.length === 0) {
    throw new CastellanError('invalid-argument', 'a certificate needs at least one SAN');
  }
  for (const s of sans) {
    // IA5String: ASCII only; no spaces or controls in any of the three forms.
    if (!/^[\x21-\x7e]+$/.test(s)) {
      throw new CastellanError('invalid-argument', `SAN "${s}" is not printable ASCII`);
    }
  }
}

export function generalNameOf(san: string): GeneralName {
  const kind = sanKind(san);
  return new GeneralName(kind === 'uri' ? 'url' : kind, san);
}

/** SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2, method 1). */
export function keyIdentifier(spki: Uint8Array | ArrayBuffer): Uint8Array {
  const parsed = AsnConvert.parse(spki, SubjectPublicKeyInfo);
  return new Uint8Array(
    createHash('sha1').update(new Uint8Array(parsed.subjectPublicKey)).digest(),
  );
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The extensions of a profile, in the documented order. */
export function profileExtensions(
  profile: CertificateProfile,
  subjectKeyId: Uint8Array,
  authorityKeyId: Uint8Array,
): Extension[] {
  const ski = new SubjectKeyIdentifierExtension(hex(subjectKeyId));
  const aki = new AuthorityKeyIdentifierExtension(hex(authorityKeyId));
  switch (profile.kind) {
    case 'workload':
    case 'serving': {
      checkSans(profile.sans);
      if (profile.kind === 'serving' && profile.sans.some((s) => sanKind(s) === 'uri')) {
        throw new CastellanError(
          'invalid-argument',
          'serving certificates take DNS names and IP addresses only',
        );
      }
      return [
        new KeyUsagesExtension(
          KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment,
          true,
        ),
        new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth]),
        new BasicConstraintsExtension(false, undefined, true),
        ski,
        aki,
        new SubjectAlternativeNameExtension(
          profile.sans.map(generalNameOf).map((g) => g.toJSON()),
          true,
        ),
      ];
    }
    case 'root':
    case 'intermediate': {
      const pathLength = profile.kind === 'intermediate' ? (profile.pathLength ?? 0) : undefined;
      return [
        new BasicConstraintsExtension(true, pathLength, true),
        new KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        ski,
        aki,
      ];
    }
  }
}

/** The subject of a profile as @peculiar/x509's JSON name (empty for leaves without CN). */
export function profileSubject(profile: CertificateProfile): Record<string, string[]>[] {
  switch (profile.kind) {
    case 'workload':
    case 'serving':
      return profile.commonName !== undefined
        ? [{ CN: [checkCommonName(profile.commonName)] }]
        : [];
    case 'root':
    case 'intermediate':
      if (profile.subject.length === 0) {
        throw new CastellanError('invalid-argument', 'a CA certificate needs a subject');
      }
      return profile.subject.map(([attr, value]) => ({
        [attr]: [attr === 'CN' ? checkCommonName(value) : value],
      }));
  }
}

/** How a CA key signs the certificates it issues (see "Signature" above). */
export interface CaSignatureAlgorithm {
  readonly family: 'ecdsa' | 'rsa';
  readonly hash: 'sha256' | 'sha384';
  /** The AlgorithmIdentifier OID in the certificate. */
  readonly oid: string;
  /** ECDSA keys only. */
  readonly namedCurve?: 'P-256' | 'P-384';
}

/**
 * The one place that says which signature a CA key of each type makes: both issuers (the
 * @peculiar/x509 reference and the fast template) derive theirs from it.
 */
export function caSignatureAlgorithm(keyType: KeyType, subject = 'CA key'): CaSignatureAlgorithm {
  switch (keyType) {
    case 'ec-p256':
      return { family: 'ecdsa', hash: 'sha256', oid: id_ecdsaWithSHA256, namedCurve: 'P-256' };
    case 'ec-p384':
      return { family: 'ecdsa', hash: 'sha384', oid: id_ecdsaWithSHA384, namedCurve: 'P-384' };
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return { family: 'rsa', hash: 'sha256', oid: id_sha256WithRSAEncryption };
    case 'ed25519':
      throw new CastellanError('unsupported', 'Ed25519 keys cannot sign certificates here', {
        subject,
      });
  }
}
