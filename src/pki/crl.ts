import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, CertificateList, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import {
  AuthorityKeyIdentifierExtension,
  Extension,
  X509Crl,
  X509CrlGenerator,
  type X509Certificate,
  type X509CrlReason,
} from '@peculiar/x509';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import {
  checkLastTime,
  checkValidDate,
  subjectKeyIdOf,
  truncateToSeconds,
  type Issuer,
} from './issue.js';
import { pemBlocksOf, toPem } from './pem.js';
import { generatorSigning, signerOf } from './signer.js';

/** The PEM label of a CRL (RFC 7468 §5), as `openssl crl` writes and reads it. */
export const CRL_PEM_LABEL = 'X509 CRL';

/** One revoked certificate of a CRL. */
export interface CrlEntry {
  /** The serial as normalizeSerial gives it: lowercase hex, no leading zeros. */
  readonly serial: string;
  readonly revocationDate: Date;
  readonly reason?: X509CrlReason | undefined;
}

/** A parsed CRL: what it says, plus what verifying its signature needs. */
export interface ParsedCrl {
  readonly der: Uint8Array;
  /** The issuer's distinguished name, as @peculiar/x509 prints names (`CN=…, O=…`). */
  readonly issuer: string;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** The cRLNumber extension (RFC 5280 §5.2.3), when present. */
  readonly crlNumber: number | undefined;
  /** The authorityKeyIdentifier's keyIdentifier, lowercase hex, when present. */
  readonly authorityKeyId: string | undefined;
  readonly entries: readonly CrlEntry[];
  readonly revokedSerials: ReadonlySet<string>;
  readonly tbs: Uint8Array;
  readonly signature: Uint8Array;
  readonly signatureAlgorithm: string;
}

/** A CRL whose signature verified with `signer`, a CA certificate of the loaded chain. */
export interface VerifiedCrl extends ParsedCrl {
  readonly signer: X509Certificate;
}

/**
 * The `ca-crl.pem` of a plugged-in CA, verified: every CRL in it is signed by a CA of the
 * chain, and every CA of the chain has one. Kept beside the bundle it was verified with.
 */
export interface CaCrl {
  /** The file as given: published as is (istiod publishes the plugged-in bytes). */
  readonly pem: string;
  readonly crls: readonly VerifiedCrl[];
  /** The earliest nextUpdate of its CRLs; undefined when none sets one. */
  readonly nextUpdate: Date | undefined;
  /** nextUpdate had passed when it was loaded. Still published; the wiring warns and counts. */
  readonly expired: boolean;
  /** Revoked entries over all its CRLs. */
  readonly revokedCount: number;
  /** Where it was read from (a file, `secret ns/name/ca-crl.pem`), for messages. */
  readonly subject: string;
}

/**
 * Signature algorithms we verify, by OID: the hash for node:crypto's verify (null for EdDSA).
 * RSA-PSS and SHA-1 are absent on purpose: `unsupported`, never silently accepted.
 */
const SIGNATURE_HASH: Record<string, string | null> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null,
};

/**
 * A certificate serial as CRLs are matched: lowercase hex without separators or leading
 * zeros. Accepts what openssl prints (`serial=0A1B…`, `0a:1b:…`) and `0x…`; anything else is
 * `invalid-argument`. RFC 5280 §4.1.2.2 bounds serials to 20 octets.
 */
export function normalizeSerial(text: string): string {
  const s = text
    .trim()
    .replace(/^serial=/i, '')
    .replace(/^0x/i, '');
  const plain = /^[0-9a-f]+$/i.test(s);
  const colons = /^([0-9a-f]{1,2}:)+[0-9a-f]{1,2}$/i.test(s);
  if (!plain && !colons) {
    throw new CastellanError(
      'invalid-argument',
      `"${text}" is not a certificate serial: use hex digits as openssl x509 -serial prints them (e.g. 5A3F09 or 5a:3f:09)`,
    );
  }
  const hex = s
    .replace(/:/g, '')
    .toLowerCase()
    .replace(/^0+(?=.)/, '');
  if (hex.length > 40) {
    throw new CastellanError(
      'invalid-argument',
      `serial "${text}" is longer than 20 octets (RFC 5280 §4.1.2.2)`,
    );
  }
  return hex;
}

/** A normalized serial as openssl prints it: whole octets, uppercase (`0A1B`). */
export function formatSerial(serial: string): string {
  const hex = normalizeSerial(serial);
  return (hex.length % 2 === 1 ? `0${hex}` : hex).toUpperCase();
}

