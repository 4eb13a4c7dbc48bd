package procprovider_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/procprovider"
)

// buildAgent builds cmd/podvm-agent into a temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(mod)))
	bin := filepath.Join(t.TempDir(), "podvm-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/podvm-agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/podvm-agent: %v\n%s", err, out)
	}
	return bin
}

// TestEndToEnd drives peerpodd the way the Kata runtime does (a fresh
// connection per call) over the process provider: CreateVM → StartVM (the
// podvm-agent process boots in its own netns, attests with fake evidence,
// answers Health.Check through the tunnel) → Health.Check and CreateSandbox
// through the agent socket → StopVM, after which nothing is left.
func TestEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veth)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	agentBin := buildAgent(t)
	base, err := os.MkdirTemp("", "ppe2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	prov, err := procprovider.New(procprovider.Config{
		StateDir: filepath.Join(base, "vms"), AgentPath: agentBin,
		// The policy engine is not what this test is about.
		AgentArgs: []string{"--dev-allow-all-policy", "--log-level", "debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.DeleteAll(context.Background()) })

	env := map[string]string{
		"CLOUD_PROVIDER": procprovider.Name, "ATTESTER": "fake", "NODE_NAME": "e2e-node", "CLUSTER_ID": "e2e",
		"REMOTE_HYPERVISOR_ENDPOINT": filepath.Join(base, "hypervisor.sock"), "PODS_DIR": filepath.Join(base, "pods"),
		"STATE_DIR": filepath.Join(base, "state"), "PROXY_TIMEOUT": "60s",
	}
	cfg, err := config.Load(func(k string) string { return env[k] }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(t.TempDir(), "peerpodd.log"))
	// startDaemon runs peerpodd in-process until the returned stop is called.
	startDaemon := func() (*daemon.Daemon, func()) {
		d, err := daemon.New(daemon.Options{Config: cfg, Provider: prov, ProbeAddr: "127.0.0.1:0",
			Logger: slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		select {
		case <-d.Started():
		case err := <-done:
			t.Fatalf("peerpodd: %v", err)
		}
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return d, stop
	}
	_, stop := startDaemon()
	dump := func() {
		logf.Sync()
		b, _ := os.ReadFile(logf.Name())
		t.Logf("peerpodd log:\n%s", b)
		vms, _ := prov.VMs()
		for _, vm := range vms {
			b, _ := os.ReadFile(vm.Log)
			t.Logf("agent log of %s:\n%s", vm.Name, b)
		}
	}

	kc, err := kataclient.New(kataclient.Config{HypervisorSocket: cfg.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer tcancel()
	id := kataclient.NewSandboxID()
	sb, err := kc.NewSandbox(tctx, id, kataclient.Pod{Name: "e2e-pod", Namespace: "default", VCPUs: 1, MemoryMiB: 256}, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.StartVM(tctx); err != nil {
		dump()
		t.Fatalf("StartVM: %v", err)
	}
	if err := sb.Check(tctx); err != nil {
		dump()
		t.Fatalf("Health.Check through the agent socket: %v", err)
	}
	if err := sb.CreateSandbox(tctx); err != nil {
		dump()
		t.Fatalf("CreateSandbox through the agent socket: %v", err)
	}
	vms, err := prov.VMs()
	if err != nil || len(vms) != 1 || !vms[0].Alive() {
		t.Fatalf("VMs %+v, %v", vms, err)
	}
	vm := vms[0]

	// Restart peerpodd: the VM keeps running, the agent socket answers at
	// the same path through a re-dialled (and re-attested) tunnel.
	stop()
	d, _ := startDaemon()
	if err := sb.Check(tctx); err != nil {
		dump()
		t.Fatalf("Health.Check after a peerpodd restart: %v", err)
	}
	if !vm.Alive() {
		t.Fatal("the VM died with peerpodd")
	}
	if err := sb.StopVM(tctx); err != nil {
		t.Fatalf("StopVM: %v", err)
	}
	if vm.Alive() {
		t.Fatal("agent still running after StopVM")
	}
	if left, _ := prov.VMs(); len(left) != 0 {
		t.Fatalf("VMs left: %+v", left)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", vm.NetNS)); !os.IsNotExist(err) {
		t.Fatalf("netns %s left", vm.NetNS)
	}
	if st := d.Status(); len(st.Sandboxes) != 0 {
		t.Fatalf("sandboxes left: %+v", st.Sandboxes)
	}
}
