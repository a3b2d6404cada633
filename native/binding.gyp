{
  "targets": [
    {
      "target_name": "castellan_native",
      "sources": ["p256_verify.c"],
      # No -Werror: a new compiler's warning must not cost the addon (and the image its build).
      # -z now: a missing OpenSSL symbol fails the load (the CA then uses node:crypto), not a call.
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["-Wl,-z,now"],
      "defines": ["NAPI_VERSION=8", "OPENSSL_SUPPRESS_DEPRECATED"]
    }
  ]
}
