#!/usr/bin/env bash
# make demo: on a fresh Debian 12 machine (as root) installs what is missing,
# then builds everything and runs one pod in a local pod VM, step by step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (it installs packages, starts libvirtd, makes a bridge and a VM)" >&2
  exit 1
fi
command -v go >/dev/null || { echo "demo: Go is not installed" >&2; exit 1; }
start=$(date +%s)
./scripts/install-deps.sh
echo "==> dependencies present ($(( $(date +%s) - start ))s)"
exec go run ./test/e2e/demo
