#!/usr/bin/env bash
# Builds the libvirt pod VM image: the Debian cloud kernel (as an uncompressed
# vmlinux for PVH boot, plus its bzImage) and an initramfs with podvm-agent as
# /init, crun (or runc) and its libraries, the kernel modules the VM needs, the pause
# bundle and CA certificates. Outputs land in $PODVM_OUT (default
# _output/podvm) under a directory named by the hash of all inputs, with
# stable links:
#   $PODVM_OUT/vmlinux  $PODVM_OUT/vmlinuz  $PODVM_OUT/initramfs
# Same inputs give the same bytes (SOURCE_DATE_EPOCH, sorted entries).
#
# Environment:
#   PODVM_OUT          output directory
#   PODVM_INIT_PKG     Go package built as /init (default ./cmd/podvm-agent)
#   PODVM_NAME         name of the links (default: vmlinux/initramfs), for a second image
#   PODVM_COMPRESS     none | lz4 | gzip (default none: faster to boot under TCG, see docs)
#   PODVM_OCI_RUNTIME  crun | runc: the OCI runtime the agent runs containers with
#                      (default crun: a C binary that starts far faster than runc under TCG)
#   PODVM_KEEP         how many older images to keep besides the current ones (default 6)
#   KERNEL_PKG         Debian kernel package (default: what linux-image-cloud-amd64 depends on)
#   SOURCE_DATE_EPOCH  mtime of every entry (default 0, so the cache key does not move with commits)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${PODVM_OUT:-$root/_output/podvm}
init_pkg=${PODVM_INIT_PKG:-./cmd/podvm-agent}
name=${PODVM_NAME:-}
compress=${PODVM_COMPRESS:-none}
oci_runtime=${PODVM_OCI_RUNTIME:-crun}
# Modules: the boot loads only what the network needs before the agent starts
# (the NIC is on virtio-mmio in a microvm; user data comes from fw_cfg through
# its I/O ports, without a module); the "pci" set only on a machine with a PCI
# bus (the pc fallback); the "late" set loads in the background; "vxlan" loads
# on demand (agent/boot).
modules=virtio_mmio,virtio_net
pci_modules=virtio_pci
late_modules=overlay,veth,bridge,br_netfilter,tun,vsock
vxlan_modules=vxlan
: "${SOURCE_DATE_EPOCH:=0}"
export SOURCE_DATE_EPOCH
mkdir -p "$out/cache" "$out/bin"

log() { echo "podvm-image: $*" >&2; }

# 1. Kernel: download the .deb once, extract bzImage, modules and vmlinux.
if [ -z "${KERNEL_PKG:-}" ]; then
  KERNEL_PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  if [ -z "$KERNEL_PKG" ]; then
    KERNEL_PKG=$(ls "$out/cache" 2>/dev/null | grep '^linux-image-' | sort | tail -1 || true)
  fi
  if [ -z "$KERNEL_PKG" ] && [ "$(id -u)" = 0 ]; then
    log "package lists do not know linux-image-cloud-amd64: apt-get update"
    apt-get update -qq >/dev/null 2>&1 || true
    KERNEL_PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  fi
  [ -n "$KERNEL_PKG" ] || { log "cannot resolve linux-image-cloud-amd64 (run apt-get update)"; exit 1; }
