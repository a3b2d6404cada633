#!/usr/bin/env bash
# Installs the Debian packages the benchmark needs, only when missing (idempotent).
# The bench uses: h2load (nghttp2-client), the load generator of its primary end-to-end cases,
# and openssl (`openssl speed`, each case's limit).
# A failed install is reported but not fatal: the bench then runs without (the h2load cases fail
# with "h2load not found", the limits show as "-").
set -euo pipefail
need=()
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -eq 0 ]; then
  echo "setup-bench-deps: all present"
  exit 0
fi
echo "setup-bench-deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; }; then
  echo "setup-bench-deps: could not install ${need[*]}; the cases that need them will fail" >&2
fi
