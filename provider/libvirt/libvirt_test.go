package libvirt_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/libvirt"
	"github.com/peerpod/peerpod/provider/libvirt/libvirttest"
	"github.com/peerpod/peerpod/provider/providertest"
)

type env struct {
	bridge  string
	dataDir string
	cfg     *libvirt.Config
}

// setup starts libvirtd, makes a bridge and builds the TCP-only test image.
func setup(t *testing.T, extra map[string]string) env {
	t.Helper()
	libvirttest.Libvirtd(t)
	img := libvirttest.BuildImage(t, "./podvm-image/cmd/tcpinit")
	br, _ := libvirttest.Bridge(t)
	dd := libvirttest.DataDir(t)
	vars := map[string]string{
		"LIBVIRT_NET":      br,
		"LIBVIRT_KERNEL":   img.Kernel,
		"LIBVIRT_INITRD":   img.Initrd,
		"LIBVIRT_MEMORY":   "256",
		"LIBVIRT_DATA_DIR": dd,
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := libvirt.LoadConfig(libvirttest.Getenv(vars))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return env{bridge: br, dataDir: dd, cfg: cfg}
}

func newProvider(t *testing.T, cfg *libvirt.Config) *libvirt.Provider {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := libvirt.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestConformance(t *testing.T) {
	e := setup(t, nil)
	providertest.Run(t, func(t *testing.T) provider.Provider { return newProvider(t, e.cfg) })
	assertNoLeftovers(t, e)
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func request(t *testing.T, sid string) provider.CreateRequest {
	t.Helper()
	name, err := provider.VMName("boot", sid)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := userdata.Encode(&userdata.Config{Version: userdata.Version, SandboxID: sid, VMName: name,
		TunnelCA: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", Attester: userdata.AttesterFake})
	if err != nil {
		t.Fatal(err)
	}
	return provider.CreateRequest{
		Name: name, SandboxID: sid, UserData: ud,
		Tags: provider.Tags(provider.Owner{ClusterID: "test", Node: "n1", SandboxID: sid}, nil),
	}
}

// TestBootAnswers boots the image and waits for the guest's TCP answer on its
// pool address, then deletes it and checks nothing is left.
func TestBootAnswers(t *testing.T) {
	e := setup(t, nil)
	p := newProvider(t, e.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sid := randomID(t)
	inst, err := p.Create(ctx, request(t, sid))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = p.Delete(context.Background(), inst.ID) })
	if ud, err := os.ReadFile(filepath.Join(e.dataDir, inst.Name+".userdata")); err != nil || len(ud) == 0 {
		t.Fatalf("user data file for fw_cfg: %v (%d bytes)", err, len(ud))
	}
	addr := net.JoinHostPort(inst.IPs[0].String(), "15150")
	if err := waitAnswer(ctx, addr); err != nil {
		console, _ := os.ReadFile(filepath.Join(e.dataDir, inst.Name+".console.log"))
		t.Fatalf("guest %s (virt=%s): %v\nconsole:\n%s", addr, p.VirtType(), err, console)
	}
	if ports := libvirttest.BridgePorts(t, e.bridge); len(ports) != 1 {
		t.Fatalf("bridge ports while running = %v, want one tap", ports)
	}
	if err := p.Delete(ctx, inst.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertNoLeftovers(t, e)
}

// waitAnswer dials addr until the guest says "ok".
func waitAnswer(ctx context.Context, addr string) error {
	var last error
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && line == "ok\n" {
				return nil
			}
			last = fmt.Errorf("read %q: %v", line, err)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer: %v (%w)", last, ctx.Err())
}

// assertNoLeftovers checks no domain uses the bridge, no tap is attached and
// the data directory is empty.
func assertNoLeftovers(t *testing.T, e env) {
	t.Helper()
	if ports := libvirttest.BridgePorts(t, e.bridge); len(ports) != 0 {
		t.Errorf("taps left on %s: %v", e.bridge, ports)
	}
	ents, err := os.ReadDir(e.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		t.Errorf("file left in data dir: %s", ent.Name())
	}
	p := newProvider(t, e.cfg)
	left, err := p.List(context.Background(), map[string]string{provider.TagManaged: "true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range left {
		for _, ip := range in.IPs {
			if e.cfg.Network != "" && ip.IsValid() && sameSubnet(t, e.bridge, ip.String()) {
				t.Errorf("domain left: %s %s", in.Name, ip)
			}
		}
	}
}

func sameSubnet(t *testing.T, bridge, ip string) bool {
	t.Helper()
	ifc, err := net.InterfaceByName(bridge)
	if err != nil {
		return false
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.Contains(net.ParseIP(ip)) {
			return true
		}
	}
	return false
}

// TestLaunchSecurityRefused: this libvirt cannot start SEV-SNP or TDX guests;
// the define is refused and libvirt's own message reaches the caller, with
// nothing left behind.
func TestLaunchSecurityRefused(t *testing.T) {
	for _, kind := range []string{libvirt.LaunchSNP, libvirt.LaunchTDX} {
		t.Run(kind, func(t *testing.T) {
			e := setup(t, map[string]string{
				"LIBVIRT_LAUNCH_SECURITY": kind,
				"LIBVIRT_EFI_FIRMWARE":    "/usr/share/OVMF/OVMF.fd",
			})
			if _, err := os.Stat(e.cfg.Firmware); err != nil {
				e.cfg.Firmware = "/usr/share/qemu/OVMF.fd"
			}
			p := newProvider(t, e.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			inst, err := p.Create(ctx, request(t, randomID(t)))
			if err == nil {
				_ = p.Delete(ctx, inst.ID)
				t.Skipf("this host accepted a %s domain (it has the hardware); nothing to refuse", kind)
			}
			var le golibvirt.Error
			if !errors.As(err, &le) || le.Message == "" {
				t.Fatalf("Create %s: %v; want libvirt's own error inside", kind, err)
			}
			t.Logf("libvirt said: %s", le.Message)
			if !errors.Is(err, provider.ErrInvalidConfig) {
				t.Errorf("Create %s: class %v, want %v", kind, provider.ClassOf(err), provider.ErrInvalidConfig)
			}
			assertNoLeftovers(t, e)
		})
	}
}

func TestNewRejectsUnknownNetwork(t *testing.T) {
	e := setup(t, nil)
	e.cfg.Network = "nosuchbr0"
	_, err := libvirt.New(context.Background(), e.cfg)
	if !errors.Is(err, provider.ErrInvalidConfig) {
		t.Fatalf("New with LIBVIRT_NET=nosuchbr0: %v, want invalid configuration", err)
	}
}
