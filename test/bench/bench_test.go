// Package bench measures peerpodd as the Kata runtime uses it: the cost of
// an agent request through the node's agent socket (peerpodd + tunnel)
// against the same request straight to the agent over a unix socket, and
// 200 sandboxes created at once (time, peerpodd's RSS, goroutines after
// they are stopped). peerpodd runs as its own process (test/daemonproc) over
// the farm provider, and the farm's pod agents in another (test/farm), so
// peerpodd's memory is its own and both paths of an agent request cross
// from the client's process to the agent's as they do on a node.
package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/test/daemonproc"
	"github.com/peerpod/peerpod/test/farm"
	"github.com/peerpod/peerpod/test/kataclient"
)

func TestMain(m *testing.M) {
	if daemonproc.IsChild() {
		os.Exit(daemonproc.Main())
	}
	if farm.IsChild() {
		os.Exit(farm.ChildMain())
	}
	os.Exit(m.Run())
}

func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ppb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type rig struct {
	farm *farm.Remote
	d    *daemonproc.Daemon
	kc   *kataclient.Client
}

func newRig(t testing.TB, createDelay time.Duration) *rig {
	t.Helper()
	dir := shortDir(t)
	f := farm.StartProcess(t, dir)
	d := daemonproc.Start(t, daemonproc.Options{Dir: dir, Env: map[string]string{
		"CLOUD_PROVIDER": "farm", daemonproc.EnvFarmURL: f.URL, daemonproc.EnvFarmDelay: createDelay.String(),
		"FORWARDER_PORT": fmt.Sprint(f.Port), "LOG_LEVEL": "warn", "PEERPODS_LIMIT_PER_NODE": "1000",
	}})
	kc, err := kataclient.New(kataclient.Config{HypervisorSocket: d.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{farm: f, d: d, kc: kc}
}

func pod(i int) kataclient.Pod {
	return kataclient.Pod{Name: fmt.Sprintf("bench-%d", i), Namespace: "default", VCPUs: 1, MemoryMiB: 512}
}

// payload is the 1 KiB request body: Health.Version echoes it back.
var payload = strings.Repeat("x", 1024)

func version(ctx context.Context, conn net.Conn) error {
	tc := ttrpc.NewClient(conn)
	defer tc.Close()
	resp, err := agent.NewHealthClient(tc).Version(ctx, &agent.CheckRequest{Service: payload})
	if err != nil {
		return err
	}
	if len(resp.AgentVersion) != len(payload) {
		return fmt.Errorf("echo of %d bytes, want %d", len(resp.AgentVersion), len(payload))
	}
	return nil
}

// BenchmarkAgentRPC: one 1 KiB request/response to the same agent process,
// straight over its unix socket or through peerpodd's agent socket and the
// tunnel, interleaved so both paths see the same machine load. "conn-per-call" dials a new
// connection per request as the Kata runtime does; "kept-conn" reuses one.
// The ratio metric is node/direct.
func BenchmarkAgentRPC(b *testing.B) {
	r := newRig(b, 0)
	ctx := context.Background()
	s, err := r.kc.NewSandbox(ctx, kataclient.NewSandboxID(), pod(0), "")
	if err != nil {
		b.Fatal(err)
	}
	if err := s.StartVM(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.StopVM(context.Background()) })
	direct := directSocket(b, r)
	dial := func(path string) net.Conn {
		c, err := net.Dial("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.Run("conn-per-call", func(b *testing.B) {
		var tDirect, tNode time.Duration
		for b.Loop() {
			t0 := time.Now()
			if err := version(ctx, dial(direct)); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := version(ctx, dial(s.AgentSocket)); err != nil {
				b.Fatal(err)
			}
			tNode += time.Since(t1)
			tDirect += t1.Sub(t0)
		}
		report(b, tDirect, tNode)
	})
	b.Run("kept-conn", func(b *testing.B) {
		dc, nc := ttrpc.NewClient(dial(direct)), ttrpc.NewClient(dial(s.AgentSocket))
		defer dc.Close()
		defer nc.Close()
		dh, nh := agent.NewHealthClient(dc), agent.NewHealthClient(nc)
		var tDirect, tNode time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := dh.Version(ctx, &agent.CheckRequest{Service: payload}); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := nh.Version(ctx, &agent.CheckRequest{Service: payload}); err != nil {
				b.Fatal(err)
			}
			tNode += time.Since(t1)
			tDirect += t1.Sub(t0)
		}
		report(b, tDirect, tNode)
	})
}

