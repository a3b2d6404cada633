#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when missing (idempotent).
# The tests use: openssl (the CLI verifies every certificate we make) and Debian's
# python3-grpcio / python3-grpc-tools (a gRPC client we did not write), run with /usr/bin/python3.
set -euo pipefail
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need+=(python3-grpcio)
/usr/bin/python3 -c 'import grpc_tools.protoc' >/dev/null 2>&1 || need+=(python3-grpc-tools)
if [ ${#need[@]} -eq 0 ]; then
  echo "setup-test-deps: all present"
  exit 0
fi
echo "setup-test-deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
