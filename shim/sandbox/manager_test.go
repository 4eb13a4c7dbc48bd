package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/annotations"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/shim/sandbox"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
	"github.com/peerpod/peerpod/shim/tlsca"
)

type env struct {
	prov     *sandboxtest.Provider
	podsDir  string
	stateDir string
	ca       *tlsca.CA
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pods, err := os.MkdirTemp("", "pp-pods-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pods) })
	state := t.TempDir()
	ca, err := tlsca.LoadOrCreate(filepath.Join(state, "ca"), "test-node")
	if err != nil {
		t.Fatal(err)
	}
	p := sandboxtest.New(nil)
	t.Cleanup(p.Close)
	return &env{prov: p, podsDir: pods, stateDir: state, ca: ca}
}

func (e *env) manager(t *testing.T, tweak func(*sandbox.Options)) *sandbox.Manager {
	t.Helper()
	j, err := journal.Open(filepath.Join(e.stateDir, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	opts := sandbox.Options{
		Provider: e.prov, Journal: j, Credentials: e.ca, PodsDir: e.podsDir, Attester: userdata.AttesterFake,
		ProxyTimeout: 20 * time.Second, ForwarderPort: e.prov.Port, ClusterID: "c1", NodeName: "node-a",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Retry:  retry.Policy{Attempts: 3, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Secrets: func(context.Context, journal.Entry) (*userdata.Secrets, error) {
			return &userdata.Secrets{AuthJSON: []byte(`{"auths":{}}`)}, nil
		},
	}
	if tweak != nil {
		tweak(&opts)
	}
	m, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func kataAnnotations(pod string) map[string]string {
	return map[string]string{
		annotations.SandboxName: pod, annotations.SandboxNamespace: "default",
		annotations.MachineType: "", annotations.DefaultVCPUs: "1", annotations.DefaultMemory: "2048",
		annotations.Image: "", annotations.Initdata: "", annotations.DefaultGPUs: "",
	}
}

// healthCheck dials the agent socket the way the Kata runtime does (a new
// connection per request) and calls Health.Check.
func healthCheck(ctx context.Context, path string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	tc := ttrpc.NewClient(c)
	defer tc.Close()
	_, err = agent.NewHealthClient(tc).Check(ctx, &agent.CheckRequest{})
	return err
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func journalFiles(t *testing.T, e *env) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(e.stateDir, "sandboxes", "*.json"))
	return m
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, nil)
	ctx := ctxT(t, time.Minute)
	id := "0123456789abcdef0123456789abcdef"
	path, err := m.CreateVM(ctx, id, kataAnnotations("nginx"), "/var/run/netns/cni-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(e.podsDir, id, "agent.ttrpc"); path != want {
		t.Fatalf("socket path %s, want %s", path, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("agent socket: %v", err)
	}
	if again, err := m.CreateVM(ctx, id, kataAnnotations("nginx"), ""); err != nil || again != path {
		t.Fatalf("repeated CreateVM = %q, %v", again, err)
	}
	if err := m.StartVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := healthCheck(ctx, path); err != nil {
			t.Fatalf("Health.Check through the agent socket: %v", err)
		}
	}
	vms := e.prov.VMs()
	// One reachability probe and one attested session, kept for the pod.
	if len(vms) == 1 && vms[0].Conns != 2 {
		t.Fatalf("the VM accepted %d connections, want 2 (a TCP probe, then the session StartVM made and the pod uses)", vms[0].Conns)
	}
	if len(vms) != 1 {
		t.Fatalf("%d VMs", len(vms))
	}
	vm := vms[0]
	if vm.Name != "podvm-nginx-01234567" || vm.Tags[provider.TagSandbox] != id || vm.Tags[provider.TagNode] != "node-a" ||
		vm.Tags[provider.TagPodName] != "nginx" || vm.Tags[provider.TagCluster] != "c1" {
		t.Fatalf("VM %+v", vm.Instance)
	}
	if vm.UserData.Attester != "fake" || !strings.Contains(vm.UserData.TunnelCA, "BEGIN CERTIFICATE") || vm.UserData.SandboxID != id {
		t.Fatalf("user data %+v", vm.UserData)
	}
	if vm.Secrets == nil || string(vm.Secrets.AuthJSON) != `{"auths":{}}` {
		t.Fatalf("secrets not delivered: %+v", vm.Secrets)
	}
	st := m.Status()
	if len(st) != 1 || st[0].State != journal.Running || st[0].VMID != vm.ID {
		t.Fatalf("status %+v", st)
	}
	if err := m.StartVM(ctx, id); err != nil {
		t.Fatalf("second StartVM: %v", err)
	}
	if err := m.StopVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := len(e.prov.VMs()); n != 0 {
		t.Fatalf("%d VMs left", n)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Fatalf("socket dir left: %v", err)
	}
	if f := journalFiles(t, e); len(f) != 0 {
		t.Fatalf("journal left: %v", f)
	}
	if err := m.StopVM(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("StopVM of a stopped sandbox: %v", err)
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, nil)
	ctx := ctxT(t, time.Minute)
	bad := func(k, v string) map[string]string { a := kataAnnotations("p"); a[k] = v; return a }
	cases := []struct {
		name  string
		id    string
		ann   map[string]string
		field string
	}{
		{"empty id", "", kataAnnotations("p"), "id"},
		{"path id", "../etc", kataAnnotations("p"), "id"},
		{"vcpus", "s1", bad(annotations.DefaultVCPUs, "many"), annotations.DefaultVCPUs},
		{"memory", "s1", bad(annotations.DefaultMemory, "-5"), annotations.DefaultMemory},
		{"pod name", "s1", bad(annotations.SandboxName, "a b"), annotations.SandboxName},
		{"initdata", "s1", bad(annotations.Initdata, "this is = = not toml"), annotations.Initdata},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.CreateVM(ctx, c.id, c.ann, "")
			var ie *sandbox.InvalidError
			if !errors.As(err, &ie) || ie.Field != c.field || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("err = %v, want InvalidError naming %s", err, c.field)
			}
		})
	}
	if err := m.StartVM(ctx, "nope"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("StartVM unknown: %v", err)
	}
	if err := m.StopVM(ctx, "nope"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("StopVM unknown: %v", err)
	}
	var ie *sandbox.InvalidError
	if err := m.StartVM(ctx, ""); !errors.As(err, &ie) || ie.Field != "id" {
		t.Fatalf("StartVM empty id: %v", err)
	}
	if f := journalFiles(t, e); len(f) != 0 {
		t.Fatalf("rejected requests left journal entries: %v", f)
	}
}

