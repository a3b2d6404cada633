import { webcrypto, type KeyObject } from 'node:crypto';
import {
  Name,
  SubjectKeyIdentifierExtension,
  type X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { CastellanError } from '../errors.js';
import type { KeyType } from './key-type.js';
import { keyTypeOf, spkiOf } from './keys.js';
import {
  keyIdentifier,
  profileExtensions,
  profileSubject,
  type CertificateProfile,
  caSignatureAlgorithm,
} from './profiles.js';
import { randomSerial, serialToHex } from './serial.js';

/** A signing certificate and its key. */
export interface Issuer {
  readonly cert: X509Certificate;
  readonly key: KeyObject;
}

export interface IssueParams {
  readonly profile: CertificateProfile;
  /** The subject's public key: a KeyObject, or SubjectPublicKeyInfo DER copied verbatim. */
  readonly publicKey: KeyObject | Uint8Array;
  /** Required unless the profile is a root (self-signed with `selfKey`). */
  readonly issuer?: Issuer;
  /** For roots: the private key that signs the root itself. */
  readonly selfKey?: KeyObject;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Default: randomSerial(). */
  readonly serial?: Uint8Array;
}

/** The WebCrypto shape of caSignatureAlgorithm, for @peculiar/x509's generator. */
function signingAlgorithm(keyType: KeyType): {
  import: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;
  sign: webcrypto.Algorithm & { hash?: string };
} {
  const alg = caSignatureAlgorithm(keyType);
  const hash = alg.hash === 'sha384' ? 'SHA-384' : 'SHA-256';
  return alg.family === 'ecdsa'
    ? {
        import: { name: 'ECDSA', namedCurve: alg.namedCurve as string },
        sign: { name: 'ECDSA', hash },
      }
    : {
        import: { name: 'RSASSA-PKCS1-v1_5', hash },
        sign: { name: 'RSASSA-PKCS1-v1_5', hash },
      };
}

type SigningKey = { cryptoKey: webcrypto.CryptoKey; sign: webcrypto.Algorithm };
/** Imported once per KeyObject: a CA key signs many certificates. */
const imported = new WeakMap<KeyObject, Promise<SigningKey>>();

/** Imports a node KeyObject into WebCrypto for @peculiar/x509's generator (cached). */
export function toSigningCryptoKey(key: KeyObject): Promise<SigningKey> {
  let p = imported.get(key);
  if (!p) {
    const alg = signingAlgorithm(keyTypeOf(key));
    p = webcrypto.subtle
      .importKey('pkcs8', key.export({ format: 'der', type: 'pkcs8' }), alg.import, false, ['sign'])
      .then((cryptoKey) => ({ cryptoKey, sign: alg.sign }));
    imported.set(key, p);
    p.catch(() => imported.delete(key));
  }
  return p;
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
  let signingKey: KeyObject;
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
  if (p.notAfter.getTime() <= p.notBefore.getTime()) {
    throw new CastellanError('invalid-argument', 'notAfter must be after notBefore');
  }
  const { cryptoKey, sign } = await toSigningCryptoKey(signingKey);
  return X509CertificateGenerator.create(
    {
      serialNumber: serialToHex(p.serial ?? randomSerial()),
      subject,
      issuer: issuerName,
      notBefore: truncateToSeconds(p.notBefore),
      notAfter: truncateToSeconds(p.notAfter),
      publicKey: spki,
      signingKey: cryptoKey,
      signingAlgorithm: sign,
      extensions: profileExtensions(p.profile, subjectKeyId, authorityKeyId),
    },
    webcrypto,
  );
}

export function truncateToSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
