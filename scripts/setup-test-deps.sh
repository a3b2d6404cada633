#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when missing (idempotent).
# The tests use: openssl (the CLI verifies every certificate we make) and Debian's
# python3-grpcio / python3-grpc-tools (a gRPC client we did not write), run with /usr/bin/python3.
set -euo pipefail
source "$(dirname "$0")/apt-install-missing.sh"
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need+=(python3-grpcio)
/usr/bin/python3 -c 'import grpc_tools.protoc' >/dev/null 2>&1 || need+=(python3-grpc-tools)
apt_install_missing setup-test-deps "${need[@]}"
