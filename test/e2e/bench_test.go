package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/libvirt"
	"github.com/peerpod/peerpod/test/e2e/harness"
	"github.com/peerpod/peerpod/test/kataclient"
)

// Benchmarks of pod VM start (make bench-libvirt; figures in docs/benchmarks.md).
// Every figure names the virtualization used (kvm or qemu = TCG).

func benchEnv(b *testing.B) (*harness.Env, *kataclient.Client) {
	b.Helper()
	return benchEnvWith(b, harness.Options{})
}

func benchEnvWith(b *testing.B, opts harness.Options) (*harness.Env, *kataclient.Client) {
	b.Helper()
	if os.Getenv("PEERPOD_E2E") == "" {
		b.Skip("pod VM benchmarks: run with make bench-libvirt (PEERPOD_E2E=1)")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := os.Stat("/usr/sbin/libvirtd"); err != nil {
		b.Skip("libvirtd not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := harness.Setup(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Close(context.Background()) })
	c, err := kataclient.New(kataclient.Config{HypervisorSocket: env.Socket, VMStartTimeout: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return env, c
}

func report(b *testing.B, name string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	b.ReportMetric(p(0.5).Seconds(), name+"-p50-s")
	b.ReportMetric(p(0.95).Seconds(), name+"-p95-s")
	b.Logf("virt=%s %s over %d runs: p50 %s p95 %s (all %v)", libvirt.DetectVirtType(), name, len(s), p(0.5), p(0.95), s)
}

// qemuRSS is the resident memory of the QEMU process of domain name, in MiB.
func qemuRSS(name string) (float64, error) {
	pid, err := os.ReadFile(filepath.Join("/var/run/libvirt/qemu", name+".pid"))
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/" + strings.TrimSpace(string(pid)) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for %s", name)
}

// BenchmarkStartVM: CreateVM → StartVM returned (agent ready through the
// attested tunnel, fake attester), and the floor measured in the same run:
// the same domain booted with a TCP-only init, Create → first TCP answer.
func BenchmarkStartVM(b *testing.B) {
	env, c := benchEnv(b)
	ctx := context.Background()
	b.Logf("vcpus=%d kernel cmdline extra=%q", benchVCPUs(b), os.Getenv("LIBVIRT_KERNEL_CMDLINE"))
	vcpus := benchVCPUs(b)
	floorProv := newFloor(b, env, vcpus)
	var ours, floor []time.Duration
	var rss []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Ours: through peerpodd, as the Kata runtime calls it.
		sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: fmt.Sprintf("bench%d", i), Namespace: "default", VCPUs: vcpus, MemoryMiB: 512, Initdata: harness.TestInitdata()}, "")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := sb.StartVM(ctx); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
		if insts, err := floorProv.List(ctx, map[string]string{provider.TagSandbox: sb.ID}); err == nil && len(insts) == 1 {
			if r, err := qemuRSS(insts[0].Name); err == nil {
				rss = append(rss, r)
			}
		}
		if err := sb.StopVM(ctx); err != nil {
			b.Fatal(err)
		}
		floor = append(floor, bootFloor(ctx, b, env, floorProv))
	}
	b.StopTimer()
	report(b, "startvm", ours)
	report(b, "floor", floor)
	if len(ours) > 0 && len(floor) > 0 {
		over, ratio := versus(ours, floor)
		b.ReportMetric(over.Seconds(), "overhead-p50-s")
		b.ReportMetric(ratio, "ratio-p50")
	}
	if len(rss) > 0 {
		var sum float64
		for _, r := range rss {
			sum += r
		}
		b.ReportMetric(sum/float64(len(rss)), "qemu-rss-MiB")
	}
	if st, err := os.Stat(env.Image.Initrd); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "initramfs-MiB")
	}
}

// versus is the difference and ratio of the medians of ours and base.
func versus(ours, base []time.Duration) (time.Duration, float64) {
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	o, f := med(ours), med(base)
	return o - f, float64(o) / float64(f)
}

// newFloor is a libvirt provider booting the floor image (a TCP-only init)
// with the same domain definition as the pod VMs of env.
func newFloor(b *testing.B, env *harness.Env, vcpus int) *libvirt.Provider {
	b.Helper()
	ctx := context.Background()
	floorImg, err := harness.BuildImage(ctx, env.Root, "./podvm-image/cmd/tcpinit")
	if err != nil {
		b.Fatal(err)
	}
	// The floor's domain is ours: the same vCPUs, memory and extra kernel
	// arguments (LIBVIRT_KERNEL_CMDLINE reaches peerpodd through its environment).
	floorCfg, err := libvirt.LoadConfig(func(k string) string {
		return map[string]string{"LIBVIRT_NET": env.Bridge.Name, "LIBVIRT_KERNEL": floorImg.Kernel,
			"LIBVIRT_INITRD": floorImg.Initrd, "LIBVIRT_DATA_DIR": env.DataDir, "LIBVIRT_MEMORY": "512",
			"LIBVIRT_CPU": strconv.Itoa(vcpus), "LIBVIRT_KERNEL_CMDLINE": os.Getenv("LIBVIRT_KERNEL_CMDLINE")}[k]
	})
	if err != nil {
		b.Fatal(err)
	}
	floorProv, err := libvirt.New(ctx, floorCfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { floorProv.Close() })
	return floorProv
}

