package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/agent/internal/agenttest"
	"github.com/peerpod/peerpod/agent/internal/testimage"
	pb "github.com/peerpod/peerpod/api/agent"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestStdinTTYAndSharedPidns covers stdin, a TTY exec with a window resize,
// stderr, and app containers sharing the pause container's pid namespace.
func TestStdinTTYAndSharedPidns(t *testing.T) {
	agenttest.NeedRoot(t)
	reg := testimage.Serve(t, "", "")
	ref := reg.Push(t, "app/busybox:1", testimage.Image(t, []string{"sh"}, testimage.BusyboxLayer(t)))
	a := agenttest.Start(t, agenttest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &emptypb.Empty{}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("CreateSandbox", a.Agent(ctx, "CreateSandbox", &pb.CreateSandboxRequest{Hostname: "h", SandboxPidns: true, Storages: []*pb.Storage{agenttest.ShmStorage()}, SandboxId: "stdio"}, e))
	must("CreateContainer pause", a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "pause", OCI: agenttest.Spec("/pause"), Storages: agenttest.ImageStorage("pause", "pause")}, e))
	must("StartContainer pause", a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "pause"}, e))

	// cat echoes stdin to stdout, then reports on stderr once stdin ends.
	must("CreateContainer", a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "c1", OCI: agenttest.Spec("sh", "-c", "cat; echo done >&2; sleep 30"), Storages: agenttest.ImageStorage("c1", ref)}, e))
	must("StartContainer", a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "c1"}, e))
	var wr pb.WriteStreamResponse
	must("WriteStdin", a.Agent(ctx, "WriteStdin", &pb.WriteStreamRequest{ContainerId: "c1", Data: []byte("ping\n")}, &wr))
	if wr.Len != 5 {
		t.Fatalf("WriteStdin wrote %d", wr.Len)
	}
	if out := readUntil(t, ctx, a, "c1", "", "ping"); out != "ping\n" {
		t.Fatalf("stdout = %q", out)
	}
	must("CloseStdin", a.Agent(ctx, "CloseStdin", &pb.CloseStdinRequest{ContainerId: "c1"}, e))
	var rs pb.ReadStreamResponse
	must("ReadStderr", a.Agent(ctx, "ReadStderr", &pb.ReadStreamRequest{ContainerId: "c1", Len: 100}, &rs))
	if string(rs.Data) != "done\n" {
		t.Fatalf("stderr = %q", rs.Data)
	}

	// Shared pid namespace: the pause process is visible as pid 1.
	must("ExecProcess ps", a.Agent(ctx, "ExecProcess", &pb.ExecProcessRequest{ContainerId: "c1", ExecId: "ps", Process: &pb.Process{Args: []string{"cat", "/proc/1/cmdline"}, Cwd: "/", User: &pb.User{}}}, e))
	if out := readUntil(t, ctx, a, "c1", "ps", "\x00never"); !strings.Contains(out, "sleep") || !strings.Contains(out, "2147483647") {
		t.Fatalf("pid 1 of the shared namespace runs %q, want the pause process", out)
	}

	// TTY exec: the window size set by TtyWinResize is what stty sees.
	tty := &pb.Process{Terminal: true, Args: []string{"sh", "-c", "read x; echo got-$x; stty size"}, Cwd: "/", Env: []string{"PATH=/bin"}, User: &pb.User{}}
	must("ExecProcess tty", a.Agent(ctx, "ExecProcess", &pb.ExecProcessRequest{ContainerId: "c1", ExecId: "tty", Process: tty}, e))
	must("TtyWinResize", a.Agent(ctx, "TtyWinResize", &pb.TtyWinResizeRequest{ContainerId: "c1", ExecId: "tty", Row: 33, Column: 99}, e))
	must("WriteStdin tty", a.Agent(ctx, "WriteStdin", &pb.WriteStreamRequest{ContainerId: "c1", ExecId: "tty", Data: []byte("abc\n")}, &wr))
	if out := readUntil(t, ctx, a, "c1", "tty", "33 99"); !strings.Contains(out, "got-abc") || !strings.Contains(out, "33 99") {
		t.Fatalf("tty output = %q", out)
	}
	var wp pb.WaitProcessResponse
	must("WaitProcess tty", a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "c1", ExecId: "tty"}, &wp))

	// Termination log through a copied file.
	must("CopyFile", a.Agent(ctx, "CopyFile", &pb.CopyFileRequest{Path: "/run/kata-containers/shared/containers/c2-00-termination-log", FileMode: 0o666, FileSize: 0}, e))
	spec := agenttest.Spec("sh", "-c", "echo bye > /dev/termination-log")
	spec.Mounts = append(spec.Mounts, &pb.Mount{Destination: "/dev/termination-log", Source: "/run/kata-containers/shared/containers/c2-00-termination-log", Type: "bind", Options: []string{"rbind"}})
	must("CreateContainer c2", a.Agent(ctx, "CreateContainer", &pb.CreateContainerRequest{ContainerId: "c2", OCI: spec, Storages: agenttest.ImageStorage("c2", ref)}, e))
	must("StartContainer c2", a.Agent(ctx, "StartContainer", &pb.StartContainerRequest{ContainerId: "c2"}, e))
	must("WaitProcess c2", a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "c2"}, &wp))
	var dd pb.GetDiagnosticDataResponse
	must("GetDiagnosticData", a.Agent(ctx, "GetDiagnosticData", &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: "c2"}, &dd))
	if dd.Data != "bye\n" {
		t.Fatalf("termination log = %q", dd.Data)
	}
	// The Kata runtime names the init process by the container id.
	must("SignalProcess init by id", a.Agent(ctx, "SignalProcess", &pb.SignalProcessRequest{ContainerId: "c1", ExecId: "c1", Signal: 15}, e))
	must("WaitProcess init by id", a.Agent(ctx, "WaitProcess", &pb.WaitProcessRequest{ContainerId: "c1", ExecId: "c1"}, &wp))
	if wp.Status != 143 {
		t.Fatalf("init after SIGTERM: status %d, want 143", wp.Status)
	}
	must("DestroySandbox", a.Agent(ctx, "DestroySandbox", &pb.DestroySandboxRequest{}, e))
}
