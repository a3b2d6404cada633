import { randomBytes, sign as signCallback, verify, webcrypto, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { ECDSASigValue } from '@peculiar/asn1-ecc';
import { CastellanError } from '../errors.js';
import { isCaKeyType, type CaKeyType } from './key-type.js';
import { keyTypeOf } from './keys.js';
import { caSignatureAlgorithm, type CaSignatureAlgorithm } from './profiles.js';

/**
 * The signer seam: what holds a CA's private key and signs with it. Every certificate and CRL
 * Castellan signs goes through one (the leaf template, the reference generator, the serving
 * certificate, roots, intermediates, CRLs); nothing else touches a CA's private key. Two
 * implementations: a key in this process (keyObjectSigner, below) and a key inside a PKCS#11
 * token (src/ca/signers/pkcs11-signer.ts), which never leaves it.
 */
export interface CaSigner {
  /** The key's type: which signature it makes (profiles.ts: caSignatureAlgorithm). */
  readonly keyType: CaKeyType;
  /**
   * Where the key is, for logs and errors: `in-process key`, or the PKCS#11 URI (never a PIN).
   */
  readonly description: string;
  /**
   * Signs `data` (a TBSCertificate, a TBSCertList, a probe) with `algorithm`, which must be
   * caSignatureAlgorithm(keyType). Returns the signature as X.509 carries it: a DER
   * ECDSA-Sig-Value, or the PKCS#1 v1.5 signature bytes. Never blocks the event loop.
   * Failures are CastellanErrors; `unavailable` when the key's holder cannot sign right now
   * (an HSM whose session was lost): the caller may try again later.
   */
  sign(data: Uint8Array, algorithm: CaSignatureAlgorithm): Promise<Uint8Array>;
  /**
   * Told the public key (SPKI DER) that a probe it signed verified with
   * (ca/build-key-cert-bundle.ts: probeSigner). A signer that may reconnect to its key (an HSM)
   * checks after reconnecting that it still holds the same key.
   */
  confirmed?(spki: Uint8Array): void;
}

/** A private key as the issuance functions accept it: in this process, or behind a signer. */
export type SigningKey = KeyObject | CaSigner;

export function isCaSigner(key: SigningKey): key is CaSigner {
  return typeof (key as CaSigner).sign === 'function' && 'keyType' in key;
}

/** Refuses an algorithm the signer's key does not make (a bug in the caller, not input). */
export function checkAlgorithm(signer: CaSigner, algorithm: CaSignatureAlgorithm): void {
  const expected = caSignatureAlgorithm(signer.keyType);
  if (expected.oid !== algorithm.oid) {
    throw new CastellanError(
      'internal',
      `a ${signer.keyType} key signs with ${expected.oid}, asked for ${algorithm.oid}`,
      { subject: signer.description },
    );
  }
}

const inProcess = new WeakMap<KeyObject, CaSigner>();
const keyOfSigner = new WeakMap<CaSigner, KeyObject>();

/**
 * The KeyObject behind an in-process signer (keyObjectSigner), undefined for any other signer
 * (an HSM's key never leaves its token). For the crypto thread, which signs leaves with its own
 * copy of the key (src/server/csr-check-threads.ts): one more in-process path of the same key.
 */
export function inProcessKeyOf(signer: CaSigner): KeyObject | undefined {
  return keyOfSigner.get(signer);
}

/**
 * The in-process signer: node:crypto with a callback, so the signature is computed on libuv's
 * thread pool and the event loop stays free. One per KeyObject (cached): a CA key signs many
 * certificates, and the checks below run once.
 */
export function keyObjectSigner(key: KeyObject): CaSigner {
  const cached = inProcess.get(key);
  if (cached) return cached;
  const keyType = keyTypeOf(key, 'CA key');
  if (!isCaKeyType(keyType)) {
    throw new CastellanError('unsupported', `a ${keyType} key cannot be a CA key here`, {
      subject: 'CA key',
    });
  }
  const ecdsa = keyType.startsWith('ec-');
  const signer: CaSigner = {
    keyType,
    description: 'in-process key',
    sign(data, algorithm) {
      checkAlgorithm(signer, algorithm);
      return new Promise((resolve, reject) => {
        signCallback(
          algorithm.hash,
          data,
          ecdsa ? { key, dsaEncoding: 'der' } : key,
          (err, signature) => {
            if (err) {
              reject(new CastellanError('internal', 'signing failed', { cause: err }));
            } else resolve(new Uint8Array(signature));
          },
        );
      });
    },
  };
  inProcess.set(key, signer);
  keyOfSigner.set(signer, key);
  return signer;
}

/** The signer of a SigningKey: itself, or the in-process signer of a KeyObject. */
export function signerOf(key: SigningKey): CaSigner {
  return isCaSigner(key) ? key : keyObjectSigner(key);
}

/** Bytes of an ECDSA signature's r or s for each curve (IEEE P1363 halves). */
const EC_FIELD_BYTES: Record<string, number> = { 'P-256': 32, 'P-384': 48 };

/**
 * ECDSA signature forms: PKCS#11's CKM_ECDSA and WebCrypto give r || s (IEEE P1363, each half
 * the curve's size); X.509 carries the DER ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER }
 * (RFC 5480 §2.2 → RFC 3279 §2.2.3).
 */
export function ecdsaRawToDer(raw: Uint8Array, namedCurve: 'P-256' | 'P-384'): Uint8Array {
  const size = EC_FIELD_BYTES[namedCurve] as number;
  if (raw.length !== 2 * size) {
    throw new CastellanError(
      'malformed',
      `an ECDSA ${namedCurve} signature is ${2 * size} bytes (r || s), got ${raw.length}`,
    );
  }
  const integer = (half: Uint8Array): ArrayBuffer => {
    let i = 0;
    while (i < half.length - 1 && half[i] === 0) i++;
    const trimmed = half.subarray(i);
    // DER INTEGERs are signed: a leading 1 bit needs a zero byte in front.
    const out = new Uint8Array(trimmed.length + ((trimmed[0] as number) & 0x80 ? 1 : 0));
    out.set(trimmed, out.length - trimmed.length);
    return out.buffer;
  };
  return new Uint8Array(
    AsnConvert.serialize(
      new ECDSASigValue({ r: integer(raw.subarray(0, size)), s: integer(raw.subarray(size)) }),
    ),
  );
}

export function ecdsaDerToRaw(der: Uint8Array, namedCurve: 'P-256' | 'P-384'): Uint8Array {
  const size = EC_FIELD_BYTES[namedCurve] as number;
  const value = AsnConvert.parse(der, ECDSASigValue);
  const out = new Uint8Array(2 * size);
  [value.r, value.s].forEach((part, i) => {
    let bytes = new Uint8Array(part);
    while (bytes.length > size && bytes[0] === 0) bytes = bytes.subarray(1);
    if (bytes.length > size) throw new CastellanError('malformed', 'ECDSA signature too long');
    out.set(bytes, (i + 1) * size - bytes.length);
  });
  return out;
}

/**
 * What @peculiar/x509's generators need to sign through a CaSigner: a signing "key" carrying
 * the WebCrypto algorithm, and a crypto provider whose `subtle.sign` hands the TBS bytes to the
 * signer. The generators call only `subtle.sign` and `getRandomValues` when the public key is
 * given as DER and the serial number is given (issue.ts, crl.ts do both); anything else they
 * might call fails loudly rather than silently using another key.
 */
export function generatorSigning(signer: CaSigner): {
  signingKey: webcrypto.CryptoKey;
  signingAlgorithm: webcrypto.Algorithm & { hash: string };
  crypto: webcrypto.Crypto;
} {
  const algorithm = caSignatureAlgorithm(signer.keyType, signer.description);
  const hash = algorithm.hash === 'sha384' ? 'SHA-384' : 'SHA-256';
  const keyAlgorithm =
    algorithm.family === 'ecdsa'
      ? { name: 'ECDSA', namedCurve: algorithm.namedCurve as string }
      : { name: 'RSASSA-PKCS1-v1_5', hash: { name: hash } };
  const signingKey = {
    type: 'private',
    extractable: false,
    algorithm: keyAlgorithm,
    usages: ['sign'],
  } as unknown as webcrypto.CryptoKey;
  const unsupported = (name: string) => () =>
    Promise.reject(
      new CastellanError('internal', `the certificate generator asked for ${name}`, {
        subject: signer.description,
      }),
    );
  const subtle = new Proxy(
    {
      // A property, not a method: the proxy hands it out unbound.
      sign: async (
        _alg: unknown,
        _key: unknown,
        data: ArrayBuffer | ArrayBufferView,
      ): Promise<ArrayBuffer> => {
        const bytes = ArrayBuffer.isView(data)
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : new Uint8Array(data);
        const signature = await signer.sign(bytes, algorithm);
        // WebCrypto's ECDSA signatures are r || s; the generator re-encodes them as DER.
        const out =
          algorithm.family === 'ecdsa'
            ? ecdsaDerToRaw(signature, algorithm.namedCurve as 'P-256' | 'P-384')
            : signature;
        return out.slice().buffer;
      },
    },
    {
      get: (target, name) =>
        name in target ? target[name as keyof typeof target] : unsupported(String(name)),
    },
  );
  const crypto = {
    subtle,
    getRandomValues: (array: Uint8Array): Uint8Array => webcrypto.getRandomValues(array),
  } as unknown as webcrypto.Crypto;
  return { signingKey, signingAlgorithm: { name: keyAlgorithm.name, hash }, crypto };
}

/**
 * Whether `sign` holds the private half of `publicKey`: a random probe it signs (with the CA
 * signature algorithm of `keyType`) verifies with `publicKey`. How a key named by reference (a
 * token's) is matched to its certificate, at load and after a reconnect.
 */
export async function signsForPublicKey(
  sign: (data: Uint8Array, algorithm: CaSignatureAlgorithm) => Promise<Uint8Array>,
  keyType: CaKeyType,
  description: string,
  publicKey: KeyObject,
): Promise<boolean> {
  const algorithm = caSignatureAlgorithm(keyType, description);
  const probe = randomBytes(32);
  const signature = await sign(probe, algorithm);
  return verify(
    algorithm.hash,
    probe,
    algorithm.family === 'ecdsa' ? { key: publicKey, dsaEncoding: 'der' } : publicKey,
    signature,
  );
}