/** Parses every X509 CRL block of a PEM text; a truncated or foreign block is `malformed`. */
export function parseCrls(pem: string, subject: string): ParsedCrl[] {
  return pemBlocksOf(pem, CRL_PEM_LABEL, { subject }).map((der, i) => {
    const what = `CRL [${i}]`;
    let asn: CertificateList;
    let crl: X509Crl;
    try {
      asn = AsnConvert.parse(der, CertificateList);
      crl = new X509Crl(der);
    } catch (e) {
      throw new CastellanError('malformed', `${what} does not parse: ${(e as Error).message}`, {
        subject,
        cause: e,
      });
    }
    const tbsAlg = asn.tbsCertList.signature.algorithm;
    if (tbsAlg !== asn.signatureAlgorithm.algorithm || !asn.tbsCertListRaw) {
      // RFC 5280 §5.1.1.2: the two algorithm identifiers must be the same.
      throw new CastellanError(
        'malformed',
        `${what}: signature algorithm ${asn.signatureAlgorithm.algorithm} differs from the one it says it signed with (${tbsAlg})`,
        { subject },
      );
    }
    let crlNumber: number | undefined;
    const numberExt = crl.getExtension(id_ce_cRLNumber);
    if (numberExt) {
      const value = AsnConvert.parse(numberExt.value, CRLNumber).value;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new CastellanError('unsupported', `${what}: CRL number out of range`, { subject });
      }
      crlNumber = value;
    }
    const entries = crl.entries.map((e) => ({
      serial: normalizeSerial(e.serialNumber),
      revocationDate: e.revocationDate,
      reason: e.reason,
    }));
    return Object.freeze({
      der,
      issuer: crl.issuer,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      crlNumber,
      authorityKeyId: crl.getExtension(AuthorityKeyIdentifierExtension)?.keyId?.toLowerCase(),
      entries: Object.freeze(entries),
      revokedSerials: new Set(entries.map((e) => e.serial)),
      tbs: new Uint8Array(asn.tbsCertListRaw),
      signature: new Uint8Array(asn.signature),
      signatureAlgorithm: asn.signatureAlgorithm.algorithm,
    });
  });
}

/**
 * Whether `ca` issued `crl`: its name is the CRL's issuer, its key identifier matches the
 * CRL's AKI when there is one, and the signature verifies with its key (node:crypto,
 * synchronous, so a CA set is verified in one step).
 */
export function isCrlSignedBy(crl: ParsedCrl, ca: X509Certificate): boolean {
  if (crl.issuer !== ca.subject) return false;
  if (crl.authorityKeyId !== undefined) {
    if (Buffer.from(subjectKeyIdOf(ca)).toString('hex') !== crl.authorityKeyId) return false;
  }
  const hash = SIGNATURE_HASH[crl.signatureAlgorithm];
  if (hash === undefined) return false;
  try {
    const key = createPublicKey({
      key: Buffer.from(ca.publicKey.rawData),
      format: 'der',
      type: 'spki',
    });
    return verifySignature(hash, crl.tbs, { key, dsaEncoding: 'der' }, crl.signature);
  } catch {
    return false;
  }
}

/**
 * Verifies a `ca-crl.pem` against the CA certificates of a chain (the signing CA up to its
 * root), as istiod does (security/pkg/pki/util/keycertbundle.go, Verify): the file may hold
 * several CRLs, and every CA of the chain must have one, because Envoy, given a CRL for any CA
 * of a chain, refuses every certificate of that chain whose CAs lack one. Stricter than
 * istiod: a CRL signed by none of the chain's CAs is refused too (`bad-signature`) rather than
 * published. An expired CRL (nextUpdate passed) is accepted and flagged `expired`.
 */