// bootFloor boots one floor VM: Create → first TCP answer, then deletes it.
func bootFloor(ctx context.Context, b *testing.B, env *harness.Env, floorProv *libvirt.Provider) time.Duration {
	b.Helper()
	sid := kataclient.NewSandboxID()
	name, _ := provider.VMName("floor", sid)
	start := time.Now()
	inst, err := floorProv.Create(ctx, provider.CreateRequest{Name: name, SandboxID: sid,
		Tags: provider.Tags(provider.Owner{ClusterID: env.Cluster, Node: env.Node, SandboxID: sid}, nil)})
	if err != nil {
		b.Fatal(err)
	}
	if err := waitOK(ctx, net.JoinHostPort(inst.IPs[0].String(), "15150")); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	_ = floorProv.Delete(ctx, inst.ID)
	return took
}

// BenchmarkStartVMWarm: CreateVM → StartVM returned when peerpodd has a
// warm VM booted (WARM_POOL_SIZE=1; the pod takes it), against the floor
// (a cold boot of the TCP-only image to its first answer) in the same run,
// and how long the pool takes to have a booted VM again (replacement
// Create → its agent port answering, measured from the StartVM's return).
func BenchmarkStartVMWarm(b *testing.B) {
	env, c := benchEnvWith(b, harness.Options{Env: []string{"WARM_POOL_SIZE=1"}})
	ctx := context.Background()
	floorProv := newFloor(b, env, 1)
	var warm, floor, refill []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := env.WaitWarmReady(ctx, 1); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second) // let the warm VM go idle, as it is when a pod comes
		b.StartTimer()
		sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: fmt.Sprintf("warm%d", i), Namespace: "default", VCPUs: 1, MemoryMiB: 512, Initdata: harness.TestInitdata()}, "")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := sb.StartVM(ctx); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		vms, err := env.WarmVMs(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(vms) != 2 {
			b.Fatalf("pod %s did not take the warm VM: %d warm-tagged VMs", sb.Pod.Name, len(vms))
		}
		warm = append(warm, took)
		// The replacement boots while the pod runs; the pod's VM also answers.
		ready := time.Now()
		if _, err := env.WaitWarmReady(ctx, 2); err != nil {
			b.Fatal(err)
		}
		refill = append(refill, time.Since(ready))
		if err := sb.StopVM(ctx); err != nil {
			b.Fatal(err)
		}
		floor = append(floor, bootFloor(ctx, b, env, floorProv))
	}
	b.StopTimer()
	report(b, "startvm-warm", warm)
	report(b, "floor", floor)
	report(b, "refill", refill)
	if len(warm) > 0 && len(floor) > 0 {
		_, ratio := versus(warm, floor)
		b.ReportMetric(ratio, "warm/floor-p50")
	}
}

// benchVCPUs is the pod VMs' vCPUs: PEERPOD_BENCH_VCPUS, default 1.
func benchVCPUs(b *testing.B) int {
	b.Helper()
	v := os.Getenv("PEERPOD_BENCH_VCPUS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("PEERPOD_BENCH_VCPUS=%q is not a positive number", v)
	}
	return n
}

// BenchmarkFivePods: five pods' StartVM at once; wall time until all agents answer.
func BenchmarkFivePods(b *testing.B) { benchFivePods(b, false) }

// BenchmarkFivePodsWarm: the same with five warm VMs booted (WARM_POOL_SIZE=5)
// and idle when the pods come.
func BenchmarkFivePodsWarm(b *testing.B) { benchFivePods(b, true) }

func benchFivePods(b *testing.B, warm bool) {
	opts := harness.Options{}
	if warm {
		opts.Env = []string{"WARM_POOL_SIZE=5"}
	}
	env, c := benchEnvWith(b, opts)
	ctx := context.Background()
	var walls []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if warm {
			b.StopTimer()
			if _, err := env.WaitWarmReady(ctx, 5); err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Second) // idle, as warm VMs are when pods come
			b.StartTimer()
		}
		sbs := make([]*kataclient.Sandbox, 5)
		for j := range sbs {
			sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: fmt.Sprintf("five%d-%d", i, j), Namespace: "default", VCPUs: 1, MemoryMiB: 512, Initdata: harness.TestInitdata()}, "")
			if err != nil {
				b.Fatal(err)
			}
			sbs[j] = sb
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(sbs))
		for _, sb := range sbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sb.StartVM(ctx); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		walls = append(walls, time.Since(start))
		if warm {
			if vms, err := env.WarmVMs(ctx); err == nil {
				b.Logf("warm-tagged VMs after the five started: %d (5 taken + replacements booting)", len(vms))
			}
		}
		for _, sb := range sbs {
			_ = sb.StopVM(ctx)
		}
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	name := "five-pods-wall"
	if warm {
		name = "five-pods-warm-wall"
	}
	report(b, name, walls)
}

func waitOK(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && line == "ok\n" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: no answer: %w", addr, ctx.Err())
}
