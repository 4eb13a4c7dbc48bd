package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/hypervisor"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/annotations"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
)

type running struct {
	d        *daemon.Daemon
	cfg      *config.Config
	prov     *sandboxtest.Provider
	endpoint string
	cancel   context.CancelFunc
	done     chan error
}

func start(t *testing.T, prov *sandboxtest.Provider, base string, env map[string]string) *running {
	t.Helper()
	vars := map[string]string{
		"CLOUD_PROVIDER": "sandboxtest", "ATTESTER": "fake", "NODE_NAME": "node-1", "CLUSTER_ID": "c",
		"REMOTE_HYPERVISOR_ENDPOINT": filepath.Join(base, "hv.sock"), "PODS_DIR": filepath.Join(base, "pods"),
		"STATE_DIR": filepath.Join(base, "state"), "FORWARDER_PORT": itoa(prov.Port), "PROXY_TIMEOUT": "20s",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Provider: prov, ProbeAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Retry:  retry.Policy{Attempts: 2, Base: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cfg: cfg, prov: prov, endpoint: cfg.Endpoint, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	select {
	case <-d.Started():
	case err := <-r.done:
		t.Fatalf("daemon ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not start")
	}
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // let a second stop return
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// call makes one hypervisor call on a fresh connection, as the Kata runtime does.
func call[T any](t *testing.T, r *running, f func(ctx context.Context, c hypervisor.HypervisorService) (T, error)) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("unix", r.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	return f(ctx, hypervisor.NewHypervisorClient(c))
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ppd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func kata(pod string) map[string]string {
	return map[string]string{annotations.SandboxName: pod, annotations.SandboxNamespace: "ns", annotations.DefaultVCPUs: "1",
		annotations.DefaultMemory: "1024", annotations.MachineType: "", annotations.Image: "", annotations.Initdata: "", annotations.DefaultGPUs: ""}
}

func TestHypervisorAPIErrors(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	r := start(t, prov, shortDir(t), nil)
	badMem := kata("p")
	badMem[annotations.DefaultMemory] = "lots"
	cases := []struct {
		name  string
		do    func(ctx context.Context, c hypervisor.HypervisorService) (any, error)
		code  codes.Code
		field string
	}{
		{"create empty id", func(ctx context.Context, c hypervisor.HypervisorService) (any, error) {
			return c.CreateVM(ctx, &hypervisor.CreateVMRequest{Annotations: kata("p")})
		}, codes.InvalidArgument, "id"},
		{"create bad memory", func(ctx context.Context, c hypervisor.HypervisorService) (any, error) {
			return c.CreateVM(ctx, &hypervisor.CreateVMRequest{Id: "s1", Annotations: badMem})
		}, codes.InvalidArgument, annotations.DefaultMemory},
		{"start unknown", func(ctx context.Context, c hypervisor.HypervisorService) (any, error) {
			return c.StartVM(ctx, &hypervisor.StartVMRequest{Id: "unknown-id"})
		}, codes.NotFound, "unknown-id"},
		{"stop unknown", func(ctx context.Context, c hypervisor.HypervisorService) (any, error) {
			return c.StopVM(ctx, &hypervisor.StopVMRequest{Id: "unknown-id"})
		}, codes.NotFound, "unknown-id"},
		{"start empty id", func(ctx context.Context, c hypervisor.HypervisorService) (any, error) {
			return c.StartVM(ctx, &hypervisor.StartVMRequest{})
		}, codes.InvalidArgument, "id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := call(t, r, c.do)
			st, _ := status.FromError(err)
			if st.Code() != c.code || !strings.Contains(st.Message(), c.field) {
				t.Fatalf("err = %v, want %v naming %q", err, c.code, c.field)
			}
		})
	}
	v, err := call(t, r, func(ctx context.Context, c hypervisor.HypervisorService) (*hypervisor.VersionResponse, error) {
		return c.Version(ctx, &hypervisor.VersionRequest{Version: "0.0.1"})
	})
	if err != nil || v.Version == "" {
		t.Fatalf("Version = %v, %v", v, err)
	}
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole daemon: a Kata-like client creates, starts, uses and stops a
// sandbox through the socket; metrics and status show it; a restart keeps it.
func TestDaemonLifecycleAndRestart(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	base := shortDir(t)
	r := start(t, prov, base, nil)
	id := "d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2"
	resp, err := call(t, r, func(ctx context.Context, c hypervisor.HypervisorService) (*hypervisor.CreateVMResponse, error) {
		return c.CreateVM(ctx, &hypervisor.CreateVMRequest{Id: id, Annotations: kata("web-0"), NetworkNamespacePath: ""}) // the stand-in VM serves no pod network
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, r, func(ctx context.Context, c hypervisor.HypervisorService) (*hypervisor.StartVMResponse, error) {
		return c.StartVM(ctx, &hypervisor.StartVMRequest{Id: id})
	}); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		conn, err := net.Dial("unix", resp.AgentSocketPath)
		if err != nil {
			t.Fatal(err)
		}
		tc := ttrpc.NewClient(conn)
		defer tc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := agent.NewHealthClient(tc).Check(ctx, &agent.CheckRequest{}); err != nil {
			t.Fatalf("Health.Check via %s: %v", resp.AgentSocketPath, err)
		}
	}
	check()
	addr := r.d.ProbeAddr()
	for _, p := range []string{"/healthz", "/startup"} {
		if c, _ := httpGet(t, addr, p); c != 200 {
			t.Fatalf("%s = %d", p, c)
		}
	}
	_, metrics := httpGet(t, addr, "/metrics")
	for _, want := range []string{`peerpod_sandboxes{state="running"} 1`, `peerpod_vm_create_seconds_count{provider="sandboxtest"} 1`, `peerpod_agent_ready_seconds_count{provider="sandboxtest"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	_, st := httpGet(t, addr, "/status")
	var doc daemon.Status
	if err := json.Unmarshal([]byte(st), &doc); err != nil || len(doc.Sandboxes) != 1 || doc.Sandboxes[0].SandboxID != id || doc.Sandboxes[0].PodName != "web-0" {
		t.Fatalf("status %s (%v)", st, err)
	}
	_, vms := httpGet(t, addr, "/vms")
	if !strings.Contains(vms, `"owned": true`) {
		t.Fatalf("/vms %s", vms)
	}

	// Restart: same sockets, same VM.
	r.stop()
	r2 := start(t, prov, base, nil)
	check()
	if _, err := call(t, r2, func(ctx context.Context, c hypervisor.HypervisorService) (*hypervisor.StopVMResponse, error) {
		return c.StopVM(ctx, &hypervisor.StopVMRequest{Id: id})
	}); err != nil {
		t.Fatal(err)
	}
	if n := len(prov.VMs()); n != 0 {
		t.Fatalf("%d VMs left", n)
	}
}

func TestReconcilerDeletesOrphans(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	r := start(t, prov, shortDir(t), map[string]string{"RECONCILE_GRACE": "200ms", "RECONCILE_INTERVAL": "100ms"})
	ctx := context.Background()
	// An orphan of this node (no journal entry), and one of another node.
	prov.SetFaults(sandboxtest.Faults{NoListener: true})
	mk := func(name, node string) {
		u, _ := userdata.Encode(&userdata.Config{Version: 1, SandboxID: name, TunnelCA: "x", Attester: "fake"})
		if _, err := prov.Create(ctx, provider.CreateRequest{Name: name, UserData: u,
			Tags: provider.Tags(provider.Owner{ClusterID: "c", Node: node, SandboxID: name}, nil)}); err != nil {
			t.Fatal(err)
		}
	}
	mk("orphan", "node-1")
	mk("other", "node-2")
	deadline := time.Now().Add(20 * time.Second)
	for {
		names := map[string]bool{}
		for _, vm := range prov.VMs() {
			names[vm.Name] = true
		}
		if !names["orphan"] {
			if !names["other"] {
				t.Fatal("another node's VM was deleted")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("orphan not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, m := httpGet(t, r.d.ProbeAddr(), "/metrics")
	if !strings.Contains(m, `peerpod_reconciler_deletions_total{provider="sandboxtest"} 1`) {
		t.Fatal("deletion not counted")
	}
}
