package kataclient

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/hypervisor"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type fakeHV struct {
	mu        sync.Mutex
	creates   []*hypervisor.CreateVMRequest
	deadline  time.Duration // StartVM's remaining time when it arrived
	agentSock string
}

func (f *fakeHV) CreateVM(ctx context.Context, r *hypervisor.CreateVMRequest) (*hypervisor.CreateVMResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, r)
	return &hypervisor.CreateVMResponse{AgentSocketPath: f.agentSock}, nil
}

func (f *fakeHV) StartVM(ctx context.Context, r *hypervisor.StartVMRequest) (*hypervisor.StartVMResponse, error) {
	d, _ := ctx.Deadline()
	f.mu.Lock()
	f.deadline = time.Until(d)
	f.mu.Unlock()
	return &hypervisor.StartVMResponse{}, nil
}

func (f *fakeHV) StopVM(ctx context.Context, r *hypervisor.StopVMRequest) (*hypervisor.StopVMResponse, error) {
	return &hypervisor.StopVMResponse{}, nil
}

func (f *fakeHV) Version(ctx context.Context, r *hypervisor.VersionRequest) (*hypervisor.VersionResponse, error) {
	return &hypervisor.VersionResponse{Version: "fake"}, nil
}

// fakeAgent answers the calls of a pod's life; any other call panics
// (through the nil embedded interface) and fails the test.
type fakeAgent struct {
	agent.AgentServiceService
	mu      sync.Mutex
	pending map[string][]byte // container → stdout left to read
	copied  map[string]int64
	creates []*agent.CreateContainerRequest
}

