#!/usr/bin/env bash
# Starts libvirtd by hand on a machine without systemd (CI, containers) and waits
# for its socket. Idempotent: does nothing when a libvirtd already answers.
# Needs root and the packages in scripts/deps/libvirt.txt.
set -euo pipefail
sock=/var/run/libvirt/libvirt-sock
answers() { [ -S "$sock" ] && virsh -c qemu:///system version >/dev/null 2>&1; }
if answers; then exit 0; fi
if ! command -v libvirtd >/dev/null; then
  echo "libvirtd-start: libvirtd is not installed (run scripts/install-deps.sh)" >&2
  exit 1
fi
# The Debian qemu driver refuses to start without its user and group.
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent group kvm >/dev/null || groupadd -r kvm
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
# QEMU runs as root and writes its own log files, so virtlogd is not needed.
conf=/etc/libvirt/qemu.conf
marker="# peerpod: local pod VMs"
if ! grep -qF "$marker" "$conf" 2>/dev/null; then
  mkdir -p /etc/libvirt
  cat >>"$conf" <<CONF
$marker
user = "root"
group = "root"
dynamic_ownership = 0
stdio_handler = "file"
remember_owner = 0
CONF
fi
mkdir -p /var/run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu
# A stale pid file from a killed daemon stops libvirtd -d from starting.
if [ -f /var/run/libvirtd.pid ] && ! kill -0 "$(cat /var/run/libvirtd.pid)" 2>/dev/null; then
  rm -f /var/run/libvirtd.pid
fi
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 1 150); do
  if answers; then exit 0; fi
  sleep 0.1
done
echo "libvirtd-start: libvirtd did not answer on $sock within 15s" >&2
exit 1
