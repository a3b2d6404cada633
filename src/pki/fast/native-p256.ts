import { getFips } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * A CSR's P-256 proof of possession checked by native/p256_verify.c: OpenSSL's own ECDSA
 * verification, in the OpenSSL Node runs on, without a KeyObject. On Node 20 (OpenSSL 3.0) a key
 * import plus crypto.verify costs ≈ 124 µs of CPU per CSR at best (WebCrypto `raw`), this ≈ 62 µs;
 * on Node 24 (OpenSSL 3.5) ≈ 84 µs against ≈ 63 (docs/performance.md, "A native P-256 check").
 *
 * `point` is 04 || X || Y; `digestBits` names the SHA-2 digest the signature algorithm uses.
 * Returns P256_VALID, P256_BAD_SIGNATURE, or P256_BAD_POINT (not a point of P-256, or OpenSSL could
 * not check it: the caller's key import then reports what the reference reports).
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
 * A signature made once with node:crypto (P-256, SHA-256) over SELF_TEST_MESSAGE, which the
 * addon must accept, and refuse with one bit flipped, before it is used.
 */
const SELF_TEST_POINT = Buffer.from(
  '04b1228bbf7d15901394768c5c82856b76e8f405a9f3acc92d273a4677290632c1' +
    '8aec586af211e1997fefc96b3a8f9def875ff33d43720b78da8524a5fe1c422f',
  'hex',
);
const SELF_TEST_MESSAGE = Buffer.from('castellan: the native P-256 check checks itself');
const SELF_TEST_SIGNATURE = Buffer.from(
  '30440220196d2306cad7dcf55852a64e0824efe0f6679b40b8a9e2cfee61d35fcbc6c535' +
    '02205bd040c581725c26ab77ae1f45330c4d560969a002da340ffbbd7c4821efc536',
  'hex',
);

/** Whether `verify` answers the self-test as OpenSSL's ECDSA must: valid, bad, not a point. */
function passesSelfTest(verify: NativeP256Verify): boolean {
  const flipped = Buffer.from(SELF_TEST_SIGNATURE);
  flipped.writeUInt8(flipped.readUInt8(flipped.length - 1) ^ 1, flipped.length - 1);
  const offCurve = Buffer.from(SELF_TEST_POINT);
  offCurve.writeUInt8(offCurve.readUInt8(64) ^ 1, 64);
  try {
    return (
      verify(SELF_TEST_POINT, SELF_TEST_MESSAGE, SELF_TEST_SIGNATURE, 256) === P256_VALID &&
      verify(SELF_TEST_POINT, SELF_TEST_MESSAGE, flipped, 256) === P256_BAD_SIGNATURE &&
      verify(offCurve, SELF_TEST_MESSAGE, SELF_TEST_SIGNATURE, 256) === P256_BAD_POINT
    );
  } catch {
    return false;
  }
}

/** What the loader needs to know of the running Node. */
export interface NativeP256Platform {
  /** process.versions.openssl */
  readonly opensslVersion: string;
  /** crypto.getFips(): FIPS mode keeps every check in node:crypto (the FIPS provider). */
  readonly fips: boolean;
}

/**
 * Loads the addon at `path` for the running Node. The addon is built against OpenSSL 3.0's
 * headers and resolves OpenSSL's symbols in the running Node: OpenSSL keeps its ABI within a
 * major version, so any 3.x works and nothing else is tried. In FIPS mode it is not loaded: it
 * runs libcrypto's ECDSA, not the FIPS provider's. It is used only after it passes a self-test.
 */
export function loadNativeP256(
  platform: NativeP256Platform,
  path = ADDON_PATH,
  load: (path: string) => unknown = createRequire(import.meta.url),
): NativeP256Binding {
  const { opensslVersion, fips } = platform;
  if (!/^3\.\d+\./.test(opensslVersion)) {
    return { reason: `built for OpenSSL 3, and Node runs on OpenSSL ${opensslVersion || '?'}` };
  }
  if (fips) return { reason: 'Node runs in FIPS mode: every check stays with its FIPS provider' };
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
  if (!passesSelfTest(verify as NativeP256Verify)) {
    return {
      reason: `${path} failed its self-test (a known signature, a flipped one, a bad point)`,
    };
  }
  return { verify: verify as NativeP256Verify };
}

/** The addon of this installation, loaded once. */
export const NATIVE_P256 = loadNativeP256({
  opensslVersion: process.versions.openssl,
  fips: getFips() === 1,
});