export function verifyCaCrl(
  pem: string,
  chainCas: readonly X509Certificate[],
  clock: Clock,
  subject: string,
): CaCrl {
  const crls = parseCrls(pem, subject);
  const verified: VerifiedCrl[] = crls.map((crl, i) => {
    const signer = chainCas.find((ca) => isCrlSignedBy(crl, ca));
    if (!signer) {
      if (SIGNATURE_HASH[crl.signatureAlgorithm] === undefined) {
        throw new CastellanError(
          'unsupported',
          `CRL [${i}] is signed with algorithm ${crl.signatureAlgorithm}, which is not supported (RSA PKCS#1 v1.5 or ECDSA with SHA-256/384/512, Ed25519)`,
          { subject },
        );
      }
      const named = chainCas.some((ca) => ca.subject === crl.issuer);
      throw new CastellanError(
        'bad-signature',
        named
          ? `the signature of CRL [${i}] (issuer "${crl.issuer}") does not verify with that CA's key`
          : `CRL [${i}] is issued by "${crl.issuer}", which is none of the CAs of the chain (${chainCas.map((c) => `"${c.subject}"`).join(', ')})`,
        { subject },
      );
    }
    return Object.freeze({ ...crl, signer });
  });
  const missing = chainCas.filter((ca) => !verified.some((c) => c.signer === ca));
  if (missing.length > 0) {
    throw new CastellanError(
      'incomplete-ca',
      `no CRL signed by ${missing.map((c) => `"${c.subject}"`).join(', ')}: every CA of the chain needs one (Envoy rejects every certificate of a chain whose CRLs are partial; istiod refuses such a set too)`,
      { subject },
    );
  }
  const nextUpdate = earliestNextUpdate(verified);
  return Object.freeze({
    pem,
    crls: Object.freeze(verified),
    nextUpdate,
    expired: nextUpdate !== undefined && nextUpdate.getTime() < clock.now(),
    revokedCount: verified.reduce((n, c) => n + c.entries.length, 0),
    subject,
  });
}

function earliestNextUpdate(crls: readonly ParsedCrl[]): Date | undefined {
  let min: Date | undefined;
  for (const c of crls) {
    if (c.nextUpdate && (!min || c.nextUpdate.getTime() < min.getTime())) min = c.nextUpdate;
  }
  return min;
}

/**
 * The entry of `crl` revoking the certificate with this serial (any hex form), if any. The
 * caller checks first that the certificate was issued by the CRL's signer: a CRL covers only
 * its own CA's certificates (no indirect CRLs here).
 */
export function revokedEntry(crl: ParsedCrl, serial: string): CrlEntry | undefined {
  const s = normalizeSerial(serial);
  return crl.revokedSerials.has(s) ? crl.entries.find((e) => e.serial === s) : undefined;
}

export interface CreateCrlParams {
  /** The CA that signs: its certificate names the issuer and gives the AKI; its key signs. */
  readonly issuer: Issuer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly crlNumber: number;
  readonly entries: readonly CrlEntry[];
}

/**
 * Makes a CRL (v2) signed by a CA key with @peculiar/x509's generator: issuer name from the CA
 * certificate, authorityKeyIdentifier (its SKI) and cRLNumber extensions (RFC 5280 §5.2.1,
 * §5.2.3 require both), the CA's usual signature algorithm. Returns it as PEM.
 */
export async function createCrl(p: CreateCrlParams): Promise<string> {
  checkValidDate(p.thisUpdate, 'thisUpdate');
  checkLastTime(p.nextUpdate, "the CRL's next update would be");
  if (p.nextUpdate.getTime() <= p.thisUpdate.getTime()) {
    throw new CastellanError('invalid-argument', 'nextUpdate must be after thisUpdate');
  }
  if (!Number.isSafeInteger(p.crlNumber) || p.crlNumber < 0) {
    throw new CastellanError('invalid-argument', `CRL number ${p.crlNumber} out of range`);
  }
  const { signingKey, signingAlgorithm, crypto } = generatorSigning(signerOf(p.issuer.key));
  const crl = await X509CrlGenerator.create(
    {
      issuer: p.issuer.cert.subjectName,
      thisUpdate: truncateToSeconds(p.thisUpdate),
      nextUpdate: truncateToSeconds(p.nextUpdate),
      signingKey,
      signingAlgorithm,
      extensions: [
        new AuthorityKeyIdentifierExtension(
          Buffer.from(subjectKeyIdOf(p.issuer.cert)).toString('hex'),
        ),
        new Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(p.crlNumber))),
      ],
      entries: p.entries.map((e) => ({
        // Whole octets; the generator keeps the INTEGER positive (a leading 00 when needed).
        serialNumber: e.serial.length % 2 === 1 ? `0${e.serial}` : e.serial,
        revocationDate: truncateToSeconds(e.revocationDate),
        ...(e.reason !== undefined ? { reason: e.reason } : {}),
      })),
    },
    crypto,
  );
  return toPem(CRL_PEM_LABEL, crl.rawData);
}
