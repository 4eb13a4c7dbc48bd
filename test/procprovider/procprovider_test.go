package procprovider

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/providertest"
	"golang.org/x/sys/unix"
)

// fakeAgentEnv makes the test binary act as a stand-in agent: it reads its
// user data file and answers "<sandbox id>\n" to every TCP connection on
// the user data's port.
const fakeAgentEnv = "PROCPROVIDER_FAKE_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(fakeAgentEnv) == "1" {
		fakeAgent()
		return
	}
	os.Exit(m.Run())
}

func fakeAgent() {
	if len(os.Args) < 3 || os.Args[1] != "--userdata-file" {
		fmt.Fprintln(os.Stderr, "usage: --userdata-file FILE ...")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg, err := userdata.Decode(b)
	if err != nil {
		// The conformance suite's user data is not meant to be served: idle.
		select {}
	}
	// A VM has a hostname of its own; this must not change the host's.
	if err := unix.Sethostname([]byte("vm-" + cfg.SandboxID[:8])); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		host, _ := os.Hostname()
		fmt.Fprintf(c, "%s %s\n", cfg.SandboxID, host)
		c.Close()
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veth)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

func newProvider(t *testing.T, dir string) *Provider {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{StateDir: dir, AgentPath: self, Env: []string{fakeAgentEnv + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.DeleteAll(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

func TestConformance(t *testing.T) {
	requireRoot(t)
	providertest.Run(t, func(t *testing.T) provider.Provider { return newProvider(t, t.TempDir()) })
}

func request(t *testing.T, sid string, port int) provider.CreateRequest {
	t.Helper()
	name, _ := provider.VMName("proc", sid)
	ud, err := userdata.Encode(&userdata.Config{Version: 1, SandboxID: sid, VMName: name, TunnelCA: "x", Attester: "fake", ListenPort: port})
	if err != nil {
		t.Fatal(err)
	}
	return provider.CreateRequest{Name: name, SandboxID: sid, UserData: ud,
		Tags: provider.Tags(provider.Owner{Node: "n1", SandboxID: sid}, nil)}
}

// dialVM reads the fake agent's greeting from the VM's address.
func dialVM(t *testing.T, addr string) (string, error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			return strings.TrimSpace(line), err
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A VM is reachable on its own address from the host, runs in its own
// session and network namespace, survives a new Provider on the same state
// dir, and Delete removes the process, namespace and veth.
func TestVMSurvivesProviderRestart(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p1 := newProvider(t, dir)
	ctx := context.Background()
	req := request(t, "aaaabbbbccccdddd", 15150)
	inst, err := p1.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dialVM(t, fmt.Sprintf("%s:15150", inst.IPs[0]))
	if err != nil || got != "aaaabbbbccccdddd vm-aaaabbbb" {
		t.Fatalf("VM answered %q, %v", got, err)
	}
	if h, _ := os.Hostname(); h == "vm-aaaabbbb" {
		t.Fatal("the VM changed the host's hostname")
	}
	vms, _ := p1.VMs()
	if len(vms) != 1 {
		t.Fatalf("%d VMs", len(vms))
	}
	vm := vms[0]
	if sid, _ := unix.Getsid(vm.PID); sid != vm.PID {
		t.Fatalf("agent session id %d, want its own (%d)", sid, vm.PID)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", vm.PID))
	if theirs == "" || theirs == self {
		t.Fatalf("agent netns %q, ours %q", theirs, self)
	}

	p2 := newProvider(t, dir)
	again, err := p2.Create(ctx, req)
	if err != nil || again.ID != inst.ID {
		t.Fatalf("Create after restart = %v, %v; want the same VM", again, err)
	}
	list, err := p2.List(ctx, map[string]string{provider.TagSandbox: "aaaabbbbccccdddd"})
	if err != nil || len(list) != 1 || !list[0].IPs[0].IsValid() {
		t.Fatalf("List after restart = %v, %v", list, err)
	}
	if !vm.Alive() {
		t.Fatal("agent died with the provider")
	}
	if err := p2.Delete(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if vm.Alive() {
		t.Fatal("agent still running after Delete")
	}
	if _, err := os.Stat(filepath.Join("/run/netns", vm.NetNS)); !os.IsNotExist(err) {
		t.Fatalf("netns left: %v", err)
	}
	if linkExists(vm.HostVeth) {
		t.Fatal("veth left")
	}
	if left, _ := p2.VMs(); len(left) != 0 {
		t.Fatalf("records left: %v", left)
	}
}

// An agent that cannot start is a VM that died: Delete still removes it all.
func TestDeadAgentDeleted(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p, err := New(Config{StateDir: dir, AgentPath: filepath.Join(dir, "no-such-agent")})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := p.Create(context.Background(), request(t, "1111222233334444", 15150))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	vms, _ := p.VMs()
	vm := vms[0]
	waitGone(vm.PID, vm.StartTime, 5*time.Second)
	if vm.Alive() {
		t.Fatal("agent that cannot exec is alive")
	}
	if err := p.Delete(context.Background(), inst.ID); err != nil {
		t.Fatal(err)
	}
	if linkExists(vm.HostVeth) {
		t.Fatal("veth left")
	}
}

// A refused create (full pool, bad name) leaves nothing behind.
func TestRefusedCreateLeavesNothing(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	self, _ := os.Executable()
	p, err := New(Config{StateDir: dir, AgentPath: self, Env: []string{fakeAgentEnv + "=1"},
		Pool: netip.MustParsePrefix("10.251.7.0/30")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.DeleteAll(context.Background()) })
	if _, err := p.Create(context.Background(), request(t, "first00000000000", 15150)); err != nil {
		t.Fatal(err)
	}
	_, err = p.Create(context.Background(), request(t, "second0000000000", 15150))
	if !errors.Is(err, provider.ErrCapacity) {
		t.Fatalf("second create in a one-slot pool: %v", err)
	}
	if _, err := p.Create(context.Background(), provider.CreateRequest{Name: "", UserData: []byte("x")}); !errors.Is(err, provider.ErrInvalidConfig) {
		t.Fatalf("empty name: %v", err)
	}
	vms, _ := p.VMs()
	if len(vms) != 1 {
		t.Fatalf("records: %v", vms)
	}
}

// A create interrupted after its record was written (the caller died) is
// redone by a retried Create; a slot whose record was never written is freed.
func TestInterruptedCreateRedone(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p := newProvider(t, dir)
	req := request(t, "5555666677778888", 15150)
	// What a crash right after the record was saved leaves: a record, no
	// namespace, no process.
	id := idFor(req.Name)
	stale := &VM{ID: id, Name: req.Name, Tags: req.Tags, NetNS: "ppn-gone0000", HostVeth: "pphgone0000", VMVeth: "ppvgone0000",
		Slot: 3, UserData: filepath.Join(dir, id+".userdata"), AgentDir: filepath.Join(dir, id+".agent")}
	if err := p.save(stale); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "slot-3"), []byte(id), 0o600)
	os.WriteFile(filepath.Join(dir, "slot-7"), []byte("proc-never-recorded"), 0o600)
	p2 := newProvider(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "slot-7")); !os.IsNotExist(err) {
		t.Fatal("orphan slot not freed")
	}
	inst, err := p2.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dialVM(t, fmt.Sprintf("%s:15150", inst.IPs[0]))
	if err != nil || !strings.HasPrefix(got, "5555666677778888 ") {
		t.Fatalf("redone VM answered %q, %v", got, err)
	}
}
