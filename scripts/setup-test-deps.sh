#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when missing (idempotent).
# The tests use: openssl (the CLI verifies every certificate we make) and Debian's
# python3-grpcio / python3-grpc-tools (a gRPC client we did not write), run with /usr/bin/python3,
# and Debian's kubernetes-client (kubectl, a Kubernetes client we did not write: it drives the
# fake API server in test/kube/kubectl.test.ts); softhsm2 (SoftHSM2, a real PKCS#11 module: the CA
# key inside a token, docs/hsm.md) and opensc (its pkcs11-tool reads the key's attributes, a
# PKCS#11 client we did not write). Then Node 24, the container image's runtime, and Node 26, the
# current LTS line (scripts/setup-node.sh), for test/platform/node24.test.ts and node26.test.ts.
set -euo pipefail
source "$(dirname "$0")/apt-install-missing.sh"
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need+=(python3-grpcio)
/usr/bin/python3 -c 'import grpc_tools.protoc' >/dev/null 2>&1 || need+=(python3-grpc-tools)
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
# pkcs11js (an optional npm dependency) compiles at `npm ci` with node-gyp against the running
# Node's headers: without a compiler it is silently left out and the HSM tests fail.
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
# Captured first: `grep -q` in a pipeline under pipefail can fail on the writer's SIGPIPE.
status=$(dpkg-query -W -f='${Status}' kubernetes-client 2>/dev/null || true)
if [[ $status != *"ok installed"* ]]; then
  policy=$(apt-cache policy kubernetes-client 2>/dev/null || true)
  if [[ $policy =~ Candidate:\ [0-9] ]]; then
    # The machine image ships /usr/bin/kubectl in another package (Google Cloud SDK's `kubectl`,
    # a dispatcher), and Debian's package has the same path, so dpkg refuses to unpack it. That
    # package's copy is diverted aside (to /usr/bin/kubectl.<package>) for Debian's to go in.
    owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
    if [ -n "$owner" ] && [ "$owner" != kubernetes-client ]; then
      sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      $sudo dpkg-divert --package kubernetes-client --rename \
        --divert "/usr/bin/kubectl.$owner" --add /usr/bin/kubectl
    fi
    need+=(kubernetes-client)
  else
    # Not in every Debian release (the package list has no candidate): the tests then use the
    # kubectl on PATH, and say which one.
    echo "setup-test-deps: Debian's kubernetes-client is not available here; kubectl on PATH: $(command -v kubectl || echo none)"
  fi
fi
apt_install_missing setup-test-deps "${need[@]}"
bash "$(dirname "$0")/setup-node.sh" 24
bash "$(dirname "$0")/setup-node.sh" 26
