#!/usr/bin/env bash
# Installs what the build, the tests and the demo need on a fresh Debian 12 machine
# (run as root). Idempotent: a second run installs nothing new.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(grep -hv '^\s*#' "$here"/deps/*.txt | tr -s ' \n' ' ')
missing=()
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
