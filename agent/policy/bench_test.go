package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"golang.org/x/sys/unix"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/internal/benchstat"
	"github.com/peerpod/peerpod/policygen"
)

// benchPolicy generates a policy the way peerpodctl does for a pod with
// several containers (so its policy data is the size of a real pod's), and
// returns it with a CreateContainerRequest it allows.
func benchPolicy(b testing.TB) (string, *agent.CreateContainerRequest) {
	b.Helper()
	const containers = 8
	y := "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n"
	for i := range containers {
		y += fmt.Sprintf("  - name: c%d\n    image: \"registry.example/app@sha256:%064d\"\n    command: [\"/app/server\", \"--port\", \"80%02d\", \"--mode\", \"production\"]\n    workingDir: /srv\n    env:\n", i, i, i)
		for j := range 24 {
			y += fmt.Sprintf("    - {name: SETTING_%02d, value: \"value-%02d-of-container-%d\"}\n", j, j, i)
		}
		y += "    securityContext: {runAsUser: 1000, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}\n"
		y += "    volumeMounts: [{name: config, mountPath: /etc/app, readOnly: true}, {name: cache, mountPath: /cache}]\n"
		y += "    readinessProbe: {exec: {command: [\"/app/check\", \"--ready\"]}}\n"
	}
	y += "  volumes: [{name: config, configMap: {name: cfg}}, {name: cache, emptyDir: {}}]\n"
	res, err := policygen.Generate(context.Background(), []byte(y), policygen.Options{Resolver: policygen.OfflineResolver{}})
	if err != nil {
		b.Fatal(err)
	}
	// The request for the last container (the rules try each entry).
	last := containers - 1
	cid := fmt.Sprintf("%064x", 7)
	shared := func(n string) string {
		return "/run/kata-containers/shared/containers/" + cid + "-0123456789abcdef-" + n
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	for j := range 24 {
		env = append(env, fmt.Sprintf("SETTING_%02d=value-%02d-of-container-%d", j, j, last))
	}
	env = append(env, "HOSTNAME=web", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_PORT=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1")
	mounts := []*agent.Mount{
		{Destination: "/proc", Source: "proc", Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Source: "tmpfs", Type: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Source: "devpts", Type: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Source: "mqueue", Type: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Source: "sysfs", Type: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Source: "cgroup", Type: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: "/etc/hosts", Source: shared("hosts"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/dev/termination-log", Source: shared("termination-log"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/hostname", Source: shared("hostname"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/resolv.conf", Source: shared("resolv.conf"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/dev/shm", Source: "/run/kata-containers/sandbox/shm", Type: "bind", Options: []string{"rbind"}},
		{Destination: "/etc/app", Source: shared("config"), Type: "bind", Options: []string{"rbind", "rprivate", "ro"}},
		{Destination: "/cache", Source: shared("cache"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
	}
	caps := policygen.DefaultCapabilities
	req := &agent.CreateContainerRequest{
		ContainerId: cid,
		ExecId:      cid,
		Storages: []*agent.Storage{{Driver: "image_guest_pull", Source: res.Data.Containers[last+1].Image, Fstype: "overlay",
			DriverOptions: []string{`image_guest_pull={"metadata":{}}`}, MountPoint: "/run/kata-containers/" + cid + "/rootfs"}},
		OCI: &agent.Spec{
			Version: "1.1.0",
			Process: &agent.Process{
				User: &agent.User{UID: 1000}, Args: []string{"/app/server", "--port", fmt.Sprintf("80%02d", last), "--mode", "production"},
				Env: env, Cwd: "/srv", NoNewPrivileges: true,
				Capabilities: &agent.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			},
			Root:     &agent.Root{Path: "/run/kata-containers/" + cid + "/rootfs", Readonly: true},
			Hostname: "web",
			Mounts:   mounts,
			Annotations: map[string]string{
				"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": fmt.Sprintf("c%d", last),
				"io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "shop",
				"io.kubernetes.cri.sandbox-id": fmt.Sprintf("%064x", 1), "io.kubernetes.cri.image-name": res.Data.Containers[last+1].Image,
			},
			Linux: &agent.Linux{
				CgroupsPath:   "/kubepods/pod1/" + cid,
				Namespaces:    []*agent.LinuxNamespace{{Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
				MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"},
				ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
				Resources:     &agent.LinuxResources{Memory: &agent.LinuxMemory{Limit: 128 << 20}, CPU: &agent.LinuxCPU{Shares: 2, Period: 100000}},
			},
		},
	}
	return res.Policy, req
}

// BenchmarkCreateContainerDecision compares the engine's decision with
// plain OPA (one prepared query, the request as a JSON-decoded map) on the
// same policy and request. The two alternate in phases of decisionPhase
// calls, so load on a shared machine falls on both alike while neither
// pays for the other's garbage; it reports each one's median wall time,
// their ratio, and each one's median CPU time.
func BenchmarkCreateContainerDecision(b *testing.B) {
	ctx := context.Background()
	text, req := benchPolicy(b)
	e := newEngine(b, text, Options{})
	if err := e.Authorize(ctx, "CreateContainer", req); err != nil {
		b.Fatal(err)
	}
	engine := func() {
		if err := e.Authorize(ctx, "CreateContainer", req); err != nil {
			b.Fatal(err)
		}
	}
	pq, err := rego.New(
		rego.Query("data.agent_policy.CreateContainerRequest"),
		rego.Module("policy.rego", text),
	).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}
	j, _ := ast.JSON(Input(req.ProtoReflect()))
	raw, _ := json.Marshal(j)
	plain := func() {
		var in map[string]any
		if err := json.Unmarshal(raw, &in); err != nil {
			b.Fatal(err)
		}
		rs, err := pq.Eval(ctx, rego.EvalInput(in))
		if err != nil || len(rs) != 1 {
			b.Fatal(err)
		}
		if m, _ := rs[0].Expressions[0].Value.(map[string]any); m["allowed"] != true {
			b.Fatalf("denied: %v", rs[0].Expressions[0].Value)
		}
	}
	b.ReportMetric(float64(len(text)), "policy-bytes")
	b.ReportMetric(float64(len(raw)), "input-bytes")
	// Wall time includes waiting for a CPU on a shared machine; the
	// thread's CPU time (the goroutine is locked to its thread) does not.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var we, wp, ce, cp []time.Duration
	timed := func(f func(), wall, cpu *[]time.Duration) {
		for range decisionPhase {
			t0, c0 := time.Now(), threadCPU(b)
			f()
			*wall, *cpu = append(*wall, time.Since(t0)), append(*cpu, threadCPU(b)-c0)
		}
	}
	b.ResetTimer()
	for range (b.N + decisionPhase - 1) / decisionPhase {
		timed(engine, &we, &ce)
		timed(plain, &wp, &cp)
	}
	b.StopTimer()
	b.ReportMetric(median(we), "engine-p50-µs")
	b.ReportMetric(median(wp), "opa-p50-µs")
	b.ReportMetric(median(we)/median(wp), "ratio")
	b.ReportMetric(median(ce), "engine-cpu-p50-µs")
	b.ReportMetric(median(cp), "opa-cpu-p50-µs")
}

// decisionPhase is how many decisions of one kind run in a row.
const decisionPhase = 50

// threadCPU is the CPU time the calling thread has used.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkRulesBeforeAfter compares the CreateContainerRequest rules
// policygen emits with the ones it emitted before they were tuned
// (testdata/rules_before.rego, whose policy data keeps capabilities as a
// set), on the same pod data and the same prebuilt input: evaluation only,
// alternating call by call. It reports each one's median, their ratio and
// their allocations per evaluation.
func BenchmarkRulesBeforeAfter(b *testing.B) {
	ctx := context.Background()
	text, req := benchPolicy(b)
	before, err := os.ReadFile("testdata/rules_before.rego")
	if err != nil {
		b.Fatal(err)
	}
	i := strings.Index(text, "\npolicy_data := ")
	data, err := ast.ParseTerm(text[i+len("\npolicy_data := "):])
	if err != nil {
		b.Fatal(err)
	}
	data.Value.(ast.Object).Get(ast.StringTerm("containers")).Value.(*ast.Array).Foreach(func(c *ast.Term) {
		o := c.Value.(ast.Object)
		caps := o.Get(ast.StringTerm("capabilities")).Value.(ast.Object)
		o.Insert(ast.StringTerm("capabilities"), ast.NewTerm(ast.NewSet(caps.Keys()...)))
	})
	prepare := func(policy string) *rego.PreparedEvalQuery {
		c := newEngine(b, policy, Options{}).cur.Load()
		pq, err := c.query(ctx, "CreateContainerRequest")
		if err != nil {
			b.Fatal(err)
		}
		return pq
	}
	pb := prepare(string(before) + "\npolicy_data := " + data.String() + "\n")
	pa := prepare(text)
	in := Input(req.ProtoReflect())
	eval := func(pq *rego.PreparedEvalQuery) {
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(in))
		if err != nil || len(rs) != 1 {
			b.Fatal(err)
		}
		if m, _ := rs[0].Expressions[0].Value.(map[string]any); m["allowed"] != true {
			b.Fatalf("denied: %v", rs[0].Expressions[0].Value)
		}
	}
	var db, da []time.Duration
	var ab, aa uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for range b.N {
		runtime.ReadMemStats(&ms)
		m0, t0 := ms.Mallocs, time.Now()
		eval(pb)
		t1 := time.Now()
		runtime.ReadMemStats(&ms)
		m1, t2 := ms.Mallocs, time.Now()
		eval(pa)
		t3 := time.Now()
		runtime.ReadMemStats(&ms)
		db, da = append(db, t1.Sub(t0)), append(da, t3.Sub(t2))
		ab, aa = ab+m1-m0, aa+ms.Mallocs-m1
	}
	b.StopTimer()
	b.ReportMetric(median(db), "before-p50-µs")
	b.ReportMetric(median(da), "after-p50-µs")
	b.ReportMetric(median(da)/median(db), "ratio")
	b.ReportMetric(float64(ab)/float64(b.N), "before-allocs")
	b.ReportMetric(float64(aa)/float64(b.N), "after-allocs")
}

// BenchmarkCreateContainerEngine times the engine's decision alone (for
// profiling: go test -bench CreateContainerEngine -cpuprofile ...).
func BenchmarkCreateContainerEngine(b *testing.B) {
	ctx := context.Background()
	text, req := benchPolicy(b)
	e := newEngine(b, text, Options{})
	b.ReportAllocs()
	benchstat.P50(b, func() {
		if err := e.Authorize(ctx, "CreateContainer", req); err != nil {
			b.Fatal(err)
		}
	})
}

// median is the median of ds in microseconds.
func median(ds []time.Duration) float64 {
	return float64(benchstat.Median(ds).Nanoseconds()) / 1e3
}

// BenchmarkConstantRule measures a request whose rule is a constant
// default (StartContainerRequest), against plain OPA evaluating it.
func BenchmarkConstantRule(b *testing.B) {
	ctx := context.Background()
	text, _ := benchPolicy(b)
	req := &agent.StartContainerRequest{ContainerId: "c1"}
	b.Run("engine", func(b *testing.B) {
		e := newEngine(b, text, Options{})
		benchstat.P50(b, func() {
			if err := e.Authorize(ctx, "StartContainer", req); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("plain-opa", func(b *testing.B) {
		pq, err := rego.New(rego.Query("data.agent_policy.StartContainerRequest"), rego.Module("policy.rego", text)).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		benchstat.P50(b, func() {
			rs, err := pq.Eval(ctx, rego.EvalInput(map[string]any{"container_id": "c1"}))
			if err != nil || len(rs) != 1 || rs[0].Expressions[0].Value != true {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkFirstDecision times what a pod VM pays once per policy: loading
// it (parse, compile, constant rules) and the first CreateContainerRequest
// decision (which plans the rule), against plain OPA preparing the same
// query and making its first decision.
func BenchmarkFirstDecision(b *testing.B) {
	ctx := context.Background()
	text, req := benchPolicy(b)
	j, _ := ast.JSON(Input(req.ProtoReflect()))
	var load, first, plain []time.Duration
	for range b.N {
		t0 := time.Now()
		e, err := New(ctx, text, Options{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := e.Authorize(ctx, "CreateContainer", req); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		pq, err := rego.New(rego.Query("data.agent_policy.CreateContainerRequest"), rego.Module("policy.rego", text)).PrepareForEval(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pq.Eval(ctx, rego.EvalInput(j)); err != nil {
			b.Fatal(err)
		}
		load, first, plain = append(load, t1.Sub(t0)), append(first, t2.Sub(t1)), append(plain, time.Since(t2))
	}
	b.ReportMetric(median(load)/1000, "load-ms")
	b.ReportMetric(median(first)/1000, "first-decision-ms")
	b.ReportMetric(median(plain)/1000, "opa-prepare+first-ms")
}
