// Command demo runs one pod in a local pod VM from start to finish: it
// prepares the host (libvirtd, a bridge, a registry, the pod VM image,
// peerpodd with the libvirt provider), creates a pod VM, runs a container
// that prints a greeting, execs into it, and tears everything down, also on
// Ctrl-C. Each step prints one line with its duration. `make demo` runs it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/libvirt"
	"github.com/peerpod/peerpod/test/e2e/harness"
	"github.com/peerpod/peerpod/test/kataclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func line(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root (it starts libvirtd, makes a bridge and VMs)")
	}
	// Only problems from the libraries; the steps below say what happens.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	total := time.Now()
	virt := libvirt.DetectVirtType()
	mode := "KVM"
	if virt == libvirt.VirtTCG {
		mode = "TCG: no hardware virtualization on this host, so QEMU emulates the CPU; expect seconds, not milliseconds"
	}
	line("peerpod demo: one pod, one VM (virt=%s; %s)", virt, mode)
	env, err := harness.Setup(ctx, harness.Options{Step: func(name string, took time.Duration) {
		line("%-60s %8s", name, took.Round(time.Millisecond))
	}})
	if err != nil {
		return err
	}
	defer func() {
		start := time.Now()
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := env.Close(cctx); err != nil {
			fmt.Fprintf(os.Stderr, "demo: teardown: %v\n", err)
		}
		line("%-60s %8s", "torn down (peerpodd, VMs, bridge, registry)", time.Since(start).Round(time.Millisecond))
		line("total %s", time.Since(total).Round(time.Millisecond))
	}()
	c, err := kataclient.New(kataclient.Config{HypervisorSocket: env.Socket, VMStartTimeout: 5 * time.Minute})
	if err != nil {
		return err
	}
	pod := kataclient.Pod{Name: "demo", Namespace: "default", VCPUs: 1, MemoryMiB: 512, Initdata: harness.TestInitdata()}
	start := time.Now()
	sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), pod, "")
	if err != nil {
		return err
	}
	line("%-60s %8s", "sandbox recorded by peerpodd (CreateVM)", time.Since(start).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = sb.Stop(cctx)
		}
	}()

	// StartVM makes the VM and returns once its agent answers through the tunnel;
	// the VM's appearance in libvirt is watched to split the two.
	start = time.Now()
	created := make(chan time.Duration, 1)
	wctx, wcancel := context.WithCancel(ctx)
	go watchVM(wctx, env, start, created)
	// StartVM is detached from ctx (as in the runtime); Ctrl-C must not wait for it.
	startErr := make(chan error, 1)
	go func() { startErr <- sb.StartVM(ctx) }()
	select {
	case err = <-startErr:
	case <-ctx.Done():
		err = ctx.Err()
	}
	wcancel()
	if err != nil {
		return fmt.Errorf("StartVM: %w", err)
	}
	ready := time.Since(start)
	select {
	case d := <-created:
		line("%-60s %8s", "VM created and running ("+virt+")", d.Round(time.Millisecond))
	default:
	}
	line("%-60s %8s", "agent ready over the attested tunnel (fake attester: no TEE here)", ready.Round(time.Millisecond))

	start = time.Now()
	if err := sb.Check(ctx); err != nil {
		return err
	}
	if err := sb.CreateSandbox(ctx); err != nil {
		return err
	}
	if _, err := sb.GuestDetails(ctx); err != nil {
		return err
	}
	if err := sb.CreateContainer(ctx, sb.PauseContainer()); err != nil {
		return err
	}
	if err := sb.StartContainer(ctx, sb.ID); err != nil {
		return err
	}
	line("%-60s %8s", "sandbox and pause container started", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	greeting := "Hello from a confidential pod VM!"
	ct := kataclient.Container{ID: "hello", Image: env.BusyboxRef,
		Args: []string{"/bin/sh", "-c", "echo '" + greeting + "'; exec sleep 600"}}
	if err := sb.CreateContainer(ctx, ct); err != nil {
		return err
	}
	if err := sb.StartContainer(ctx, ct.ID); err != nil {
		return err
	}
	line("%-60s %8s", "container started (image pulled inside the VM)", time.Since(start).Round(time.Millisecond))
	out, err := readLine(ctx, sb, ct.ID)
	if err != nil {
		return err
	}
	line("container says: %s", out)

	start = time.Now()
	eid := "exec-1"
	if err := sb.ExecProcess(ctx, ct.ID, eid, []string{"/bin/uname", "-srm"}, false); err != nil {
		return err
	}
	eout, err := sb.ReadAll(ctx, ct.ID, eid, false)
	if err != nil {
		return err
	}
	if _, err := sb.WaitProcess(ctx, ct.ID, eid); err != nil {
		return err
	}
	line("%-60s %8s", "exec uname -srm in the container: "+strings.TrimSpace(string(eout)), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := sb.Stop(ctx); err != nil {
		return err
	}
	stopped = true
	line("%-60s %8s", "pod deleted (DestroySandbox, StopVM)", time.Since(start).Round(time.Millisecond))
	left, err := env.Leftovers(ctx)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %s", strings.Join(left, "; "))
	}
	line("nothing left behind: no domain, user data file, tap or address lease")
	return nil
}

// readLine reads the container's stdout until the first newline.
func readLine(ctx context.Context, sb *kataclient.Sandbox, cid string) (string, error) {
	var got []byte
	for !strings.Contains(string(got), "\n") {
		var b []byte
		err := readOnce(ctx, sb, cid, &b)
		if err != nil {
			return "", err
		}
		if len(b) == 0 {
			break
		}
		got = append(got, b...)
	}
	return strings.TrimSpace(string(got)), nil
}

// readOnce sends one ReadStdout on a fresh agent connection, as the runtime does.
func readOnce(ctx context.Context, sb *kataclient.Sandbox, cid string, out *[]byte) error {
	conn, err := net.Dial("unix", sb.AgentSocket)
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	tc := ttrpc.NewClient(conn)
	defer tc.Close()
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := agent.NewAgentServiceClient(tc).ReadStdout(rctx, &agent.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 4096})
	if err != nil {
		return fmt.Errorf("ReadStdout %s: %w", cid, err)
	}
	*out = resp.Data
	return nil
}

// watchVM reports when the libvirt domain of this node is first listed.
func watchVM(ctx context.Context, env *harness.Env, start time.Time, created chan<- time.Duration) {
	p, err := env.Provider(ctx)
	if err != nil {
		return
	}
	defer p.Close()
	for ctx.Err() == nil {
		if insts, err := p.List(ctx, provider.NodeSelector(env.Cluster, env.Node)); err == nil && len(insts) > 0 {
			created <- time.Since(start)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
