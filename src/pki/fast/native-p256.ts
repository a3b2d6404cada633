import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * A CSR's P-256 proof of possession checked by native/p256_verify.c: OpenSSL's own ECDSA
 * verification, in the OpenSSL Node runs on, without a KeyObject. On Node 20 (OpenSSL 3.0) a key
 * import plus crypto.verify costs ≈ 124 µs of CPU per CSR at best (WebCrypto `raw`), this ≈ 62 µs;
 * on Node 24 (OpenSSL 3.5) ≈ 84 µs against ≈ 63 (docs/performance.md, "A native P-256 check").
 *
 * `point` is 04 || X || Y; `digestBits` names the SHA-2 digest the signature algorithm uses.
 * Returns P256_VALID, P256_BAD_SIGNATURE, or P256_BAD_POINT (not a point of P-256: the caller's
 * key import then reports the error the reference reports).
 */
export type NativeP256Verify = (
  point: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
  digestBits: 256 | 384 | 512,
) => number;

export const P256_VALID = 1;
export const P256_BAD_SIGNATURE = 0;
export const P256_BAD_POINT = -1;

/** Where `npm run build` (scripts/build-native.mjs) puts the addon, from dist/src/pki/fast/. */
const ADDON_PATH = fileURLToPath(
  new URL('../../../../native/build/Release/castellan_native.node', import.meta.url),
);

/** The addon, or why there is none: the CA then checks P-256 CSRs with node:crypto. */
export type NativeP256Binding =
  | { readonly verify: NativeP256Verify; readonly reason?: undefined }
  | { readonly verify?: undefined; readonly reason: string };

/**
 * Loads the addon at `path` for an OpenSSL of `opensslVersion` (process.versions.openssl). The
 * addon is built against OpenSSL 3.0's headers and resolves OpenSSL's symbols in the running
 * Node: OpenSSL keeps its ABI within a major version, so any 3.x works and nothing else is tried.
 */
export function loadNativeP256(
  opensslVersion: string,
  path = ADDON_PATH,
  load: (path: string) => unknown = createRequire(import.meta.url),
): NativeP256Binding {
  if (!/^3\.\d+\./.test(opensslVersion)) {
    return { reason: `built for OpenSSL 3, and Node runs on OpenSSL ${opensslVersion || '?'}` };
  }
  let addon: unknown;
  try {
    addon = load(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    return {
      reason:
        code === 'MODULE_NOT_FOUND'
          ? `${path} was not built (npm run build compiles it with node-gyp)`
          : `${path} did not load: ${(e as Error).message}`,
    };
  }
  const verify = (addon as { verifyP256?: unknown } | null)?.verifyP256;
  if (typeof verify !== 'function') return { reason: `${path} has no verifyP256` };
  return { verify: verify as NativeP256Verify };
}

/** The addon of this installation, loaded once. */
export const NATIVE_P256 = loadNativeP256(process.versions.openssl);