func (a *fakeAgent) CreateSandbox(context.Context, *agent.CreateSandboxRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) DestroySandbox(context.Context, *agent.DestroySandboxRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) GetGuestDetails(_ context.Context, r *agent.GuestDetailsRequest) (*agent.GuestDetailsResponse, error) {
	if !r.MemBlockSize || !r.MemHotplugProbe {
		return nil, os.ErrInvalid
	}
	return &agent.GuestDetailsResponse{AgentDetails: &agent.AgentDetails{Version: "fake"}}, nil
}
func (a *fakeAgent) SetPolicy(context.Context, *agent.SetPolicyRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) CreateContainer(_ context.Context, r *agent.CreateContainerRequest) (*emptypb.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creates = append(a.creates, r)
	a.pending[r.ContainerId] = []byte(strings.Join(r.OCI.Process.Args, " "))
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) StartContainer(context.Context, *agent.StartContainerRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) CopyFile(_ context.Context, r *agent.CopyFileRequest) (*emptypb.Empty, error) {
	a.mu.Lock()
	a.copied[r.Path] += int64(len(r.Data))
	a.mu.Unlock()
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) ReadStdout(_ context.Context, r *agent.ReadStreamRequest) (*agent.ReadStreamResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.pending[r.ContainerId]
	n := min(len(d), 4)
	a.pending[r.ContainerId] = d[n:]
	return &agent.ReadStreamResponse{Data: d[:n]}, nil
}
func (a *fakeAgent) WaitProcess(context.Context, *agent.WaitProcessRequest) (*agent.WaitProcessResponse, error) {
	return &agent.WaitProcessResponse{Status: 3}, nil
}
func (a *fakeAgent) ExecProcess(context.Context, *agent.ExecProcessRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) SignalProcess(context.Context, *agent.SignalProcessRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) RemoveContainer(context.Context, *agent.RemoveContainerRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}
func (a *fakeAgent) RemoveStaleVirtiofsShareMounts(context.Context, *agent.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

type health struct{}

func (health) Check(context.Context, *agent.CheckRequest) (*agent.HealthCheckResponse, error) {
	return &agent.HealthCheckResponse{Status: agent.HealthCheckResponse_SERVING}, nil
}
func (health) Version(context.Context, *agent.CheckRequest) (*agent.VersionCheckResponse, error) {
	return &agent.VersionCheckResponse{}, nil
}

func serve(t *testing.T, path string, register func(*ttrpc.Server)) *countingListener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	register(srv)
	go srv.Serve(context.Background(), cl)
	t.Cleanup(func() { srv.Close() })
	return cl
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// The whole pod life: every call on its own connection, in the runtime's
// order, with every annotation key and the runtime's request shapes.
func TestPodLifeSequence(t *testing.T) {
	dir := shortDir(t)
	hv := &fakeHV{agentSock: filepath.Join(dir, "agent.ttrpc")}
	hvLn := serve(t, filepath.Join(dir, "hv.sock"), func(s *ttrpc.Server) { hypervisor.RegisterHypervisorService(s, hv) })
	fa := &fakeAgent{pending: map[string][]byte{}, copied: map[string]int64{}}
	c, err := New(Config{HypervisorSocket: filepath.Join(dir, "hv.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pod := Pod{Name: "web-0", Namespace: "default", VCPUs: 2, MemoryMiB: 2048, Policy: "package agent_policy\ndefault AllowRequestsFailingPolicy := true\n"}
	id := NewSandboxID()
	s, err := c.NewSandbox(ctx, id, pod, "/var/run/netns/cni-1")
	if err != nil {
		t.Fatal(err)
	}
	agentLn := serve(t, hv.agentSock, func(srv *ttrpc.Server) {
		agent.RegisterAgentServiceService(srv, fa)
		agent.RegisterHealthService(srv, health{})
	})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	file := SharedPath("app", "/etc/hosts")
	big := make([]byte, MaxCopyChunk+10)
	out, st, err := s.Run(ctx, Container{ID: "app", Image: "docker.io/library/busybox:1.36", Args: []string{"echo", "hello", "world"},
		Files: PodFiles(pod)}, map[string][]byte{file: big})
	if err != nil || string(out) != "echo hello world" || st != 3 {
		t.Fatalf("Run = %q, %d, %v", out, st, err)
	}
	if err := s.ExecProcess(ctx, "app", "e1", []string{"true"}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContainer(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	var methods []string
	for _, call := range c.Calls() {
		if call.Method != "ReadStdout" && call.Method != "WaitProcess" { // concurrent in Run
			methods = append(methods, call.Method)
		}
	}
	want := []string{"CreateVM", "StartVM", "Check", "SetPolicy", "CreateSandbox", "GetGuestDetails", "CreateContainer",
		"StartContainer", "CopyFile", "CopyFile", "CopyFile", "CopyFile", "CopyFile", "CreateContainer", "StartContainer", "ExecProcess",
		"SignalProcess", "RemoveContainer", "RemoveStaleVirtiofsShareMounts", "DestroySandbox", "StopVM"}
	if !slices.Equal(methods, want) {
		t.Fatalf("calls\n got %v\nwant %v", methods, want)
	}
	var hvCalls, agentCalls int64
	for _, call := range c.Calls() {
		if call.Service == "hypervisor.Hypervisor" {
			hvCalls++
		} else {
			agentCalls++
		}
	}
	if hvLn.n.Load() != hvCalls || agentLn.n.Load() != agentCalls {
		t.Fatalf("connections: hypervisor %d for %d calls, agent %d for %d calls", hvLn.n.Load(), hvCalls, agentLn.n.Load(), agentCalls)
	}
	// CreateVM carried every key; StartVM had the runtime's 600 s timeout.
	for _, k := range AnnotationKeys {
		if _, ok := hv.creates[0].Annotations[k]; !ok {
			t.Errorf("CreateVM lacks annotation %s", k)
		}
	}
	if got := hv.creates[0].Annotations[AnnotDefaultMemory]; got != "2048" {
		t.Errorf("default_memory = %q", got)
	}
	if hv.deadline < 590*time.Second || hv.deadline > 600*time.Second {
		t.Errorf("StartVM deadline %v, want ~600s", hv.deadline)
	}
	if fa.copied[file] != int64(len(big)) {
		t.Errorf("copied %d bytes of %d", fa.copied[file], len(big))
	}
	pause := fa.creates[0]
	st0 := pause.Storages[0]
	if pause.ContainerId != id || st0.Driver != "image_guest_pull" || st0.Source != "pause" ||
		st0.MountPoint != "/run/kata-containers/"+id+"/rootfs" || !strings.HasPrefix(st0.DriverOptions[0], "image_guest_pull=") {
		t.Fatalf("pause request %v", pause)
	}
	var opt struct {
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(st0.DriverOptions[0], "image_guest_pull=")), &opt); err != nil ||
		opt.Metadata["io.kubernetes.cri.container-type"] != "sandbox" {
		t.Fatalf("driver option %q: %v", st0.DriverOptions[0], err)
	}
	binds := map[string]string{}
	for _, m := range fa.creates[1].OCI.Mounts {
		if m.Type == "bind" {
			binds[m.Destination] = m.Source
		}
	}
	for _, dst := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		src, ok := binds[dst]
		if !ok || !strings.HasPrefix(src, "/run/kata-containers/shared/containers/app-") || fa.copied[src] == 0 {
			t.Errorf("%s: bind from %q (copied %d bytes)", dst, src, fa.copied[src])
		}
	}
	if app := fa.creates[1]; app.Storages[0].Source != "docker.io/library/busybox:1.36" || app.OCI.Annotations["io.kubernetes.cri.image-name"] != "docker.io/library/busybox:1.36" {
		t.Fatalf("app request %v", app)
	}
}

func TestStartTimeout(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"defaults", Config{}, 600 * time.Second},
		{"vm start timeout wins", Config{HypervisorTimeout: 100 * time.Second, VMStartTimeout: 200 * time.Second}, 200 * time.Second},
		{"floor", Config{HypervisorTimeout: 5 * time.Second}, 60 * time.Second},
		{"no floor", Config{HypervisorTimeout: 5 * time.Second, NoStartFloor: true}, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.HypervisorSocket = "/x"
			c, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.StartTimeout(); got != tc.want {
				t.Fatalf("StartTimeout = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAgentDialGivesUp(t *testing.T) {
	c, err := New(Config{HypervisorSocket: "/x", DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Attach("sb", filepath.Join(shortDir(t), "missing.sock"), Pod{})
	start := time.Now()
	err = s.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gave up") || time.Since(start) > 5*time.Second {
		t.Fatalf("Check = %v after %v", err, time.Since(start))
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted an empty HypervisorSocket")
	}
}

func TestAnnotationsAlwaysPresent(t *testing.T) {
	for _, p := range []Pod{{}, {Name: "a", VCPUs: 1, GPUs: 1, GPUModel: "h100"}} {
		a := p.Annotations()
		if len(a) != len(AnnotationKeys) {
			t.Fatalf("%d annotations, want %d", len(a), len(AnnotationKeys))
		}
		for _, k := range AnnotationKeys {
			if _, ok := a[k]; !ok {
				t.Fatalf("missing %s", k)
			}
		}
	}
}

type oomAgent struct {
	fakeAgent
	events chan string
}

func (a *oomAgent) GetOOMEvent(ctx context.Context, _ *agent.GetOOMEventRequest) (*agent.OOMEvent, error) {
	select {
	case cid := <-a.events:
		return &agent.OOMEvent{ContainerId: cid}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestMonitorAndOOMWatch(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "agent.ttrpc")
	fa := &oomAgent{events: make(chan string, 2)}
	ln := serve(t, sock, func(srv *ttrpc.Server) {
		agent.RegisterAgentServiceService(srv, fa)
		agent.RegisterHealthService(srv, health{})
	})
	c, _ := New(Config{HypervisorSocket: "/unused", DialTimeout: 300 * time.Millisecond})
	s := c.Attach("sb", sock, Pod{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mon := s.Monitor(ctx, 20*time.Millisecond)
	ooms := s.WatchOOM(ctx)
	fa.events <- "app"
	fa.events <- "side"
	for _, want := range []string{"app", "side"} {
		if got := <-ooms; got != want {
			t.Fatalf("OOM event %q, want %q", got, want)
		}
	}
	// Health checks keep coming, each on its own connection.
	deadline := time.Now().Add(10 * time.Second)
	for ln.n.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ln.n.Load() < 6 {
		t.Fatalf("%d connections, want the monitor's checks on new ones", ln.n.Load())
	}
	// The agent goes away: the monitor reports it.
	os.Remove(sock)
	select {
	case err := <-mon:
		if err == nil {
			t.Fatal("monitor stopped without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not notice the agent is gone")
	}
}
