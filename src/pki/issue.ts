import type { KeyObject } from 'node:crypto';
import {
  Name,
  SubjectKeyIdentifierExtension,
  type X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { CastellanError } from '../errors.js';
import { spkiOf } from './keys.js';
import {
  keyIdentifier,
  profileExtensions,
  profileSubject,
  type CertificateProfile,
} from './profiles.js';
import { randomSerial, serialToHex } from './serial.js';
import { generatorSigning, signerOf, type SigningKey } from './signer.js';

/** 9999-12-31T23:59:59Z: the last time a GeneralizedTime (RFC 5280 §4.1.2.5.2) holds. */
const LAST_X509_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

/**
 * Refuses a time X.509 cannot write: GeneralizedTime has four digits of year, and a later time
 * came out as year 0417 (openssl: "Bad time value"); a date that is no date at all (NaN) too.
 * Every encoder asks: this file's, ./fast/leaf-template.ts, and ./crl.ts for nextUpdate.
 */
export function checkLastTime(time: Date, what = 'the certificate would be valid until'): void {
  // Written in whole seconds (the milliseconds are dropped): 23:59:59.999 is still 23:59:59.
  if (time.getTime() < LAST_X509_TIME_MS + 1000) return;
  const when = Number.isFinite(time.getTime()) ? time.toISOString() : 'past any date';
  throw new CastellanError(
    'invalid-argument',
    `${what} ${when}, after 9999-12-31T23:59:59Z, the last time X.509 can express (RFC 5280 §4.1.2.5.2): choose a shorter lifetime`,
  );
}

/** A notBefore that is a date (the clock's, always; NaN would pass every comparison). */
export function checkValidDate(time: Date, what: string): void {
  if (!Number.isFinite(time.getTime())) {
    throw new CastellanError('invalid-argument', `${what} is not a date`);
  }
}

/** A signing certificate and its key (in this process, or behind a CaSigner such as an HSM). */
export interface Issuer {
  readonly cert: X509Certificate;
  readonly key: SigningKey;
}

export interface IssueParams {
  readonly profile: CertificateProfile;
  /** The subject's public key: a KeyObject, or SubjectPublicKeyInfo DER copied verbatim. */
  readonly publicKey: KeyObject | Uint8Array;
  /** Required unless the profile is a root (self-signed with `selfKey`). */
  readonly issuer?: Issuer;
  /** For roots: the private key that signs the root itself. */
  readonly selfKey?: SigningKey;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Default: randomSerial(). */
  readonly serial?: Uint8Array;
}

/** The SKI an issuer's certificates are identified by: its SKI extension, else computed. */
export function subjectKeyIdOf(cert: X509Certificate): Uint8Array {
  const ext = cert.getExtension(SubjectKeyIdentifierExtension);
  if (ext) return new Uint8Array(Buffer.from(ext.keyId, 'hex'));
  return keyIdentifier(cert.publicKey.rawData);
}

/**
 * Makes a certificate in one of the profiles of profiles.ts with @peculiar/x509's generator.
 * Roots are self-signed with `selfKey`; everything else is signed by `issuer`. Dates are
 * truncated to whole seconds (X.509 times have no fractions).
 */
export async function issueCertificate(p: IssueParams): Promise<X509Certificate> {
  const spki = p.publicKey instanceof Uint8Array ? p.publicKey : spkiOf(p.publicKey);
  const subjectKeyId = keyIdentifier(spki);
  let signingKey: SigningKey;
  let issuerName: Name;
  let authorityKeyId: Uint8Array;
  const subject = new Name(profileSubject(p.profile));
  if (p.profile.kind === 'root') {
    if (!p.selfKey)
      throw new CastellanError('invalid-argument', 'a root needs its own key to sign itself');
    signingKey = p.selfKey;
    issuerName = subject;
    authorityKeyId = subjectKeyId;
  } else {
    if (!p.issuer)
      throw new CastellanError(
        'invalid-argument',
        `a ${p.profile.kind} certificate needs an issuer`,
      );
    signingKey = p.issuer.key;
    issuerName = p.issuer.cert.subjectName;
    authorityKeyId = subjectKeyIdOf(p.issuer.cert);
  }
  checkValidDate(p.notBefore, 'notBefore');
  if (p.notAfter.getTime() <= p.notBefore.getTime()) {
    throw new CastellanError('invalid-argument', 'notAfter must be after notBefore');
  }
  checkLastTime(p.notAfter);
  const {
    signingKey: generatorKey,
    signingAlgorithm,
    crypto,
  } = generatorSigning(signerOf(signingKey));
  return X509CertificateGenerator.create(
    {
      serialNumber: serialToHex(p.serial ?? randomSerial()),
      subject,
      issuer: issuerName,
      notBefore: truncateToSeconds(p.notBefore),
      notAfter: truncateToSeconds(p.notAfter),
      publicKey: spki,
      signingKey: generatorKey,
      signingAlgorithm,
      extensions: profileExtensions(p.profile, subjectKeyId, authorityKeyId),
    },
    crypto,
  );
}

export function truncateToSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
