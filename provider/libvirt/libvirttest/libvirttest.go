// Package libvirttest gives tests what a libvirt pod VM needs on this host:
// a running libvirtd, a private bridge, and a built pod VM image.
package libvirttest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
)

// RepoRoot is the module's root directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Libvirtd starts libvirtd with scripts/libvirtd-start.sh unless one runs.
// It skips the test (one line) when not root or libvirtd is not installed.
func Libvirtd(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("libvirt tests need root")
	}
	if _, err := exec.LookPath("libvirtd"); err != nil {
		t.Skip("libvirtd not installed (scripts/install-deps.sh installs it)")
	}
	script := filepath.Join(RepoRoot(t), "scripts", "libvirtd-start.sh")
	if out, err := exec.Command(script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// Bridge makes a host bridge with a random name and a random /24 in
// 10.200.0.0/13 whose .1 is the bridge's address; removed at cleanup.
func Bridge(t testing.TB) (string, netip.Prefix) {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "pp" + hex.EncodeToString(b)[:8]
	n := binary.BigEndian.Uint16(b[2:]) % 2048 // 8 × 256 subnets
	gw := netip.AddrFrom4([4]byte{10, byte(200 + n/256), byte(n % 256), 1})
	pfx := netip.PrefixFrom(gw, 24)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		t.Fatalf("address %s on %s: %v", pfx, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatalf("bridge %s up: %v", name, err)
	}
	return name, pfx
}

// BridgePorts lists the interfaces (guest taps) attached to bridge.
func BridgePorts(t testing.TB, bridge string) []string {
	t.Helper()
	ents, err := os.ReadDir("/sys/class/net/" + bridge + "/brif")
	if err != nil {
		t.Fatalf("ports of %s: %v", bridge, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Image is a built pod VM kernel and initramfs.
type Image struct {
	Kernel, Initrd string
}

var buildMu sync.Mutex

// BuildImage runs podvm-image/build.sh with initPkg as /init ("./cmd/podvm-agent",
// or "./podvm-image/cmd/tcpinit" for a VM that only answers TCP). The build is
// cached by its inputs in _output/podvm.
func BuildImage(t testing.TB, initPkg string) Image {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	root := RepoRoot(t)
	name := filepath.Base(initPkg)
	cmd := exec.Command(filepath.Join(root, "podvm-image", "build.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PODVM_INIT_PKG="+initPkg, "PODVM_NAME="+name)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("build pod VM image (%s): %v\n%s", initPkg, err, stderr)
	}
	dir := strings.TrimSpace(string(out))
	img := Image{Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initramfs")}
	for _, f := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("pod VM image: %v", err)
		}
	}
	return img
}

// DataDir is a fresh directory for the provider's per-VM files.
func DataDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "peerpod-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Getenv turns a map into a getenv function for LoadConfig.
func Getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