// assertNothingLeft checks the provider, the pods dir and the journal.
func assertNothingLeft(t *testing.T, e *env, id string) {
	t.Helper()
	if vms := e.prov.VMs(); len(vms) != 0 {
		t.Fatalf("VMs left: %+v", vms)
	}
	if _, err := os.Stat(filepath.Join(e.podsDir, id)); !os.IsNotExist(err) {
		t.Fatalf("socket dir left: %v", err)
	}
}

func TestCreateFailsHalfWay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults sandboxtest.Faults
		want   string
	}{
		{"leaves a VM", sandboxtest.Faults{CreateErr: provider.Errorf(provider.ErrCapacity, "no Standard_DC2as_v5 capacity in westeurope")}, "no Standard_DC2as_v5 capacity"},
		{"clean", sandboxtest.Faults{CreateErrClean: provider.Errorf(provider.ErrInvalidConfig, "image podvm-x not found")}, "image podvm-x not found"},
		{"retries run out", sandboxtest.Faults{CreateErrClean: provider.Errorf(provider.ErrThrottled, "429 too many requests")}, "after 3 attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, nil)
			ctx := ctxT(t, time.Minute)
			id := "halfway-" + strings.ReplaceAll(tc.name, " ", "-")
			if _, err := m.CreateVM(ctx, id, kataAnnotations("web"), ""); err != nil {
				t.Fatal(err)
			}
			e.prov.SetFaults(tc.faults)
			err := m.StartVM(ctx, id)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "create VM podvm-web-") {
				t.Fatalf("StartVM = %v, want the cause %q", err, tc.want)
			}
			assertNothingLeft(t, e, id)
			if st := m.Status(); len(st) != 1 || st[0].State != journal.Failed {
				t.Fatalf("status %+v", st)
			}
			// The runtime calls StopVM after a failed start: it must succeed.
			if err := m.StopVM(ctx, id); err != nil {
				t.Fatalf("StopVM after failed start: %v", err)
			}
			if f := journalFiles(t, e); len(f) != 0 {
				t.Fatalf("journal left: %v", f)
			}
		})
	}
}

func TestAgentNeverAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults sandboxtest.Faults
	}{
		{"silent agent", sandboxtest.Faults{SilentAgent: true}},
		{"no listener", sandboxtest.Faults{NoListener: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, func(o *sandbox.Options) { o.ProxyTimeout = 1500 * time.Millisecond })
			ctx := ctxT(t, time.Minute)
			id := "silent-" + strings.ReplaceAll(tc.name, " ", "-")
			if _, err := m.CreateVM(ctx, id, kataAnnotations("web"), ""); err != nil {
				t.Fatal(err)
			}
			e.prov.SetFaults(tc.faults)
			err := m.StartVM(ctx, id)
			var te *sandbox.AgentTimeoutError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), "did not answer Health.Check within 1.5s") {
				t.Fatalf("StartVM = %v, want an agent timeout", err)
			}
			assertNothingLeft(t, e, id)
			if err := m.StopVM(ctx, id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAttestationMismatchFailsFast(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) { o.ProxyTimeout = time.Minute })
	ctx := ctxT(t, 2*time.Minute)
	toml, err := initdata.Marshal("sha256", map[string]string{"policy.rego": "package agent_policy\ndefault CreateContainerRequest := true\n"})
	if err != nil {
		t.Fatal(err)
	}
	a := kataAnnotations("web")
	a[annotations.Initdata] = string(toml)
	if _, err := m.CreateVM(ctx, "attest-1", a, ""); err != nil {
		t.Fatal(err)
	}
	e.prov.SetFaults(sandboxtest.Faults{WrongInitdata: true})
	start := time.Now()
	err = m.StartVM(ctx, "attest-1")
	if err == nil || !strings.Contains(err.Error(), "failed attestation") {
		t.Fatalf("StartVM = %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("attestation failure waited for the timeout")
	}
	assertNothingLeft(t, e, "attest-1")
}

