// Package e2e runs whole pods through peerpodd, the libvirt provider and real
// pod VMs (QEMU under KVM or TCG), driven as the Kata runtime drives them.
package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/test/e2e/harness"
	"github.com/peerpod/peerpod/test/kataclient"
)

// setup prepares the host once per test; it skips with one line when this
// host cannot run libvirt guests (not root, or libvirtd not installed).
func setup(t *testing.T) (*harness.Env, *kataclient.Client) {
	t.Helper()
	return setupWith(t, harness.Options{})
}

// setupWith is setup with harness options (the peerpodd environment, say).
func setupWith(t *testing.T, opts harness.Options) (*harness.Env, *kataclient.Client) {
	t.Helper()
	if os.Getenv("PEERPOD_E2E") == "" {
		t.Skip("end-to-end pod VM test: runs under make e2e (PEERPOD_E2E=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e needs root")
	}
	if _, err := os.Stat("/usr/sbin/libvirtd"); err != nil {
		t.Skip("libvirtd not installed (scripts/install-deps.sh installs it)")
	}
	for _, b := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (scripts/install-deps.sh installs it)", b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if opts.Step == nil {
		opts.Step = func(name string, took time.Duration) { t.Logf("setup: %s (%s)", name, took.Round(time.Millisecond)) }
	}
	env, err := harness.Setup(ctx, opts)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logTail(t, env)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := env.Close(ctx); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	c, err := kataclient.New(kataclient.Config{HypervisorSocket: env.Socket, VMStartTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return env, c
}

// logTail prints peerpodd's log and the VMs' consoles after a failure.
func logTail(t *testing.T, env *harness.Env) {
	t.Helper()
	if b, err := os.ReadFile(env.LogPath()); err == nil {
		t.Logf("peerpodd log (last 6 KiB):\n%s", tail(b, 6<<10))
	}
	ents, _ := os.ReadDir(env.DataDir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".console.log") {
			b, _ := os.ReadFile(env.DataDir + "/" + e.Name())
			t.Logf("console %s (last 4 KiB):\n%s", e.Name(), tail(b, 4<<10))
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startPod makes a sandbox and runs the runtime's start sequence (StartVM … pause container).
func startPod(ctx context.Context, t *testing.T, c *kataclient.Client, name string) *kataclient.Sandbox {
	t.Helper()
	sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: name, Namespace: "default", VCPUs: 1, MemoryMiB: 512, Initdata: harness.TestInitdata()}, "")
	if err != nil {
		t.Fatalf("CreateVM %s: %v", name, err)
	}
	start := time.Now()
	if err := sb.Start(ctx); err != nil {
		_ = sb.StopVM(context.WithoutCancel(ctx))
		t.Fatalf("start pod %s: %v", name, err)
	}
	t.Logf("pod %s: StartVM … pause container in %s", name, time.Since(start).Round(time.Millisecond))
	return sb
}

// runApp runs a busybox container printing greeting and checks its stdout.
func runApp(ctx context.Context, t *testing.T, env *harness.Env, sb *kataclient.Sandbox, cid, greeting string) {
	t.Helper()
	out, status, err := sb.Run(ctx, kataclient.Container{ID: cid, Image: env.BusyboxRef, Args: []string{"/bin/echo", greeting}}, nil)
	if err != nil {
		t.Fatalf("run %s: %v (output %q)", cid, err, out)
	}
	if status != 0 || string(bytes.TrimSpace(out)) != greeting {
		t.Fatalf("container %s: status %d, stdout %q; want 0, %q", cid, status, out, greeting)
	}
}

// execIn runs a process in the (running) container cid and returns its stdout.
func execIn(ctx context.Context, t *testing.T, sb *kataclient.Sandbox, cid string, args ...string) string {
	t.Helper()
	eid := "exec-" + kataclient.NewSandboxID()[:8]
	if err := sb.ExecProcess(ctx, cid, eid, args, false); err != nil {
		t.Fatalf("exec %v in %s: %v", args, cid, err)
	}
	out, err := sb.ReadAll(ctx, cid, eid, false)
	if err != nil {
		t.Fatalf("exec %v: read stdout: %v", args, err)
	}
	st, err := sb.WaitProcess(ctx, cid, eid)
	if err != nil || st != 0 {
		t.Fatalf("exec %v: status %d, %v", args, st, err)
	}
	return string(out)
}

// oomInVM runs a container limited to 16 MiB that allocates without bound
// (busybox tail buffering /dev/zero) and checks that the agent reports its
// OOM kill: in the pod VM the agent watches cgroup v2 memory.events, which
// the host (cgroup v1) cannot exercise.
func oomInVM(ctx context.Context, t *testing.T, env *harness.Env, sb *kataclient.Sandbox, cid string) {
	t.Helper()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ooms := sb.WatchOOM(wctx)
	req, err := sb.Request(kataclient.Container{ID: cid, Image: env.BusyboxRef, Args: []string{"/bin/tail", "/dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	req.OCI.Linux.Resources = &agent.LinuxResources{Memory: &agent.LinuxMemory{Limit: 16 << 20}}
	if err := sb.CreateContainerRequest(ctx, req); err != nil {
		t.Fatalf("create %s: %v", cid, err)
	}
	if err := sb.StartContainer(ctx, cid); err != nil {
		t.Fatalf("start %s: %v", cid, err)
	}
	select {
	case got := <-ooms:
		if got != cid {
			t.Fatalf("GetOOMEvent reported %q, want %q", got, cid)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("no OOM event for %s within 3 minutes", cid)
	}
	if st, err := sb.WaitProcess(ctx, cid, cid); err != nil || st != 137 {
		t.Fatalf("OOM-killed %s: status %d, %v; want 137", cid, st, err)
	}
	if err := sb.DeleteContainer(ctx, cid); err != nil {
		t.Fatalf("delete %s: %v", cid, err)
	}
}

// longRunning starts a container that stays up (sleep) for exec tests.
func longRunning(ctx context.Context, t *testing.T, env *harness.Env, sb *kataclient.Sandbox, cid string) {
	t.Helper()
	if err := sb.CreateContainer(ctx, kataclient.Container{ID: cid, Image: env.BusyboxRef, Args: []string{"/bin/sleep", "3600"}}); err != nil {
		t.Fatalf("create %s: %v", cid, err)
	}
	if err := sb.StartContainer(ctx, cid); err != nil {
		t.Fatalf("start %s: %v", cid, err)
	}
}

func stopPod(ctx context.Context, t *testing.T, sb *kataclient.Sandbox) {
	t.Helper()
	if err := sb.Stop(ctx); err != nil {
		t.Fatalf("stop pod %s: %v", sb.Pod.Name, err)
	}
}

func assertClean(ctx context.Context, t *testing.T, env *harness.Env) {
	t.Helper()
	left, err := env.Leftovers(ctx)
	if err != nil {
		t.Fatalf("leftovers: %v", err)
	}
	if len(left) > 0 {
		t.Fatalf("left behind after the pod was deleted: %s", strings.Join(left, "; "))
	}
}

// TestPod drives one whole pod: VM boots, pause and app containers run,
// stdout is read, an exec works, a container over its memory limit is
// reported OOM-killed, the pod is deleted and nothing is left.
func TestPod(t *testing.T) {
	env, c := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sb := startPod(ctx, t, c, "e2e-pod")
	runApp(ctx, t, env, sb, "app", "hello from a peerpod VM")
	longRunning(ctx, t, env, sb, "sleeper")
	if got := strings.TrimSpace(execIn(ctx, t, sb, "sleeper", "/bin/cat", "/proc/1/cmdline")); !strings.Contains(got, "sleep") {
		t.Fatalf("exec saw pid 1 %q, want the container's sleep", got)
	}
	oomInVM(ctx, t, env, sb, "hog")
	stopPod(ctx, t, sb)
	assertClean(ctx, t, env)
}

// TestPeerpoddRestart kills peerpodd while a pod runs and starts it again:
// the pod keeps answering through its agent socket.
func TestPeerpoddRestart(t *testing.T) {
	env, c := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sb := startPod(ctx, t, c, "e2e-restart")
	longRunning(ctx, t, env, sb, "sleeper")
	if err := env.KillPeerpodd(); err != nil {
		t.Fatal(err)
	}
	if err := env.StartPeerpodd(ctx); err != nil {
		t.Fatalf("restart peerpodd: %v", err)
	}
	var err error
	for i := 0; i < 100; i++ {
		if err = sb.Check(ctx); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after restart the pod does not answer: %v", err)
	}
	if got := strings.TrimSpace(execIn(ctx, t, sb, "sleeper", "/bin/echo", "still here")); got != "still here" {
		t.Fatalf("exec after restart: %q", got)
	}
	stopPod(ctx, t, sb)
	assertClean(ctx, t, env)
}

// TestTwoPods runs two pods at once, each with its own VM and address.
func TestTwoPods(t *testing.T) {
	env, c := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	sbs := make([]*kataclient.Sandbox, 2)
	for i := range sbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: []string{"e2e-a", "e2e-b"}[i], Namespace: "default", Initdata: harness.TestInitdata()}, "")
			if err != nil {
				t.Errorf("CreateVM: %v", err)
				return
			}
			if err := sb.Start(ctx); err != nil {
				_ = sb.StopVM(context.WithoutCancel(ctx))
				t.Errorf("start pod: %v", err)
				return
			}
			sbs[i] = sb
		}()
	}
	wg.Wait()
	if t.Failed() {
		for _, sb := range sbs {
			if sb != nil {
				_ = sb.Stop(ctx)
			}
		}
		t.FailNow()
	}
	for i, sb := range sbs {
		greeting := "pod " + sb.Pod.Name
		runApp(ctx, t, env, sb, "app", greeting)
		_ = i
	}
	for _, sb := range sbs {
		stopPod(ctx, t, sb)
	}
	assertClean(ctx, t, env)
}
