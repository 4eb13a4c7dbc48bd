package service_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/peerpod/peerpod/agent/cgroups"
	"github.com/peerpod/peerpod/agent/image"
	"github.com/peerpod/peerpod/agent/internal/agenttest"
	"github.com/peerpod/peerpod/agent/internal/testimage"
	"github.com/peerpod/peerpod/agent/pause"
	pb "github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/internal/benchstat"
	"github.com/peerpod/peerpod/tunnel"
	"google.golang.org/protobuf/types/known/emptypb"
)

// benchSandbox starts an agent with a sandbox, a pause container and a cached image.
func benchSandbox(b *testing.B) (*agenttest.Agent, string) {
	b.Helper()
	reg := testimage.Serve(b, "", "")
	ref := reg.Push(b, "bench/busybox:1", testimage.Image(b, []string{"sh"}, testimage.BusyboxLayer(b)))
	a := agenttest.Start(b, agenttest.Options{})
	ctx := context.Background()
	e := &emptypb.Empty{}
	for _, step := range []struct {
		m   string
		req any
	}{
		{"CreateSandbox", &pb.CreateSandboxRequest{Hostname: "bench", Storages: []*pb.Storage{agenttest.ShmStorage()}, SandboxId: "bench"}},
		{"CreateContainer", &pb.CreateContainerRequest{ContainerId: "pause", OCI: agenttest.Spec("/pause"), Storages: agenttest.ImageStorage("pause", "pause")}},
		{"StartContainer", &pb.StartContainerRequest{ContainerId: "pause"}},
		// Warm the image cache.
		{"CreateContainer", &pb.CreateContainerRequest{ContainerId: "warm", OCI: agenttest.Spec("true"), Storages: agenttest.ImageStorage("warm", ref)}},
		{"RemoveContainer", &pb.RemoveContainerRequest{ContainerId: "warm"}},
	} {
		if err := a.Agent(ctx, step.m, step.req, e); err != nil {
			b.Fatalf("%s: %v", step.m, err)
		}
	}
	return a, ref
}

