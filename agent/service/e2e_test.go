package service_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/agent/internal/agenttest"
	"github.com/peerpod/peerpod/agent/internal/testimage"
	pb "github.com/peerpod/peerpod/api/agent"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

const hostname = "pod-e2e-host"

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
}

// readUntil reads stdout of a process until want appears or the stream ends.
func readUntil(t *testing.T, ctx context.Context, a *agenttest.Agent, cid, eid, want string) string {
	t.Helper()
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		var r pb.ReadStreamResponse
		if err := a.Agent(ctx, "ReadStdout", &pb.ReadStreamRequest{ContainerId: cid, ExecId: eid, Len: 1024}, &r); err != nil {
			t.Fatalf("ReadStdout %s/%s: %v", cid, eid, err)
		}
		if len(r.Data) == 0 {
			break
		}
		out.Write(r.Data)
	}
	return out.String()
}

func pidOf(t *testing.T, a *agenttest.Agent, cid string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.StateDir, "containers", cid, "init.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// mountsUnder lists mount points below any of dirs.
func mountsUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		for _, d := range dirs {
			if strings.HasPrefix(fields[4], d) {
				out = append(out, fields[4])
			}
		}
	}
	return out
}

// TestKataSequence drives the agent through a tunnel in the Kata runtime's order.
func TestKataSequence(t *testing.T) {
	agenttest.NeedRoot(t)
	reg := testimage.Serve(t, "", "")
	ref := reg.Push(t, "app/busybox:1", testimage.Image(t, []string{"sh"}, testimage.BusyboxLayer(t)))
	a := agenttest.Start(t, agenttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := &emptypb.Empty{}

	// Health.Check.
	var hc pb.HealthCheckResponse
	if err := a.Call(ctx, "grpc.Health", "Check", &pb.CheckRequest{}, &hc); err != nil || hc.Status != pb.HealthCheckResponse_SERVING {
		t.Fatalf("Health.Check: %v %v", err, hc.Status)
	}
	// CreateSandbox.
	sbReq := &pb.CreateSandboxRequest{Hostname: hostname, Dns: []string{"nameserver 10.96.0.10", "search default.svc.cluster.local"}, Storages: []*pb.Storage{agenttest.ShmStorage()}, SandboxId: "e2e-sandbox"}
	if err := a.Agent(ctx, "CreateSandbox", sbReq, e); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	wantCode(t, a.Agent(ctx, "CreateSandbox", sbReq, e), codes.AlreadyExists, "second CreateSandbox")
	var gd pb.GuestDetailsResponse
	if err := a.Agent(ctx, "GetGuestDetails", &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true}, &gd); err != nil || gd.AgentDetails == nil {
		t.Fatalf("GetGuestDetails: %v", err)
	}

	// Pause container.
	pauseReq := &pb.CreateContainerRequest{ContainerId: "pause0", ExecId: "pause0", OCI: agenttest.Spec("/pause"), Storages: agenttest.ImageStorage("pause0", "pause")}
	if err := a.Agent(ctx, "CreateContainer", pauseReq, e); err != nil {
		t.Fatalf("CreateContainer pause: %v", err)
	}
	wantCode(t, a.Agent(ctx, "CreateContainer", pauseReq, e), codes.AlreadyExists, "second CreateContainer")
	if err := a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "pause0"}, e); err != nil {
		t.Fatalf("StartContainer pause: %v", err)
	}

	// CopyFile of a ConfigMap-like directory.
	base := "/run/kata-containers/shared/containers/app1-0123456789abcdef-config"
	copies := []*pb.CopyFileRequest{
		{Path: base, FileMode: unix.S_IFDIR | 0o755, DirMode: 0o755},
		{Path: base + "/..2026_11_26", FileMode: unix.S_IFDIR | 0o755, DirMode: 0o755},
		{Path: base + "/..2026_11_26/greeting", FileMode: unix.S_IFREG | 0o644, DirMode: 0o755, FileSize: 9, Data: []byte("from-cm\n\n")},
		{Path: base + "/..data", FileMode: unix.S_IFLNK | 0o777, Data: []byte("..2026_11_26")},
		{Path: base + "/greeting", FileMode: unix.S_IFLNK | 0o777, Data: []byte("..data/greeting")},
	}
	for _, c := range copies {
		if err := a.Agent(ctx, "CopyFile", c, e); err != nil {
			t.Fatalf("CopyFile %s: %v", c.Path, err)
		}
	}
	wantCode(t, a.Agent(ctx, "CopyFile", &pb.CopyFileRequest{Path: "/run/kata-containers/shared/containers/../../../etc/evil", FileMode: 0o644, FileSize: 1, Data: []byte("x")}, e), codes.InvalidArgument, "CopyFile traversal")

	// App container: echo hello; sleep 30.
	spec := agenttest.Spec("sh", "-c", "echo hello; cat /etc/config/greeting; sleep 30")
	spec.Mounts = append(spec.Mounts, &pb.Mount{Destination: "/etc/config", Source: base, Type: "bind", Options: []string{"rbind", "ro"}})
	if err := a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "app1", ExecId: "app1", OCI: spec, Storages: agenttest.ImageStorage("app1", ref)}, e); err != nil {
		t.Fatalf("CreateContainer app: %v", err)
	}
	if err := a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "app1"}, e); err != nil {
		t.Fatalf("StartContainer app: %v", err)
	}
	if out := readUntil(t, ctx, a, "app1", "", "from-cm"); !strings.HasPrefix(out, "hello\n") || !strings.Contains(out, "from-cm") {
		t.Fatalf("app stdout = %q", out)
	}

	// ExecProcess cat /etc/hostname.
	exec := &pb.ExecProcessRequest{ContainerId: "app1", ExecId: "exec-1", Process: &pb.Process{Args: []string{"cat", "/etc/hostname"}, Cwd: "/", Env: []string{"PATH=/bin"}, User: &pb.User{}}}
	if err := a.Agent(ctx, "ExecProcess", exec, e); err != nil {
		t.Fatalf("ExecProcess: %v", err)
	}
	wantCode(t, a.Agent(ctx, "ExecProcess", exec, e), codes.AlreadyExists, "second ExecProcess with the same id")
	if out := readUntil(t, ctx, a, "app1", "exec-1", "\x00never"); strings.TrimSpace(out) != hostname {
		t.Fatalf("exec stdout = %q, want %q", out, hostname)
	}
	var wr pb.WaitProcessResponse
	if err := a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "app1", ExecId: "exec-1"}, &wr); err != nil || wr.Status != 0 {
		t.Fatalf("WaitProcess exec: %v status %d", err, wr.Status)
	}

	// Stats.
	var st pb.StatsContainerResponse
	if err := a.Agent(ctx, "StatsContainer", &pb.StatsContainerRequest{ContainerId: "app1"}, &st); err != nil || st.CgroupStats.GetMemoryStats().GetUsage().GetUsage() == 0 {
		t.Fatalf("StatsContainer: %v %v", err, st.CgroupStats)
	}

	// UpdateContainer: a new memory limit reaches the cgroup.
	if err := a.Agent(ctx, "UpdateContainer", &pb.UpdateContainerRequest{ContainerId: "app1", Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: 64 << 20}}}, e); err != nil {
		t.Fatalf("UpdateContainer: %v", err)
	}
	if err := a.Agent(ctx, "StatsContainer", &pb.StatsContainerRequest{ContainerId: "app1"}, &st); err != nil || st.CgroupStats.GetMemoryStats().GetUsage().GetLimit() != 64<<20 {
		t.Fatalf("limit after UpdateContainer: %v %d", err, st.CgroupStats.GetMemoryStats().GetUsage().GetLimit())
	}

	// Bad ids.
	wantCode(t, a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "nope"}, e), codes.NotFound, "StartContainer unknown")
	wantCode(t, a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "app1", ExecId: "nope"}, &wr), codes.NotFound, "WaitProcess unknown exec")
	wantCode(t, a.Agent(ctx, "SignalProcess", &pb.SignalProcessRequest{ContainerId: "nope", Signal: 9}, e), codes.NotFound, "SignalProcess unknown")

	// Missing image: the error names the image and the registry's answer; nothing stays.
	missing := reg.Host + "/app/none:1"
	err := a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "bad1", OCI: agenttest.Spec("sh"), Storages: agenttest.ImageStorage("bad1", missing)}, e)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "NAME_UNKNOWN") {
		t.Fatalf("CreateContainer of a missing image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(a.StateDir, "containers", "bad1")); !os.IsNotExist(err) {
		t.Fatalf("failed create left its directory: %v", err)
	}
	wantCode(t, a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "bad1"}, e), codes.NotFound, "StartContainer after a failed create")

	// Unimplemented: a method we do not register, and one we register as unimplemented.
	wantCode(t, a.Agent(ctx, "PauseContainer", &pb.StartContainerRequest{ContainerId: "app1"}, e), codes.Unimplemented, "PauseContainer")
	wantCode(t, a.Agent(ctx, "ListRoutes", &pb.ListRoutesRequest{}, &pb.Routes{}), codes.Unimplemented, "ListRoutes")

	// SignalProcess(SIGKILL, all) + WaitProcess → 137; stdout then ends.
	appPid := pidOf(t, a, "app1")
	if err := a.Agent(ctx, "SignalProcess", &pb.SignalProcessRequest{ContainerId: "app1", Signal: 9}, e); err != nil {
		t.Fatalf("SignalProcess: %v", err)
	}
	if err := a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "app1"}, &wr); err != nil || wr.Status != 137 {
		t.Fatalf("WaitProcess app: %v status %d, want 137", err, wr.Status)
	}
	readUntil(t, ctx, a, "app1", "", "\x00never") // returns at EOF

	// OOM: 16 MiB limit, unbounded allocation.
	oomSpec := agenttest.Spec("tail", "/dev/zero")
	oomSpec.Linux.Resources = &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: 16 << 20}}
	if err := a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "oom1", OCI: oomSpec, Storages: agenttest.ImageStorage("oom1", ref)}, e); err != nil {
		t.Fatalf("CreateContainer oom: %v", err)
	}
	if err := a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "oom1"}, e); err != nil {
		t.Fatalf("StartContainer oom: %v", err)
	}
	var oe pb.OOMEvent
	if err := a.Agent(ctx, "GetOOMEvent", &pb.GetOOMEventRequest{}, &oe); err != nil || oe.ContainerId != "oom1" {
		t.Fatalf("GetOOMEvent: %v %q", err, oe.ContainerId)
	}
	if err := a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "oom1"}, &wr); err != nil || wr.Status != 137 {
		t.Fatalf("WaitProcess oom: %v status %d", err, wr.Status)
	}

	// Remove and destroy; then nothing of ours is left.
	pausePid := pidOf(t, a, "pause0")
	for _, id := range []string{"app1", "oom1"} {
		if err := a.Agent(ctx, "RemoveContainer", &pb.RemoveContainerRequest{ContainerId: id}, e); err != nil {
			t.Fatalf("RemoveContainer %s: %v", id, err)
		}
	}
	if err := a.Agent(ctx, "RemoveStaleVirtiofsShareMounts", &pb.RemoveStaleVirtiofsShareMountsRequest{}, e); err != nil {
		t.Fatal(err)
	}
	if err := a.Agent(ctx, "DestroySandbox", &pb.DestroySandboxRequest{}, e); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	for _, pid := range []int{appPid, pausePid} {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d still exists", pid)
		}
	}
	if m := mountsUnder(t, a.StateDir, a.KataRoot); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if d := a.Cgroups.Dirs(a.CgroupParent + "/e2e-sandbox"); len(d) > 0 {
		t.Errorf("cgroups left: %v", d)
	}
	if ents, _ := os.ReadDir(filepath.Join(a.StateDir, "containers")); len(ents) > 0 {
		t.Errorf("container directories left: %d", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(a.StateDir, "runc")); len(ents) > 0 {
		t.Errorf("runc state left: %d", len(ents))
	}
}
