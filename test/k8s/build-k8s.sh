#!/usr/bin/env bash
# Builds kube-apiserver from k8s.io/kubernetes with every k8s.io staging module replaced
# by its published release, in a throwaway module outside the project's go.mod.
# The result is cached under $OUT/<version>/; a second run with the same version is a no-op.
#
# usage: build-k8s.sh OUTDIR [K8S_VERSION] [STAGING_VERSION]
set -euo pipefail

out=${1:?usage: build-k8s.sh OUTDIR [K8S_VERSION] [STAGING_VERSION]}
k8s_version=${2:-v1.34.4}
staging_version=${3:-v0.34.4}
go=${GO:-go}

mkdir -p "$out"
out=$(cd "$out" && pwd) # the build runs in another directory
dest="$out/$k8s_version"
if [ -x "$dest/kube-apiserver" ] && [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$k8s_version $staging_version" ]; then
	echo "kube-apiserver $k8s_version cached in $dest"
	exit 0
fi
mkdir -p "$dest"

work=$(mktemp -d "${TMPDIR:-/tmp}/peerpod-k8sbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT

export GOFLAGS=-mod=mod GOTOOLCHAIN=local GOWORK=off
src=$(cd "$work" && "$go" mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] || { echo "cannot download k8s.io/kubernetes@$k8s_version" >&2; exit 1; }

{
	echo "module peerpod.local/k8sbuild"
	echo
	echo "go 1.24.0"
	echo
	echo "require k8s.io/kubernetes $k8s_version"
	echo
	# Same dependency versions as upstream's own go.mod.
	sed -n '/^require (/,/^)/p' "$src/go.mod"
	echo
	echo "replace ("
	sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 '"$staging_version"'#p' "$src/go.mod"
	echo ")"
} >"$work/go.mod"

start=$(date +%s)
(cd "$work" && "$go" build -trimpath -ldflags='-s -w' -o "$dest/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
mv "$dest/kube-apiserver.tmp" "$dest/kube-apiserver"
echo "$k8s_version $staging_version" >"$dest/.stamp"
echo "built kube-apiserver $k8s_version in $(( $(date +%s) - start ))s into $dest"