// BenchmarkCreateStartVsRunc: CreateContainer+StartContainer of a cached
// image through the tunnel, against `runc run --detach` of the same bundle,
// interleaved in one run. Reports both and their ratio.
func BenchmarkCreateStartVsRunc(b *testing.B) {
	agenttest.NeedRoot(b)
	a, ref := benchSandbox(b)
	ctx := context.Background()
	e := &emptypb.Empty{}
	runcRoot := b.TempDir()
	img, err := a.Sandbox.Images().Pull(ctx, ref)
	if err != nil {
		b.Fatal(err)
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	var agentT, runcT, twoStepT, rttT []time.Duration
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("c%d", i)
		// One empty round trip on a new stream: what each of the two calls costs beyond its work.
		tr := time.Now()
		if err := a.Call(ctx, "grpc.Health", "Check", &pb.CheckRequest{}, &pb.HealthCheckResponse{}); err != nil {
			b.Fatal(err)
		}
		rttT = append(rttT, time.Since(tr))
		viaAgent := func() {
			t0 := time.Now()
			if err := a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: id, OCI: agenttest.Spec("sleep", "1000"), Storages: agenttest.ImageStorage(id, ref)}, e); err != nil {
				b.Fatal(err)
			}
			if err := a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: id}, e); err != nil {
				b.Fatal(err)
			}
			agentT = append(agentT, time.Since(t0))
		}
		// The same bundle (the agent's, rootfs mounted), run by runc directly in its own cgroup.
		rid := "direct-" + id
		direct := filepath.Join(b.TempDir(), "bundle")
		viaRunc := func() {
			// The container inherits runc's stdio: files, so runc returns once it runs.
			run := exec.Command("/usr/sbin/runc", "--root", runcRoot, "--log", filepath.Join(direct, "runc.log"), "run", "--detach", "--bundle", direct, rid)
			run.Stdin, run.Stdout, run.Stderr = devNull, devNull, devNull
			t1 := time.Now()
			if err := run.Run(); err != nil {
				msg, _ := os.ReadFile(filepath.Join(direct, "runc.log"))
				b.Fatalf("runc run: %v: %s", err, msg)
			}
			runcT = append(runcT, time.Since(t1))
			_ = exec.Command("/usr/sbin/runc", "--root", runcRoot, "delete", "--force", rid).Run()
			b.StopTimer()
			_ = image.Unmount(filepath.Join(direct, "rootfs"))
			_ = os.RemoveAll(filepath.Join(direct, "scratch"))
			if _, err := image.Mount(img.Layers, filepath.Join(direct, "rootfs"), filepath.Join(direct, "scratch")); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			// Kata's two calls done by runc directly: create, then start.
			create := exec.Command("/usr/sbin/runc", "--root", runcRoot, "--log", filepath.Join(direct, "runc.log"), "create", "--bundle", direct, rid)
			create.Stdin, create.Stdout, create.Stderr = devNull, devNull, devNull
			t2 := time.Now()
			if err := create.Run(); err != nil {
				b.Fatalf("runc create: %v", err)
			}
			if err := exec.Command("/usr/sbin/runc", "--root", runcRoot, "start", rid).Run(); err != nil {
				b.Fatalf("runc start: %v", err)
			}
			twoStepT = append(twoStepT, time.Since(t2))
		}
		writeBundle := func() {
			raw, err := os.ReadFile(filepath.Join(a.StateDir, "containers", id, "config.json"))
			if err != nil {
				b.Fatal(err)
			}
			var spec specs.Spec
			if err := json.Unmarshal(raw, &spec); err != nil {
				b.Fatal(err)
			}
			spec.Linux.CgroupsPath = a.CgroupParent + "/" + rid
			if err := os.MkdirAll(direct, 0o755); err != nil {
				b.Fatal(err)
			}
			// A fresh overlay of the same cached layers, as the agent mounts for each container.
			root := filepath.Join(direct, "rootfs")
			if _, err := image.Mount(img.Layers, root, filepath.Join(direct, "scratch")); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = image.Unmount(root) })
			spec.Root.Path = root
			out, _ := json.Marshal(&spec)
			if err := os.WriteFile(filepath.Join(direct, "config.json"), out, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		if i%2 == 0 { // alternate which goes first, against drift on a shared machine
			viaAgent()
			b.StopTimer()
			writeBundle()
			b.StartTimer()
			viaRunc()
		} else {
			// The agent's bundle of the previous kind is needed first: make it, time only runc.
			b.StopTimer()
			if err := a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: id + "-tmpl", OCI: agenttest.Spec("sleep", "1000"), Storages: agenttest.ImageStorage(id+"-tmpl", ref)}, e); err != nil {
				b.Fatal(err)
			}
			tmpl := id
			id = id + "-tmpl"
			writeBundle()
			id = tmpl
			b.StartTimer()
			viaRunc()
			viaAgent()
			b.StopTimer()
			if err := a.Agent(ctx, "RemoveContainer", &pb.RemoveContainerRequest{ContainerId: id + "-tmpl"}, e); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}

		b.StopTimer()
		_ = exec.Command("/usr/sbin/runc", "--root", runcRoot, "delete", "--force", rid).Run()
		if err := a.Agent(ctx, "RemoveContainer", &pb.RemoveContainerRequest{ContainerId: id}, e); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPair(b, agentT, runcT, "runc-run")
	b.ReportMetric(float64(benchstat.Median(twoStepT).Microseconds())/1000, "runc-create+start-ms")
	b.ReportMetric(float64(benchstat.Median(rttT).Microseconds())/1000, "stream-rtt-ms")
}

// reportPair reports the medians of both series and the median of their
// per-iteration ratios (robust against a shared machine's bursts).
func reportPair(b *testing.B, agent, base []time.Duration, baseName string) {
	b.Helper()
	ratios := make([]float64, len(agent))
	for i := range agent {
		ratios[i] = float64(agent[i]) / float64(base[i])
	}
	b.ReportMetric(float64(benchstat.Median(agent).Microseconds())/1000, "agent-ms")
	b.ReportMetric(float64(benchstat.Median(base).Microseconds())/1000, baseName+"-ms")
	sort.Float64s(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}

// BenchmarkExecWaitTrue: ExecProcess `true` then WaitProcess through tunnel
// streams (one per request, as the Kata runtime opens them), against
// `runc exec` of `true` directly.
func BenchmarkExecWaitTrue(b *testing.B) {
	agenttest.NeedRoot(b)
	a, ref := benchSandbox(b)
	ctx := context.Background()
	e := &emptypb.Empty{}
	if err := a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "app", OCI: agenttest.Spec("sleep", "1000"), Storages: agenttest.ImageStorage("app", ref)}, e); err != nil {
		b.Fatal(err)
	}
	if err := a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "app"}, e); err != nil {
		b.Fatal(err)
	}
	var agentT, runcT []time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		eid := fmt.Sprintf("e%d", i)
		if err := a.Agent(ctx, "ExecProcess", &pb.ExecProcessRequest{ContainerId: "app", ExecId: eid, Process: &pb.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}, User: &pb.User{}}}, e); err != nil {
			b.Fatal(err)
		}
		var wr pb.WaitProcessResponse
		if err := a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "app", ExecId: eid}, &wr); err != nil || wr.Status != 0 {
			b.Fatalf("WaitProcess: %v %d", err, wr.Status)
		}
		agentT = append(agentT, time.Since(t0))
		t1 := time.Now()
		if msg, err := exec.Command("/usr/sbin/runc", "--root", filepath.Join(a.StateDir, "runc"), "exec", "app", "true").CombinedOutput(); err != nil {
			b.Fatalf("runc exec: %v: %s", err, msg)
		}
		runcT = append(runcT, time.Since(t1))
	}
	reportPair(b, agentT, runcT, "runc-exec")
}

