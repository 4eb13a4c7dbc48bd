// Package harness sets up what a local pod VM run needs on this host — a
// running libvirtd, a private bridge, the pod VM image, an OCI registry on
// the bridge holding a busybox image, and a peerpodd process with the libvirt
// provider — for the end-to-end tests, the benchmarks and `make demo`.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
)

// RepoRoot is the module root (the directory of go.mod).
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the peerpod module")
	}
	return filepath.Dir(mod), nil
}

// StartLibvirtd runs scripts/libvirtd-start.sh (a no-op when libvirtd answers).
func StartLibvirtd(ctx context.Context, root string) error {
	if _, err := exec.LookPath("libvirtd"); err != nil {
		return fmt.Errorf("libvirtd is not installed (scripts/install-deps.sh installs it): %w", err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", "libvirtd-start.sh")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start libvirtd: %v\n%s", err, out)
	}
	return nil
}

// Bridge is a host bridge made for one run.
type Bridge struct {
	Name    string
	Gateway netip.Addr // the bridge's address, the guests' gateway
	Prefix  netip.Prefix
}

// NewBridge makes a bridge with a random name and a random /24 in 10.200.0.0/13.
func NewBridge() (*Bridge, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	name := "ppe" + hex.EncodeToString(b[:4])
	n := binary.BigEndian.Uint16(b[4:]) % 2048
	gw := netip.AddrFrom4([4]byte{10, byte(200 + n/256), byte(n % 256), 1})
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("add bridge %s: %w", name, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		_ = netlink.LinkDel(br)
		return nil, fmt.Errorf("address %s on %s: %w", gw, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		_ = netlink.LinkDel(br)
		return nil, fmt.Errorf("bridge %s up: %w", name, err)
	}
	return &Bridge{Name: name, Gateway: gw, Prefix: netip.PrefixFrom(gw, 24)}, nil
}

// Ports lists the interfaces (guest taps) attached to the bridge.
func (b *Bridge) Ports() ([]string, error) {
	ents, err := os.ReadDir("/sys/class/net/" + b.Name + "/brif")
	if err != nil {
		return nil, fmt.Errorf("ports of %s: %w", b.Name, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// Close deletes the bridge.
func (b *Bridge) Close() error {
	l, err := netlink.LinkByName(b.Name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

// Image is a built pod VM kernel and initramfs.
type Image struct {
	Kernel, Initrd string
}

// BuildImage runs podvm-image/build.sh with initPkg as /init
// ("./cmd/podvm-agent", or "./podvm-image/cmd/tcpinit"), cached by inputs.
func BuildImage(ctx context.Context, root, initPkg string) (Image, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "podvm-image", "build.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PODVM_INIT_PKG="+initPkg, "PODVM_NAME="+filepath.Base(initPkg))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Image{}, fmt.Errorf("build pod VM image (%s): %v\n%s", initPkg, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	img := Image{Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initramfs")}
	for _, f := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return Image{}, fmt.Errorf("pod VM image: %w", err)
		}
	}
	return img, nil
}

// GoBuild builds pkg into dir and returns the binary's path.
func GoBuild(ctx context.Context, root, pkg, dir string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// FreePort returns a TCP port free on addr right now.
func FreePort(addr string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
