#!/usr/bin/env bash
# Sourced by the setup scripts: `apt_install_missing <who> <package>...` installs the given
# Debian packages with apt (through sudo when not root), non-interactively. Returns apt's status.
apt_install_missing() {
  local who=$1
  shift
  if [ $# -eq 0 ]; then
    echo "$who: all present"
    return 0
  fi
  echo "$who: installing $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}