func rssKiB(b *testing.B, pid int) float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(n)
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkAgentRSS runs the real podvm-agent binary and reports its
// resident memory idle and with 10 running containers, and its size.
// The measurement is made once, whatever b.N.
func BenchmarkAgentRSS(b *testing.B) {
	agenttest.NeedRoot(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "podvm-agent")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "../../cmd/podvm-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build podvm-agent: %v: %s", err, msg)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	// The pause bundle the image ships: the small pause binary.
	pauseBin := filepath.Join(dir, "pause")
	buildPause := exec.Command("go", "build", "-ldflags=-s -w", "-o", pauseBin, "../../cmd/podvm-agent/pause")
	buildPause.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := buildPause.CombinedOutput(); err != nil {
		b.Fatalf("build pause: %v: %s", err, msg)
	}
	pauseBundle := filepath.Join(dir, "pause_bundle")
	if err := pause.WriteBundle(pauseBundle, pauseBin, []string{"/pause"}); err != nil {
		b.Fatal(err)
	}
	reg := testimage.Serve(b, "", "")
	ref := reg.Push(b, "bench/busybox:1", testimage.Image(b, []string{"sh"}, testimage.BusyboxLayer(b)))
	caPEM, client := agenttest.NodePKI(b)
	ud, err := userdata.Encode(&userdata.Config{Version: userdata.Version, SandboxID: "rss", TunnelCA: caPEM, Attester: userdata.AttesterFake})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ud"), ud, 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cg, err := cgroups.Detect("")
	if err != nil {
		b.Fatal(err)
	}
	parent := fmt.Sprintf("/peerpod-bench-%08x", rand.Uint32())
	cmd := exec.Command(bin, "--userdata-file", filepath.Join(dir, "ud"), "--listen", addr,
		"--state-dir", filepath.Join(dir, "state"), "--kata-root", filepath.Join(dir, "kata"),
		"--pause-bundle", pauseBundle, "--cgroup-parent", parent, "--set-hostname=false",
		"--dev-allow-all-policy", "--log-level", "error")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cg.Remove(parent)
	})
	var sess *tunnel.Session
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 100 {
			b.Fatal("podvm-agent does not listen")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sess = agenttest.Dial(b, addr, client)
	call := func(method string, req, resp any) {
		b.Helper()
		conn, err := sess.Open(context.Background(), tunnel.KindAgent, nil)
		if err != nil {
			b.Fatal(err)
		}
		c := ttrpc.NewClient(conn)
		defer c.Close()
		if err := c.Call(context.Background(), "grpc.AgentService", method, req, resp); err != nil {
			b.Fatalf("%s: %v", method, err)
		}
	}
	time.Sleep(time.Second)
	idle := rssKiB(b, cmd.Process.Pid)
	e := &emptypb.Empty{}
	call("CreateSandbox", &pb.CreateSandboxRequest{Hostname: "rss", SandboxId: "rss", Storages: []*pb.Storage{agenttest.ShmStorage()}}, e)
	call("CreateContainer", &pb.CreateContainerRequest{ContainerId: "pause", OCI: agenttest.Spec("/pause"), Storages: agenttest.ImageStorage("pause", "pause")}, e)
	call("StartContainer", &pb.StartContainerRequest{ContainerId: "pause"}, e)
	for i := range 10 {
		id := fmt.Sprintf("c%d", i)
		call("CreateContainer", &pb.CreateContainerRequest{ContainerId: id, OCI: agenttest.Spec("sleep", "1000"), Storages: agenttest.ImageStorage(id, ref)}, e)
		call("StartContainer", &pb.StartContainerRequest{ContainerId: id}, e)
	}
	time.Sleep(time.Second)
	busy := rssKiB(b, cmd.Process.Pid)
	pidb, err := os.ReadFile(filepath.Join(dir, "state", "containers", "pause", "init.pid"))
	if err != nil {
		b.Fatal(err)
	}
	pausePid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	pauseRSS := rssKiB(b, pausePid)
	call("DestroySandbox", &pb.DestroySandboxRequest{}, e)
	for i := 0; i < b.N; i++ {
	}
	b.ReportMetric(idle/1024, "idle-RSS-MiB")
	b.ReportMetric(busy/1024, "10ctr-RSS-MiB")
	b.ReportMetric(float64(fi.Size())/(1<<20), "binary-MiB")
	b.ReportMetric(pauseRSS/1024, "pause-RSS-MiB")
}