func TestInitdataReachesVM(t *testing.T) {
	e := newEnv(t)
	toml, _ := initdata.Marshal("sha384", map[string]string{"aa.toml": "x = 1\n"})
	def, _ := initdata.Marshal("sha256", map[string]string{"cdh.toml": "y = 2\n"})
	m := e.manager(t, func(o *sandbox.Options) { o.DefaultInitdata = string(def) })
	ctx := ctxT(t, time.Minute)
	enc, err := initdata.EncodeAnnotation(toml)
	if err != nil {
		t.Fatal(err)
	}
	a := kataAnnotations("with")
	a[annotations.Initdata] = enc // base64 of gzip is accepted too
	for id, ann := range map[string]map[string]string{"with-initdata": a, "default-initdata": kataAnnotations("without")} {
		if _, err := m.CreateVM(ctx, id, ann, ""); err != nil {
			t.Fatal(err)
		}
		if err := m.StartVM(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	for _, vm := range e.prov.VMs() {
		got[vm.UserData.SandboxID] = vm.UserData.Initdata
	}
	if got["with-initdata"] != string(toml) || got["default-initdata"] != string(def) {
		t.Fatalf("initdata in user data: %q", got)
	}
}

// A restarted manager re-opens every socket, re-dials running VMs, and
// StopVM works for all.
func TestRestartKeepsRunningSandboxes(t *testing.T) {
	e := newEnv(t)
	m1 := e.manager(t, nil)
	ctx := ctxT(t, 2*time.Minute)
	ids := []string{"run-a", "run-b", "run-c"}
	for _, id := range ids {
		if _, err := m1.CreateVM(ctx, id, kataAnnotations(id), ""); err != nil {
			t.Fatal(err)
		}
		if err := m1.StartVM(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m1.CreateVM(ctx, "only-created", kataAnnotations("later"), ""); err != nil {
		t.Fatal(err)
	}
	m1.Close()
	m2 := e.manager(t, nil)
	for _, id := range ids {
		if err := healthCheck(ctx, filepath.Join(e.podsDir, id, "agent.ttrpc")); err != nil {
			t.Fatalf("%s after restart: %v", id, err)
		}
	}
	if err := m2.StartVM(ctx, "only-created"); err != nil {
		t.Fatalf("StartVM after restart: %v", err)
	}
	for _, id := range append(ids, "only-created") {
		if err := m2.StopVM(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if vms := e.prov.VMs(); len(vms) != 0 {
		t.Fatalf("VMs left: %v", vms)
	}
}

// Journal entries of interrupted work: a create (VM made, id unknown) is
// cleaned up and kept as failed; a delete is finished.
func TestRestoreInterrupted(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, time.Minute)
	j, err := journal.Open(filepath.Join(e.stateDir, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	mkVM := func(id string) *provider.Instance {
		ud, _ := userdata.Encode(&userdata.Config{Version: 1, SandboxID: id, TunnelCA: string(e.ca.CertPEM()), Attester: "fake", ListenPort: e.prov.Port})
		inst, err := e.prov.Create(ctx, provider.CreateRequest{Name: "podvm-" + id, SandboxID: id, UserData: ud,
			Tags: provider.Tags(provider.Owner{ClusterID: "c1", Node: "node-a", SandboxID: id}, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	mkVM("creating")
	del := mkVM("deleting")
	j.Put(&journal.Entry{SandboxID: "creating", State: journal.Provisioning, VMName: "podvm-creating"})
	j.Put(&journal.Entry{SandboxID: "deleting", State: journal.Stopping, VMName: "podvm-deleting", VMID: del.ID})
	m := e.manager(t, nil)
	// StopVM waits for the background cleanup of each and then succeeds.
	for _, id := range []string{"creating"} {
		if err := m.StopVM(ctx, id); err != nil {
			t.Fatalf("StopVM %s: %v", id, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(e.prov.VMs()) != 0 || len(m.Status()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("left: VMs %v status %+v", e.prov.VMs(), m.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestManyConcurrentSandboxes(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, nil)
	e.prov.SetFaults(sandboxtest.Faults{CreateDelay: 200 * time.Millisecond})
	ctx := ctxT(t, 2*time.Minute)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("many-%03d", i)
			path, err := m.CreateVM(ctx, id, kataAnnotations(id), "")
			if err == nil {
				err = m.StartVM(ctx, id)
			}
			if err == nil {
				err = healthCheck(ctx, path)
			}
			if err == nil {
				err = m.StopVM(ctx, id)
			}
			if err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if vms := e.prov.VMs(); len(vms) != 0 {
		t.Fatalf("%d VMs left", len(vms))
	}
}

type listingProvider struct {
	*sandboxtest.Provider
}

func (listingProvider) InstanceTypes(context.Context) ([]provider.InstanceType, error) {
	return []provider.InstanceType{
		{Name: "big", VCPUs: 8, MemoryMiB: 32768}, {Name: "small", VCPUs: 2, MemoryMiB: 4096}, {Name: "mid", VCPUs: 4, MemoryMiB: 8192},
	}, nil
}

func TestInstanceTypeSelection(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) {
		o.Provider = sandbox.WithInstanceTypePolicy(listingProvider{e.prov}, []string{"small", "mid", "big"}, "small")
	})
	ctx := ctxT(t, time.Minute)
	cases := []struct {
		id, vcpus, mem, machine string
		want                    string
		field                   string
	}{
		{"fit-mid", "3", "6000", "", "mid big", ""},
		{"fit-small", "1", "1024", "", "small mid big", ""},
		{"explicit", "", "", "big", "big", ""},
		{"not-allowed", "", "", "huge", "", annotations.MachineType},
		{"too-big", "64", "", "", "", annotations.DefaultVCPUs},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			a := kataAnnotations(c.id)
			a[annotations.DefaultVCPUs], a[annotations.DefaultMemory], a[annotations.MachineType] = c.vcpus, c.mem, c.machine
			_, err := m.CreateVM(ctx, c.id, a, "")
			if c.field != "" {
				var ie *sandbox.InvalidError
				if !errors.As(err, &ie) || !strings.Contains(ie.Field, c.field) {
					t.Fatalf("err = %v, want InvalidError naming %s", err, c.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range m.Status() {
				if st.SandboxID == c.id && strings.Join(st.InstanceTypes, " ") != c.want {
					t.Fatalf("instance types %v, want %s", st.InstanceTypes, c.want)
				}
			}
		})
	}
}

// A shutdown during StartVM leaves the record for the next start, which
// cleans the interrupted create up; StopVM then succeeds.
func TestShutdownDuringStart(t *testing.T) {
	e := newEnv(t)
	m1 := e.manager(t, nil)
	ctx := ctxT(t, time.Minute)
	if _, err := m1.CreateVM(ctx, "interrupted", kataAnnotations("slow"), ""); err != nil {
		t.Fatal(err)
	}
	e.prov.SetFaults(sandboxtest.Faults{CreateDelay: 30 * time.Second})
	errc := make(chan error, 1)
	go func() { errc <- m1.StartVM(ctx, "interrupted") }()
	for {
		if st := m1.Status(); len(st) == 1 && st[0].State == journal.Provisioning {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	m1.Close()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("StartVM during shutdown = %v", err)
	}
	ent, err := journal.ReadDir(filepath.Join(e.stateDir, "sandboxes"))
	if err != nil || len(ent) != 1 || ent[0].State != journal.Provisioning {
		t.Fatalf("journal after shutdown: %+v, %v", ent, err)
	}
	e.prov.SetFaults(sandboxtest.Faults{})
	m2 := e.manager(t, nil)
	if err := m2.StopVM(ctx, "interrupted"); err != nil {
		t.Fatalf("StopVM after restart: %v", err)
	}
	if vms := e.prov.VMs(); len(vms) != 0 {
		t.Fatalf("VMs left: %v", vms)
	}
	if f := journalFiles(t, e); len(f) != 0 {
		t.Fatalf("journal left: %v", f)
	}
}

func TestSweepAbandoned(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) { o.TombstoneTTL = time.Nanosecond })
	ctx := ctxT(t, time.Minute)
	path, err := m.CreateVM(ctx, "never-started", kataAnnotations("x"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateVM(ctx, "running", kataAnnotations("y"), ""); err != nil {
		t.Fatal(err)
	}
	if err := m.StartVM(ctx, "running"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	m.Sweep()
	st := m.Status()
	if len(st) != 1 || st[0].SandboxID != "running" {
		t.Fatalf("after sweep: %+v", st)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("swept sandbox's socket left: %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Every log line about a sandbox names it and its pod; secrets never appear.
func TestLogLines(t *testing.T) {
	e := newEnv(t)
	var buf syncBuffer
	const secret = "c2VjcmV0LXJlZ2lzdHJ5LXRva2Vu"
	m := e.manager(t, func(o *sandbox.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Secrets = func(context.Context, journal.Entry) (*userdata.Secrets, error) {
			return &userdata.Secrets{AuthJSON: []byte(`{"auths":{"r.example":{"auth":"` + secret + `"}}}`)}, nil
		}
	})
	ctx := ctxT(t, time.Minute)
	if _, err := m.CreateVM(ctx, "logged", kataAnnotations("logpod"), ""); err != nil {
		t.Fatal(err)
	}
	if err := m.StartVM(ctx, "logged"); err != nil {
		t.Fatal(err)
	}
	if err := m.StopVM(ctx, "logged"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), secret) {
		t.Fatal("a secret reached the log")
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec["sandbox_id"] != "logged" || rec["pod"] != "default/logpod" {
			t.Errorf("line without sandbox id and pod: %s", line)
		}
		n++
	}
	if n < 4 {
		t.Fatalf("only %d log lines", n)
	}
}

// MaxSandboxes refuses a CreateVM beyond the limit without recording
// anything; a failed start's tombstone does not count, a stopped sandbox
// frees its place.
func TestSandboxLimit(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) { o.MaxSandboxes = 2 })
	ctx := ctxT(t, time.Minute)
	for _, id := range []string{"limit-a", "limit-b"} {
		if _, err := m.CreateVM(ctx, id, kataAnnotations("web"), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.StartVM(ctx, "limit-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateVM(ctx, "limit-a", kataAnnotations("web"), ""); !errors.Is(err, sandbox.ErrExists) {
		t.Fatalf("CreateVM of a running sandbox at the limit = %v, want ErrExists", err)
	}
	_, err := m.CreateVM(ctx, "limit-c", kataAnnotations("web"), "")
	if !errors.Is(err, sandbox.ErrLimit) || !strings.Contains(err.Error(), "2 sandboxes") || !strings.Contains(err.Error(), "PEERPODS_LIMIT_PER_NODE") {
		t.Fatalf("third CreateVM = %v, want ErrLimit naming the limit", err)
	}
	if len(m.Status()) != 2 || len(journalFiles(t, e)) != 2 {
		t.Fatalf("refused CreateVM left state: status %+v, journal %v", m.Status(), journalFiles(t, e))
	}
	if _, err := os.Stat(filepath.Join(e.podsDir, "limit-c")); !os.IsNotExist(err) {
		t.Fatalf("refused CreateVM made its socket dir: %v", err)
	}

	// A start that fails leaves a tombstone, which frees the place.
	e.prov.SetFaults(sandboxtest.Faults{CreateErrClean: provider.Errorf(provider.ErrInvalidConfig, "image podvm-x not found")})
	if err := m.StartVM(ctx, "limit-b"); err == nil {
		t.Fatal("StartVM with a failing provider succeeded")
	}
	e.prov.SetFaults(sandboxtest.Faults{})
	if _, err := m.CreateVM(ctx, "limit-c", kataAnnotations("web"), ""); err != nil {
		t.Fatalf("CreateVM after a failed start: %v", err)
	}
	if _, err := m.CreateVM(ctx, "limit-d", kataAnnotations("web"), ""); !errors.Is(err, sandbox.ErrLimit) {
		t.Fatalf("CreateVM beyond the limit again = %v, want ErrLimit", err)
	}
	if err := m.StopVM(ctx, "limit-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreateVM(ctx, "limit-d", kataAnnotations("web"), ""); err != nil {
		t.Fatalf("CreateVM after a stop: %v", err)
	}
}