fi
kdir=$out/cache/$KERNEL_PKG
if [ ! -f "$kdir/vmlinux" ]; then
  log "fetching $KERNEL_PKG"
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp/deb"
  (cd "$kdir.tmp/deb" && apt-get download "$KERNEL_PKG" >/dev/null 2>&1) ||
    (apt-get update -qq >/dev/null 2>&1; cd "$kdir.tmp/deb" && apt-get download "$KERNEL_PKG" >/dev/null 2>&1) || {
    log "apt-get download $KERNEL_PKG failed"; exit 1; }
  dpkg-deb -x "$kdir.tmp"/deb/*.deb "$kdir.tmp/x"
  cp "$kdir.tmp"/x/boot/vmlinuz-* "$kdir.tmp/vmlinuz"
  cp "$kdir.tmp"/x/boot/config-* "$kdir.tmp/config"
  mv "$kdir.tmp"/x/lib/modules/* "$kdir.tmp/modules"
  # The bzImage holds an lz4 (legacy frame) compressed vmlinux: find the frame and inflate it.
  off=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$kdir.tmp/vmlinuz" | head -1 | cut -d: -f1)
  [ -n "$off" ] || { log "no lz4 payload in $KERNEL_PKG's vmlinuz"; exit 1; }
  tail -c +$((off + 1)) "$kdir.tmp/vmlinuz" | lz4 -dc > "$kdir.tmp/vmlinux" 2>/dev/null || true
  head -c 4 "$kdir.tmp/vmlinux" | grep -q 'ELF' || { log "extracted vmlinux is not an ELF file"; exit 1; }
  rm -rf "$kdir.tmp/deb" "$kdir.tmp/x"
  rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
fi

# 2. Binaries, built reproducibly.
gobuild() { CGO_ENABLED=0 go build -trimpath -ldflags='-s -w -buildid=' -o "$1" "$2"; }
initname=$(basename "$init_pkg")
gobuild "$out/bin/$initname" "$init_pkg"
gobuild "$out/bin/pause" ./podvm-image/cmd/pause
go build -o "$out/bin/mkinitramfs" ./podvm-image/cmd/mkinitramfs
case $oci_runtime in
  crun) runtime=$(command -v crun || echo /usr/bin/crun); runtime_dest=/usr/bin/crun ;;
  runc) runtime=$(command -v runc || echo /usr/sbin/runc); runtime_dest=/usr/sbin/runc ;;
  *) log "PODVM_OCI_RUNTIME=$oci_runtime is not crun or runc"; exit 1 ;;
esac
[ -x "$runtime" ] || { log "$oci_runtime not found (apt-get install $oci_runtime)"; exit 1; }
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { log "$ca not found (apt-get install ca-certificates)"; exit 1; }
printf '{"ociVersion":"1.0.2","process":{"args":["/pause"],"cwd":"/","env":["PATH=/"]},"root":{"path":"rootfs","readonly":true}}\n' > "$out/bin/pause-config.json"

# 3. The initramfs, keyed by the hash of everything that goes in.
key=$( { sha256sum "$kdir/vmlinux" "$out/bin/$initname" "$out/bin/pause" "$out/bin/pause-config.json" \
          "$runtime" "$ca" podvm-image/initramfs/*.go podvm-image/cmd/mkinitramfs/*.go "$0" | cut -d' ' -f1;
         echo "$modules $pci_modules $late_modules $vxlan_modules $compress $SOURCE_DATE_EPOCH $initname $runtime_dest"; } | sha256sum | cut -c1-16)
dir=$out/$key
if [ ! -f "$dir/initramfs" ]; then
  mkdir -p "$dir.tmp"
  "$out/bin/mkinitramfs" -o "$dir.tmp/initramfs.cpio" \
    -init "$out/bin/$initname" \
    -kmod-tree "$kdir/modules" -modules "$modules" \
    -module-set pci="$pci_modules" -module-set late="$late_modules" -module-set vxlan="$vxlan_modules" \
    -binary "$runtime_dest=$runtime" \
    -binary /pause_bundle/rootfs/pause="$out/bin/pause" \
    -file /pause_bundle/config.json="$out/bin/pause-config.json" \
    -file /etc/ssl/certs/ca-certificates.crt="$ca" \
    -dir /etc -dir /run -dir /tmp -dir /proc -dir /sys -dir /dev -dir /var/lib -dir /root \
    -dir /pause_bundle/rootfs/proc -dir /pause_bundle/rootfs/sys -dir /pause_bundle/rootfs/dev -dir /pause_bundle/rootfs/etc
  case $compress in
    none) mv "$dir.tmp/initramfs.cpio" "$dir.tmp/initramfs" ;;
    lz4) lz4 -l -9 -q -f "$dir.tmp/initramfs.cpio" "$dir.tmp/initramfs" && rm "$dir.tmp/initramfs.cpio" ;;
    gzip) gzip -n -9 -c "$dir.tmp/initramfs.cpio" > "$dir.tmp/initramfs" && rm "$dir.tmp/initramfs.cpio" ;;
    *) log "PODVM_COMPRESS=$compress is not none, lz4 or gzip"; exit 1 ;;
  esac
  for f in vmlinux vmlinuz; do ln -f "$kdir/$f" "$dir.tmp/$f" 2>/dev/null || cp "$kdir/$f" "$dir.tmp/$f"; done
  echo "$KERNEL_PKG" > "$dir.tmp/kernel-package"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
ln -sfn "$key" "$out/${name:+$name-}current"
for f in vmlinux vmlinuz initramfs; do ln -sfn "${name:+$name-}current/$f" "$out/${name:+$name-}$f"; done

# 4. Older images go, but for the newest PODVM_KEEP and every one a
# *current link names (a pod VM booted from an older image keeps its
# kernel and initramfs open, so removing them does not disturb it).
keep=${PODVM_KEEP:-6}
inuse=" $(for l in "$out"/*current; do [ -L "$l" ] && readlink "$l"; done | tr '\n' ' ') "
ls -1dt "$out"/*/ | sed 's|/$||' | while read -r old; do
  k=${old##*/}
  case $k in *[!0-9a-f]*) continue ;; esac
  [ ${#k} -eq 16 ] || continue
  case $inuse in *" $k "*) continue ;; esac
  if [ "$keep" -gt 0 ]; then keep=$((keep - 1)); continue; fi
  rm -rf "$old"
done
log "kernel $KERNEL_PKG, init $init_pkg, initramfs $(du -k "$dir/initramfs" | cut -f1) KiB ($compress) in $dir"
echo "$dir"
