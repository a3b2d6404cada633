import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairCallback,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { CastellanError } from '../errors.js';
import type { CsrKeyType, KeyType } from './key-type.js';
import { pemBlocks, toPem } from './pem.js';

const generateKeyPairAsync = promisify(generateKeyPairCallback);

/** PEM labels of unencrypted private keys, and the DER structure each one holds. */
const KEY_LABELS: Record<string, 'pkcs1' | 'sec1' | 'pkcs8'> = {
  'RSA PRIVATE KEY': 'pkcs1',
  'EC PRIVATE KEY': 'sec1',
  'PRIVATE KEY': 'pkcs8',
};
/** Blocks that may sit next to a key (`openssl ecparam -genkey` writes the curve first). */
const IGNORED_LABELS = new Set(['EC PARAMETERS']);

function err(
  kind: 'malformed' | 'unsupported' | 'weak-key' | 'encrypted-key',
  message: string,
  subject: string | undefined,
  cause?: unknown,
): CastellanError {
  return new CastellanError(kind, message, { ...(subject ? { subject } : {}), cause });
}

/**
 * The KeyType of a key, public or private. Accepted: RSA with a 2048, 3072 or 4096-bit
 * modulus, ECDSA on P-256 or P-384, Ed25519. RSA below 2048 bits → `weak-key`; every other
 * algorithm, curve or size (DSA, P-521, RSA-PSS keys, X25519, RSA-8192…) → `unsupported`.
 */
export function keyTypeOf(key: KeyObject, subject?: string): KeyType {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < 2048)
      throw err('weak-key', `RSA key of ${bits} bits: at least 2048 required`, subject);
    if (bits === 2048) return 'rsa-2048';
    if (bits === 3072) return 'rsa-3072';
    if (bits === 4096) return 'rsa-4096';
    throw err('unsupported', `RSA key of ${bits} bits: use 2048, 3072 or 4096`, subject);
  }
  if (type === 'ec') {
    if (details.namedCurve === 'prime256v1') return 'ec-p256';
    if (details.namedCurve === 'secp384r1') return 'ec-p384';
    throw err(
      'unsupported',
      `ECDSA curve ${details.namedCurve ?? 'unknown'}: use P-256 or P-384`,
      subject,
    );
  }
  if (type === 'ed25519') return 'ed25519';
  throw err('unsupported', `${type ?? 'unknown'} keys are not supported`, subject);
}

/**
 * Reads one unencrypted private key from PEM: PKCS#1 (`RSA PRIVATE KEY`), SEC1
 * (`EC PRIVATE KEY`, an `EC PARAMETERS` block beside it is ignored) or PKCS#8 (`PRIVATE KEY`).
 * Errors: `encrypted-key` (`ENCRYPTED PRIVATE KEY`, or a legacy `Proc-Type: 4,ENCRYPTED`
 * header), `malformed` (garbage, truncated, no key, several keys, a DER that does not parse),
 * plus keyTypeOf's `weak-key` / `unsupported`. `subject` (a file name) prefixes messages.
 */
export function parsePrivateKeyPem(
  pem: string,
  subject?: string,
): { key: KeyObject; keyType: KeyType } {
  const blocks = pemBlocks(pem, subject ? { subject } : {});
  const keys = blocks.filter((b) => !IGNORED_LABELS.has(b.label));
  const block = keys[0];
  if (keys.length !== 1 || block === undefined) {
    throw err(
      'malformed',
      keys.length === 0
        ? 'no private key found'
        : `expected one private key, found ${keys.length} PEM blocks`,
      subject,
    );
  }
  if (
    block.label === 'ENCRYPTED PRIVATE KEY' ||
    /ENCRYPTED/.test(block.headers['Proc-Type'] ?? '')
  ) {
    throw err('encrypted-key', 'the private key is encrypted; provide it unencrypted', subject);
  }
  if (/^(DSA|OPENSSH) PRIVATE KEY$/.test(block.label)) {
    throw err('unsupported', `"${block.label}" keys are not supported`, subject);
  }
  const format = KEY_LABELS[block.label];
  if (!format) {
    throw err('malformed', `expected a private key PEM block, found "${block.label}"`, subject);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(block.der), format: 'der', type: format });
  } catch (e) {
    throw err('malformed', `the private key does not parse (${format.toUpperCase()})`, subject, e);
  }
  return { key, keyType: keyTypeOf(key, subject) };
}

