package podnet

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/podnet"
	"github.com/peerpod/peerpod/tunnel"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TAP)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
}

// send serves one net stream with cfg and returns the agent's reply; the
// stream stays open until the test ends.
func send(t *testing.T, m *Manager, cfg *podnet.Config) podnet.Reply {
	t.Helper()
	node, vm := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Handle(ctx, vm, tunnel.Header{Kind: tunnel.KindNet}); vm.Close(); close(done) }()
	t.Cleanup(func() { cancel(); node.Close(); <-done })
	_ = node.SetDeadline(time.Now().Add(30 * time.Second))
	if err := podnet.WriteMessage(node, cfg); err != nil {
		t.Fatal(err)
	}
	var r podnet.Reply
	if err := podnet.ReadMessage(node, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func inNS(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + path, "--"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestHandle(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "podns")
	m, err := New(Options{NetNSPath: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	bad := &podnet.Config{Mode: "gre", Interface: podnet.Interface{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1500}}
	if r := send(t, m, bad); !strings.Contains(r.Error, "gre") {
		t.Fatalf("bad mode: reply %+v", r)
	}
	if m.NetNS() != "" {
		t.Fatal("netns reported after a refused config")
	}
	cfg := &podnet.Config{
		Mode: podnet.ModeTunnel, VnetHdr: true,
		Interface: podnet.Interface{Name: "eth0", MAC: "02:00:00:aa:bb:cc", MTU: 9000, Addrs: []string{"10.8.0.2/24"}},
		Routes: []podnet.Route{
			{Dst: "10.9.0.0/16", Gw: "10.8.0.1"},
			{Gw: "10.8.0.1"},
		},
		Neighbors: []podnet.Neighbor{{IP: "10.8.0.99", MAC: "02:00:00:00:00:99"}},
	}
	if r := send(t, m, cfg); r.Error != "" {
		t.Fatalf("setup: %s", r.Error)
	}
	if m.NetNS() != path {
		t.Fatalf("NetNS() = %q, want %q", m.NetNS(), path)
	}
	link := inNS(t, path, "ip", "link", "show", "eth0")
	for _, want := range []string{"02:00:00:aa:bb:cc", "mtu 9000", "UP"} {
		if !strings.Contains(link, want) {
			t.Errorf("eth0 %q lacks %q", link, want)
		}
	}
	if a := inNS(t, path, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(a, "10.8.0.2/24") {
		t.Errorf("addresses %q", a)
	}
	routes := inNS(t, path, "ip", "route")
	for _, want := range []string{"default via 10.8.0.1", "10.9.0.0/16 via 10.8.0.1"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes %q lack %q", routes, want)
		}
	}
	if n := inNS(t, path, "ip", "neigh", "show", "nud", "permanent"); !strings.Contains(n, "10.8.0.99") {
		t.Errorf("neighbours %q", n)
	}
	// The node re-dialled: the same config is accepted, another refused.
	if r := send(t, m, cfg); r.Error != "" {
		t.Fatalf("same config again: %s", r.Error)
	}
	other := *cfg
	other.Interface.MAC = "02:00:00:00:00:02"
	if r := send(t, m, &other); !strings.Contains(r.Error, "different") {
		t.Fatalf("different config: reply %+v", r)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("pod netns %s left: %v", path, err)
	}
}

// TestVXLANLoadsModules checks that vxlan mode loads the image's vxlan
// module set before it makes the device, and refuses the config with the
// reason when a module of the set cannot be loaded.
func TestVXLANLoadsModules(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vxlan.order"), []byte("kernel/net/missing.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "podns")
	m, err := New(Options{NetNSPath: path, ModulesDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cfg := &podnet.Config{
		Mode:      podnet.ModeVXLAN,
		Interface: podnet.Interface{Name: "eth0", MAC: "02:00:00:aa:bb:cd", MTU: 1500, Addrs: []string{"10.8.0.2/24"}},
		VXLAN:     &podnet.VXLAN{Remote: "127.0.0.1", VNI: 4242, Port: 4789},
	}
	r := send(t, m, cfg)
	if !strings.Contains(r.Error, "vxlan kernel modules") || !strings.Contains(r.Error, "missing.ko") {
		t.Fatalf("reply %+v, want the module load failure", r)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("pod netns %s left after a refused config: %v", path, err)
	}
	if out, _ := exec.Command("ip", "link", "show", "ppvx4242").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Fatalf("VXLAN device left in this namespace: %s", out)
	}
}