func report(b *testing.B, direct, node time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(direct.Microseconds())/n, "direct-µs/op")
	b.ReportMetric(float64(node.Microseconds())/n, "node-µs/op")
	b.ReportMetric(float64(node)/float64(direct), "ratio")
}

// directSocket is the unix socket of the rig's only farm VM.
func directSocket(b *testing.B, r *rig) string {
	b.Helper()
	vms, err := r.farm.VMs(context.Background())
	if err != nil || len(vms) != 1 {
		b.Fatalf("farm VMs %v, %v; want one", vms, err)
	}
	return r.farm.DirectSocket(vms[0].ID)
}

// sandboxes is how many sandboxes BenchmarkCreate200 makes at once.
const sandboxes = 200

// BenchmarkCreate200 creates 200 sandboxes at once (CreateVM + StartVM each,
// on fresh connections) with a provider whose create takes 2 s — after one
// sandbox alone as the baseline (ratio = 200 at once / one alone) — then checks
// every agent socket, reads peerpodd's RSS, stops them all and compares
// peerpodd's goroutine count with its count before. Run it with
// -benchtime=1x.
func BenchmarkCreate200(b *testing.B) {
	r := newRig(b, 2*time.Second)
	ctx := context.Background()
	// Baseline: one sandbox alone, which also starts whatever peerpodd
	// starts lazily; then the goroutine count with no sandbox.
	t0 := time.Now()
	one, err := r.kc.NewSandbox(ctx, kataclient.NewSandboxID(), pod(-1), "")
	if err == nil {
		err = one.StartVM(ctx)
	}
	if err != nil {
		b.Fatal(err)
	}
	single := time.Since(t0)
	if err := one.StopVM(ctx); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	base, err := r.d.Metric("go_goroutines")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		all := make([]*kataclient.Sandbox, sandboxes)
		errs := make([]error, sandboxes)
		var wg sync.WaitGroup
		cpu0, err := r.d.Metric("process_cpu_seconds_total")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range sandboxes {
			wg.Go(func() {
				s, err := r.kc.NewSandbox(ctx, kataclient.NewSandboxID(), pod(i), "")
				if err == nil {
					err = s.StartVM(ctx)
				}
				all[i], errs[i] = s, err
			})
		}
		wg.Wait()
		took := time.Since(start)
		cpu1, err := r.d.Metric("process_cpu_seconds_total")
		if err != nil {
			b.Fatal(err)
		}
		for i, err := range errs {
			if err != nil {
				b.Fatalf("sandbox %d: %v\n%s", i, err, r.d.Tail(10))
			}
		}
		// Every sandbox answers through its socket: a live tunnel each.
		for _, s := range all {
			wg.Go(func() {
				if err := s.Check(ctx); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		rss, err := r.d.RSS()
		if err != nil {
			b.Fatal(err)
		}
		running, _ := r.d.Metric(`peerpod_sandboxes{state="running"}`)
		for _, s := range all {
			wg.Go(func() {
				if err := s.StopVM(ctx); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		if vms, err := r.farm.VMs(ctx); err != nil || len(vms) != 0 {
			b.Fatalf("%d VMs left after StopVM (%v)", len(vms), err)
		}
		after := settle(r.d, base)
		b.ReportMetric(single.Seconds(), "create1-s")
		b.ReportMetric(took.Seconds(), "create200-s")
		b.ReportMetric(took.Seconds()/single.Seconds(), "ratio")
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		b.ReportMetric(cpu1-cpu0, "peerpodd-cpu-s")
		b.ReportMetric(running, "running")
		b.ReportMetric(after-base, "goroutine-growth")
	}
}

// settle waits up to 10 s for peerpodd's goroutine count to fall back to
// base and returns the last count.
func settle(d *daemonproc.Daemon, base float64) float64 {
	var g float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if g, err = d.Metric("go_goroutines"); err == nil && g <= base {
			break
		}
	}
	return g
}
