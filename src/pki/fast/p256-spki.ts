import { KeyObject, createPublicKey, webcrypto } from 'node:crypto';
import type { CsrKeyType } from '../key-type.js';
import { csrKeyTypeOf, publicKeyFromSpki } from '../keys.js';
import { rsaPublicKeyFromComponents } from './rsa-spki.js';

/**
 * The DER prefix of every P-256 SubjectPublicKeyInfo in its one canonical shape:
 * SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04 || X || Y }.
 */
const P256_SPKI_PREFIX = Buffer.from(
  '3059301306072a8648ce3d020106082a8648ce3d030107034200' + '04',
  'hex',
);
const P256_SPKI_LENGTH = P256_SPKI_PREFIX.length + 64;
/** The field prime of P-256: a coordinate must be below it (DER import refuses x + p, y + p). */
const P256_PRIME = Buffer.from(
  'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
  'hex',
);

/**
 * publicKeyFromSpki for the hot path, where OpenSSL's DER decoders are slow
 * (IMPORTS_FROM_COMPONENTS: OpenSSL 3.0). On OpenSSL 3.0, Node imports a key from JWK far more
 * cheaply than from SPKI DER: a P-256 key ≈ 100 against ≈ 190 µs on the event loop, an RSA-2048
 * key with its signature check ≈ 42 against ≈ 145 µs. So the shape nearly every sidecar sends —
 * an uncompressed P-256 point in the canonical encoding, byte for byte, or an RSA key
 * (rsa-spki.ts, taken only when OpenSSL re-encodes it to the same bytes) — is imported from its
 * components. Anything else, and any key the JWK import refuses (a point off the curve), goes
 * through publicKeyFromSpki itself, so results and errors are the reference's.
 * test/pki/fast/p256-spki.test.ts compares both on valid, off-curve, out-of-range and mutated keys.
 */
export function publicKeyFromSpkiFast(
  spki: Uint8Array,
  subject?: string,
): { publicKey: KeyObject; keyType: CsrKeyType } {
  const point = canonicalP256Coordinates(spki);
  if (!point) {
    const rsa = rsaPublicKeyFromComponents(spki);
    if (!rsa) return publicKeyFromSpki(spki, subject);
    return { publicKey: rsa, keyType: csrKeyTypeOf(rsa, subject) };
  }
  const { x, y } = point;
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: x.toString('base64url'), y: y.toString('base64url') },
      format: 'jwk',
    });
  } catch {
    return publicKeyFromSpki(spki, subject);
  }
  return { publicKey, keyType: csrKeyTypeOf(publicKey, subject) };
}

/**
 * The coordinates of a canonical P-256 SubjectPublicKeyInfo when both are below the field prime
 * (JWK or raw import would reduce an out-of-range coordinate; the DER import refuses it), else
 * undefined: that key goes through the reference import.
 */
function canonicalP256Coordinates(spki: Uint8Array): { x: Buffer; y: Buffer } | undefined {
  if (!isCanonicalP256Spki(spki)) return undefined;
  const x = Buffer.from(spki.buffer, spki.byteOffset + P256_SPKI_PREFIX.length, 32);
  const y = Buffer.from(spki.buffer, spki.byteOffset + P256_SPKI_PREFIX.length + 32, 32);
  if (Buffer.compare(x, P256_PRIME) >= 0 || Buffer.compare(y, P256_PRIME) >= 0) return undefined;
  return { x, y };
}

/**
 * Whether canonical P-256 and RSA keys are imported from their components (publicKeyFromSpkiFast's
 * JWK, publicKeyFromSpkiRaw's WebCrypto `raw`) on an OpenSSL of this version, rather than from
 * their SPKI DER (publicKeyFromSpki, the reference) like every other key.
 *
 * The coordinates pay where OpenSSL's DER decoders are slow, and only there. Import plus the CSR's
 * signature check, µs of CPU per CSR, median of 7 interleaved rounds on this 2-core VM
 * (2026-12-07): OpenSSL 3.0.19 (Node 20.20) WebCrypto raw 148, JWK 172, SPKI DER 204; OpenSSL
 * 3.5.9 (Node 24.22) SPKI DER 96, JWK 94, WebCrypto raw 120 — WebCrypto's own layer (a CryptoKey
 * per CSR) then costs more than the decoder. Versions between were not measured and keep the
 * coordinates. Both ways give the same key or the same error (test/pki/fast/p256-spki.test.ts).
 */
export function importsFromComponents(opensslVersion: string): boolean {
  const m = /^(\d+)\.(\d+)\./.exec(opensslVersion);
  if (!m) return true;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major < 3 || (major === 3 && minor < 5);
}

/** importsFromComponents for the OpenSSL this Node runs on. */
export const IMPORTS_FROM_COMPONENTS = importsFromComponents(process.versions.openssl);

const P256_ECDSA = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/**
 * publicKeyFromSpkiFast for the crypto thread, where the import may be asynchronous: the
 * canonical P-256 point is imported through WebCrypto's `raw` format, the cheapest of Node's
 * three ways in on OpenSSL 3.0 (used only there, IMPORTS_FROM_COMPONENTS, and only where the
 * native check of native-p256.ts, cheaper still, was not built). Measured here (Node
 * 20.20, loaded 2-core VM), µs of CPU per import: SPKI DER 240, JWK 145, WebCrypto raw 87; the
 * issue's quieter figures 95 / 64 / 45. Any other shape (RSA included: the crypto thread reads
 * those with publicKeyFromSpkiFast), and any point the import refuses, goes through
 * publicKeyFromSpki, so results and errors
 * are the reference's (test/pki/fast/p256-spki.test.ts).
 */
export async function publicKeyFromSpkiRaw(
  spki: Uint8Array,
  subject?: string,
): Promise<{ publicKey: KeyObject; keyType: CsrKeyType }> {
  if (!canonicalP256Coordinates(spki)) return publicKeyFromSpki(spki, subject);
  let publicKey: KeyObject;
  try {
    publicKey = KeyObject.from(
      await webcrypto.subtle.importKey('raw', p256PointOf(spki), P256_ECDSA, true, ['verify']),
    );
  } catch {
    return publicKeyFromSpki(spki, subject);
  }
  return { publicKey, keyType: csrKeyTypeOf(publicKey, subject) };
}

/** The point of a canonical P-256 SubjectPublicKeyInfo (isCanonicalP256Spki): 04 || X || Y. */
export function p256PointOf(spki: Uint8Array): Uint8Array {
  // The BIT STRING's contents after its unused-bits byte.
  return spki.subarray(P256_SPKI_PREFIX.length - 1);
}

/** A P-256 SubjectPublicKeyInfo in its canonical shape (an uncompressed point, named curve). */
export function isCanonicalP256Spki(spki: Uint8Array): boolean {
  return spki.length === P256_SPKI_LENGTH && startsWith(spki, P256_SPKI_PREFIX);
}

function startsWith(bytes: Uint8Array, prefix: Buffer): boolean {
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}
