/*
 * Castellan's one native function: a CSR's P-256 ECDSA proof of possession, checked by the
 * OpenSSL that Node itself runs on (its symbols, resolved when Node loads this addon; no OpenSSL
 * of our own). Node 20 reaches OpenSSL 3.0 only through its key objects: importing a CSR's key
 * and checking one signature costs ≈ 124 µs of CPU there (WebCrypto `raw` import, then
 * crypto.verify; 179 µs from SPKI DER), against ≈ 62 µs here, which is OpenSSL's own
 * verification (`openssl speed ecdsap256`: ≈ 59 µs). docs/performance.md, "A native P-256 check".
 *
 * verifyP256(point, message, signature, digestBits) -> 1 | 0 | -1
 *   point      Uint8Array, the uncompressed point 04 || X || Y (65 bytes)
 *   message    Uint8Array, the signed bytes (a CSR's CertificationRequestInfo)
 *   signature  Uint8Array, the DER ECDSA-Sig-Value
 *   digestBits 256, 384 or 512: SHA-256/384/512 of the message is what was signed
 * Returns 1 when the signature verifies, 0 when it does not, and -1 when the point is not one of
 * P-256 or OpenSSL could not do its part (no P-256, no digest): then the caller's own key import
 * and node:crypto decide. Throws TypeError on arguments of the wrong type, nothing else.
 * Thread-safe: it keeps no state but the curve, made once. It leaves OpenSSL's error queue of the
 * calling thread as it found it (Node reads that queue after its own failures).
 *
 * OpenSSL 3 deprecates the EC_KEY functions used here but keeps them in every 3.x release; they
 * reach the curve's arithmetic without building an EVP_PKEY and an EVP_PKEY_CTX per key, which is
 * where Node's import and verification spend their extra time. ECDSA_verify is the function
 * OpenSSL's own provider calls, so what it accepts (DER re-encoded and compared, r and s in
 * range) is what crypto.verify accepts. It runs libcrypto's ECDSA, not a FIPS provider's: the
 * loader (src/pki/fast/native-p256.ts) does not use this addon when Node runs in FIPS mode. The
 * addon is linked with -z now, so a build whose OpenSSL lacks one of these symbols fails to load
 * (and the CA uses node:crypto) instead of failing at its first call.
 */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>

#define P256_POINT_LENGTH 65

static EC_GROUP *p256;
static pthread_once_t p256_once = PTHREAD_ONCE_INIT;

static void make_p256(void) { p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1); }

/* The bytes of a Uint8Array (a Buffer is one), or 0 when the value is not one. */
static int uint8_bytes(napi_env env, napi_value value, const unsigned char **data, size_t *length) {
  bool is_typed_array = false;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array) return 0;
  napi_typedarray_type type;
  void *bytes = NULL;
  if (napi_get_typedarray_info(env, value, &type, length, &bytes, NULL, NULL) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  static const unsigned char empty[1] = {0};
  *data = bytes != NULL ? bytes : empty;
  return 1;
}

static napi_value int_value(napi_env env, int32_t n) {
  napi_value result = NULL;
  napi_create_int32(env, n, &result);
  return result;
}

static int32_t verify(const unsigned char *point, size_t point_length, const unsigned char *message,
                      size_t message_length, const unsigned char *signature,
                      size_t signature_length, int digest_bits) {
  if (point_length != P256_POINT_LENGTH || point[0] != 0x04) return -1;
  unsigned char digest[SHA512_DIGEST_LENGTH];
  int digest_length;
  const unsigned char *digested;
  switch (digest_bits) {
    case 256:
      digested = SHA256(message, message_length, digest);
      digest_length = SHA256_DIGEST_LENGTH;
      break;
    case 384:
      digested = SHA384(message, message_length, digest);
      digest_length = SHA384_DIGEST_LENGTH;
      break;
    default:
      digested = SHA512(message, message_length, digest);
      digest_length = SHA512_DIGEST_LENGTH;
      break;
  }
  /* OpenSSL 3 computes these through a fetched digest, which can fail. */
  if (digested == NULL) return -1;
  EC_KEY *key = EC_KEY_new();
  if (key == NULL || !EC_KEY_set_group(key, p256)) {
    EC_KEY_free(key);
    return -1;
  }
  int32_t result;
  const unsigned char *in = point;
  /* EC_POINT_oct2point refuses coordinates >= p and points off the curve. */
  if (o2i_ECPublicKey(&key, &in, (long)point_length) == NULL) {
    result = -1;
  } else if (signature_length > INT_MAX) {
    result = 0;
  } else {
    result = ECDSA_verify(0, digest, digest_length, signature, (int)signature_length, key) == 1;
  }
  EC_KEY_free(key);
  return result;
}

static napi_value verify_p256(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  const unsigned char *point, *message, *signature;
  size_t point_length, message_length, signature_length;
  int32_t digest_bits = 0;
  if (argc < 4 || !uint8_bytes(env, argv[0], &point, &point_length) ||
      !uint8_bytes(env, argv[1], &message, &message_length) ||
      !uint8_bytes(env, argv[2], &signature, &signature_length) ||
      napi_get_value_int32(env, argv[3], &digest_bits) != napi_ok ||
      (digest_bits != 256 && digest_bits != 384 && digest_bits != 512)) {
    napi_throw_type_error(env, NULL,
                          "verifyP256(point, message, signature: Uint8Array, digestBits: 256 | "
                          "384 | 512)");
    return NULL;
  }
  /* Whatever OpenSSL pushes on this thread's error queue from here on is popped before return. */
  ERR_set_mark();
  pthread_once(&p256_once, make_p256);
  int32_t result = p256 == NULL ? -1
                                : verify(point, point_length, message, message_length, signature,
                                         signature_length, digest_bits);
  ERR_pop_to_mark();
  return int_value(env, result);
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "verifyP256", NAPI_AUTO_LENGTH, verify_p256, NULL, &fn) != napi_ok)
    return NULL;
  if (napi_set_named_property(env, exports, "verifyP256", fn) != napi_ok) return NULL;
  return exports;
}