/** Makes a fresh key pair of the given type (on libuv's thread pool). */
export async function generateKeyPair(
  type: KeyType,
): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
    case 'ec-p384':
      return generateKeyPairAsync('ec', { namedCurve: 'secp384r1' });
    case 'rsa-2048':
      return generateKeyPairAsync('rsa', { modulusLength: 2048, publicExponent: 65537 });
    case 'rsa-3072':
      return generateKeyPairAsync('rsa', { modulusLength: 3072, publicExponent: 65537 });
    case 'rsa-4096':
      return generateKeyPairAsync('rsa', { modulusLength: 4096, publicExponent: 65537 });
    case 'ed25519':
      return generateKeyPairAsync('ed25519');
  }
}

/** PKCS#8 PEM (`PRIVATE KEY`), unencrypted: the form every tool reads. */
export function privateKeyToPem(key: KeyObject): string {
  return toPem('PRIVATE KEY', key.export({ format: 'der', type: 'pkcs8' }));
}

/** The SubjectPublicKeyInfo DER of a key (private or public). */
export function spkiOf(key: KeyObject): Uint8Array {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return new Uint8Array(pub.export({ format: 'der', type: 'spki' }));
}

/**
 * Whether `privateKey` is the private half of `certificatePublicKey` (a KeyObject or SPKI DER):
 * compares the SubjectPublicKeyInfo derived from the private key with the certificate's.
 */
export function publicKeyMatches(
  privateKey: KeyObject,
  certificatePublicKey: KeyObject | Uint8Array | ArrayBuffer,
): boolean {
  let spki: Uint8Array;
  if (certificatePublicKey instanceof Uint8Array || certificatePublicKey instanceof ArrayBuffer) {
    // Re-export through node so both sides are encoded the same way (e.g. EC point form).
    try {
      spki = spkiOf(
        createPublicKey({
          key: Buffer.from(new Uint8Array(certificatePublicKey)),
          format: 'der',
          type: 'spki',
        }),
      );
    } catch {
      return false;
    }
  } else {
    spki = spkiOf(certificatePublicKey);
  }
  return Buffer.from(spkiOf(privateKey)).equals(Buffer.from(spki));
}

/** The largest RSA modulus a CSR may carry: no sidecar makes larger keys, and verifying costs grow fast. */
export const MAX_CSR_RSA_BITS = 8192;

/**
 * The largest RSA public exponent a CSR may carry: Go's crypto/rsa (checkPub, which also refuses
 * e < 2), and so istiod, refuses anything above it; and a long exponent makes every verification
 * dear (a 3072-bit one costs ≈ 60× the usual 65537's), which a caller could otherwise choose.
 */
export const MAX_CSR_RSA_EXPONENT = 2n ** 31n - 1n;

/**
 * The key type of a CSR's public key. keyTypeOf's rules, except that RSA may have any modulus
 * from 2048 to MAX_CSR_RSA_BITS bits (workloads choose their key; the CA signs only the fixed
 * KeyType sizes). RSA below 2048 bits → `weak-key`; above the maximum → `unsupported`. The RSA
 * public exponent must be odd and at least 3 (`weak-key`: with e = 1 any padded digest is its
 * own signature, so the CSR would prove nothing; an even e is no RSA key), and at most
 * MAX_CSR_RSA_EXPONENT (`unsupported`).
 */
export function csrKeyTypeOf(key: KeyObject, subject?: string): CsrKeyType {
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048)
      throw err('weak-key', `RSA key of ${bits} bits: at least 2048 required`, subject);
    if (bits > MAX_CSR_RSA_BITS) {
      throw err('unsupported', `RSA key of ${bits} bits: at most ${MAX_CSR_RSA_BITS}`, subject);
    }
    const e = key.asymmetricKeyDetails?.publicExponent ?? 0n;
    if (e < 3n || e % 2n === 0n) {
      throw err('weak-key', `RSA public exponent ${e}: it must be odd and at least 3`, subject);
    }
    if (e > MAX_CSR_RSA_EXPONENT) {
      throw err(
        'unsupported',
        `RSA public exponent of ${e.toString(2).length} bits: at most 2^31 - 1`,
        subject,
      );
    }
    return `rsa-${bits}`;
  }
  return keyTypeOf(key, subject);
}

/**
 * Reads a CSR's SubjectPublicKeyInfo (DER) into a KeyObject and its type: `malformed` when node
 * cannot read it, then csrKeyTypeOf's rules (`weak-key`, `unsupported`).
 */
export function publicKeyFromSpki(
  spki: Uint8Array,
  subject?: string,
): { publicKey: KeyObject; keyType: CsrKeyType } {
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch (e) {
    throw err('malformed', 'the public key does not parse', subject, e);
  }
  return { publicKey, keyType: csrKeyTypeOf(publicKey, subject) };
}
