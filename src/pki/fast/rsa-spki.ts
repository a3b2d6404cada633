import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  derChildren,
  derElementEquals,
  readDerElement,
  RSA_ENCRYPTION_ALGORITHM,
  type DerElement,
} from '../der.js';

/**
 * An RSA SubjectPublicKeyInfo imported from its modulus and exponent (JWK) instead of its DER,
 * for OpenSSL 3.0, whose DER decoders make that import 3–4× dearer: an RSA-2048 key plus a
 * signature check costs ≈ 145 µs of CPU from SPKI DER and ≈ 42 µs this way, check included
 * (Node 20.20 / OpenSSL 3.0.19; on 3.5 both cost ≈ 42 µs). RSA-2048 is what Istio's sidecars send
 * by default (pilot-agent's ECC_SIGNATURE_ALGORITHM unset, WORKLOAD_RSA_KEY_SIZE 2048).
 *
 * The key is taken only when OpenSSL's own SPKI DER encoding of it is the input byte for byte:
 * then the DER import would have read exactly this key. Any other input — another layout, a
 * non-minimal integer, a negative modulus, a key the JWK import refuses — is undefined, and the
 * caller's DER import decides, so results and errors stay the reference's
 * (test/pki/fast/p256-spki.test.ts compares them on real and mutated keys).
 */
export function rsaPublicKeyFromComponents(spki: Uint8Array): KeyObject | undefined {
  const components = rsaComponentsOf(spki);
  if (!components) return undefined;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: { kty: 'RSA', ...components }, format: 'jwk' });
  } catch {
    return undefined;
  }
  try {
    const canonical = key.export({ type: 'spki', format: 'der' });
    return canonical.equals(spki) ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The modulus and exponent (base64url, as JWK) of an SPKI laid out as
 * SEQUENCE { rsaEncryption with NULL, BIT STRING (no unused bits) { SEQUENCE { n, e } } },
 * or undefined. Only the layout is read here; the export comparison above checks the rest.
 */
function rsaComponentsOf(spki: Uint8Array): { n: string; e: string } | undefined {
  try {
    const outer = readDerElement(spki);
    if (outer.end !== spki.length || spki[0] !== 0x30) return undefined;
    const [algorithm, bits, extra] = derChildren(spki, outer);
    if (
      !algorithm ||
      !bits ||
      extra ||
      !derElementEquals(spki, algorithm, RSA_ENCRYPTION_ALGORITHM)
    ) {
      return undefined;
    }
    if (spki[bits.start] !== 0x03 || spki[bits.contentStart] !== 0) return undefined;
    const keyStart = bits.contentStart + 1;
    const rsaKey = readDerElement(spki, keyStart);
    if (spki[keyStart] !== 0x30 || rsaKey.end !== bits.end) return undefined;
    const [n, e, more] = derChildren(spki, rsaKey);
    if (!n || !e || more || spki[n.start] !== 0x02 || spki[e.start] !== 0x02) return undefined;
    return { n: unsignedBase64Url(spki, n), e: unsignedBase64Url(spki, e) };
  } catch {
    return undefined;
  }
}

/** An INTEGER's contents without the sign byte DER puts before a high bit, as base64url. */
function unsignedBase64Url(bytes: Uint8Array, el: DerElement): string {
  let start = el.contentStart;
  if (el.end - start > 1 && bytes[start] === 0) start++;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, el.end - start).toString('base64url');
}
