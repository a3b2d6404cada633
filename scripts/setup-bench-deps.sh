#!/usr/bin/env bash
# Installs the Debian packages the benchmark needs, only when missing (idempotent).
# The bench uses: h2load (nghttp2-client), the load generator of its primary end-to-end cases,
# openssl (`openssl speed`, each case's limit), softhsm2 (SoftHSM2, the PKCS#11 module of the
# HSM signing cases, bench/hsm.ts), and cfssl (golang-cfssl: Cloudflare's Go CA, the peer the
# end-to-end P-256 figures are compared with, bench/cfssl.ts).
# A failed install is reported but not fatal: the bench then runs without (the h2load cases fail
# with "h2load not found", the limits show as "-").
set -euo pipefail
source "$(dirname "$0")/apt-install-missing.sh"
need=()
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v cfssl >/dev/null 2>&1 || need+=(golang-cfssl)
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
if ! apt_install_missing setup-bench-deps "${need[@]}"; then
  echo "setup-bench-deps: could not install ${need[*]}; the cases that need them will fail" >&2
fi
