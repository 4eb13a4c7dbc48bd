package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/libvirt"
)

// Options configure Setup.
type Options struct {
	// InitPkg is the pod VM's /init (default ./cmd/podvm-agent).
	InitPkg string
	// MemoryMiB is LIBVIRT_MEMORY (default 512).
	MemoryMiB int
	// PeerpoddLog receives peerpodd's output (default: a file in the work dir).
	PeerpoddLog io.Writer
	// Step, when set, is told each set-up step and how long it took.
	Step func(name string, took time.Duration)
	// Env adds KEY=value settings to peerpodd's environment (TUNNEL_TYPE,
	// say); they override the harness's own.
	Env []string
}

// Env is one prepared host: bridge, registry, image and peerpodd.
type Env struct {
	Root     string
	Dir      string // work directory, removed by Close
	Bridge   *Bridge
	Registry *Registry
	// BusyboxRef is the busybox image in Registry.
	BusyboxRef string
	Image      Image
	// Socket is peerpodd's hypervisor socket.
	Socket string
	// Node and Cluster are peerpodd's NODE_NAME and CLUSTER_ID.
	Node, Cluster string
	// DataDir is LIBVIRT_DATA_DIR.
	DataDir string

	opts     Options
	peerpodd string
	logFile  *os.File
	proc     *exec.Cmd
	exited   chan struct{}
	env      []string
}

// Setup prepares everything and starts peerpodd. On error it undoes what it did.
func Setup(ctx context.Context, opts Options) (_ *Env, err error) {
	if opts.InitPkg == "" {
		opts.InitPkg = "./cmd/podvm-agent"
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 512
	}
	step := func(name string, start time.Time) {
		if opts.Step != nil {
			opts.Step(name, time.Since(start))
		}
	}
	e := &Env{opts: opts, Cluster: "e2e"}
	defer func() {
		if err != nil {
			_ = e.Close(context.WithoutCancel(ctx))
		}
	}()
	if e.Root, err = RepoRoot(); err != nil {
		return nil, err
	}
	if e.Dir, err = os.MkdirTemp("", "ppe2e-"); err != nil {
		return nil, err
	}
	start := time.Now()
	if err = StartLibvirtd(ctx, e.Root); err != nil {
		return nil, err
	}
	step("libvirtd running", start)
	start = time.Now()
	if e.Image, err = BuildImage(ctx, e.Root, opts.InitPkg); err != nil {
		return nil, err
	}
	if e.peerpodd, err = GoBuild(ctx, e.Root, "./cmd/peerpodd", e.Dir); err != nil {
		return nil, err
	}
	step("pod VM image and peerpodd built", start)
	start = time.Now()
	if e.Bridge, err = NewBridge(); err != nil {
		return nil, err
	}
	if e.Registry, err = StartRegistry(e.Bridge.Gateway.String()); err != nil {
		return nil, err
	}
	if e.BusyboxRef, err = e.Registry.PushBusybox(ctx, "e2e"); err != nil {
		return nil, err
	}
	step("bridge "+e.Bridge.Name+" and registry "+e.Registry.Addr+" ready", start)
	e.Node = "e2e-" + filepath.Base(e.Dir)
	e.Socket = filepath.Join(e.Dir, "hv.sock")
	e.DataDir = filepath.Join(e.Dir, "vms")
	probe, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	e.env = append(os.Environ(),
		"CLOUD_PROVIDER=libvirt",
		"REMOTE_HYPERVISOR_ENDPOINT="+e.Socket,
		"PODS_DIR="+filepath.Join(e.Dir, "pods"),
		"STATE_DIR="+filepath.Join(e.Dir, "state"),
		"PROBE_PORT="+strconv.Itoa(probe),
		"ATTESTER=fake",
		"NODE_NAME="+e.Node,
		"CLUSTER_ID="+e.Cluster,
		"LIBVIRT_NET="+e.Bridge.Name,
		"LIBVIRT_KERNEL="+e.Image.Kernel,
		"LIBVIRT_INITRD="+e.Image.Initrd,
		"LIBVIRT_DATA_DIR="+e.DataDir,
		"LIBVIRT_MEMORY="+strconv.Itoa(opts.MemoryMiB),
	)
	e.env = append(e.env, opts.Env...)
	if opts.PeerpoddLog == nil {
		if e.logFile, err = os.Create(filepath.Join(e.Dir, "peerpodd.log")); err != nil {
			return nil, err
		}
	}
	start = time.Now()
	if err = e.StartPeerpodd(ctx); err != nil {
		return nil, err
	}
	step("peerpodd serving "+e.Socket, start)
	return e, nil
}

// LogPath is where peerpodd's output goes when Options.PeerpoddLog is unset.
func (e *Env) LogPath() string { return filepath.Join(e.Dir, "peerpodd.log") }

// StartPeerpodd starts peerpodd and waits for its hypervisor socket.
func (e *Env) StartPeerpodd(ctx context.Context) error {
	cmd := exec.Command(e.peerpodd)
	cmd.Env = e.env
	var out io.Writer = e.logFile
	if e.opts.PeerpoddLog != nil {
		out = e.opts.PeerpoddLog
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start peerpodd: %w", err)
	}
	e.proc = cmd
	e.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, e.exited)
	for {
		c, err := net.Dial("unix", e.Socket)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-e.exited:
			return fmt.Errorf("peerpodd exited at start (%s); see %s", cmd.ProcessState, e.LogPath())
		case <-ctx.Done():
			return fmt.Errorf("peerpodd socket %s: %w", e.Socket, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// KillPeerpodd kills peerpodd at once (SIGKILL), as a crash would.
func (e *Env) KillPeerpodd() error {
	if e.proc == nil {
		return errors.New("peerpodd is not running")
	}
	_ = e.proc.Process.Signal(syscall.SIGKILL)
	<-e.exited
	e.proc = nil
	return nil
}

// StopPeerpodd stops peerpodd with SIGTERM (VMs keep running).
func (e *Env) StopPeerpodd() {
	if e.proc == nil {
		return
	}
	_ = e.proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(15 * time.Second):
		_ = e.proc.Process.Signal(syscall.SIGKILL)
		<-e.exited
	}
	e.proc = nil
}

// Provider opens the libvirt provider peerpodd uses, for checks and clean-up.
func (e *Env) Provider(ctx context.Context) (*libvirt.Provider, error) {
	cfg, err := libvirt.LoadConfig(func(k string) string {
		switch k {
		case "LIBVIRT_NET":
			return e.Bridge.Name
		case "LIBVIRT_KERNEL":
			return e.Image.Kernel
		case "LIBVIRT_INITRD":
			return e.Image.Initrd
		case "LIBVIRT_DATA_DIR":
			return e.DataDir
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	return libvirt.New(ctx, cfg)
}

// Leftovers lists what a finished run must not leave: this node's domains,
// files in the data directory and taps on the bridge.
func (e *Env) Leftovers(ctx context.Context) ([]string, error) {
	var left []string
	p, err := e.Provider(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	insts, err := p.List(ctx, provider.NodeSelector(e.Cluster, e.Node))
	if err != nil {
		return nil, err
	}
	for _, in := range insts {
		left = append(left, fmt.Sprintf("domain %s (%v)", in.Name, in.IPs))
	}
	ents, _ := os.ReadDir(e.DataDir)
	for _, ent := range ents {
		left = append(left, "file "+filepath.Join(e.DataDir, ent.Name()))
	}
	ports, err := e.Bridge.Ports()
	if err != nil {
		return nil, err
	}
	for _, port := range ports {
		left = append(left, "tap "+port)
	}
	return left, nil
}

// Close stops peerpodd, deletes any VM of this node still there, and removes
// the registry, bridge and work directory.
func (e *Env) Close(ctx context.Context) error {
	var errs []error
	e.StopPeerpodd()
	if e.Bridge != nil && e.Image.Kernel != "" {
		if p, err := e.Provider(ctx); err == nil {
			insts, _ := p.List(ctx, provider.NodeSelector(e.Cluster, e.Node))
			for _, in := range insts {
				if err := p.Delete(ctx, in.ID); err != nil {
					errs = append(errs, err)
				}
			}
			p.Close()
		}
	}
	if e.Registry != nil {
		_ = e.Registry.Close()
	}
	if e.Bridge != nil {
		if err := e.Bridge.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.logFile != nil {
		e.logFile.Close()
	}
	if e.Dir != "" && os.Getenv("PEERPOD_KEEP") == "" {
		os.RemoveAll(e.Dir)
	}
	return errors.Join(errs...)
}

// WarmVMs lists this node's warm VMs (tagged provider.TagWarm), taken by a
// pod or not.
func (e *Env) WarmVMs(ctx context.Context) ([]provider.Instance, error) {
	p, err := e.Provider(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.List(ctx, e.warmSelector())
}

func (e *Env) warmSelector() map[string]string {
	sel := provider.NodeSelector(e.Cluster, e.Node)
	sel[provider.TagWarm] = "true"
	return sel
}

// WaitWarmReady waits until n warm VMs of this node accept connections on
// the agent port, and returns them.
func (e *Env) WaitWarmReady(ctx context.Context, n int) ([]provider.Instance, error) {
	p, err := e.Provider(ctx)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	for {
		vms, err := p.List(ctx, e.warmSelector())
		if err != nil {
			return nil, err
		}
		ready := 0
		for _, vm := range vms {
			if len(vm.IPs) == 0 {
				continue
			}
			d := net.Dialer{Timeout: 250 * time.Millisecond}
			if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(vm.IPs[0].String(), "15150")); err == nil {
				c.Close()
				ready++
			}
		}
		if ready >= n {
			return vms, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d ready warm VMs (have %d of %d): %w", n, ready, len(vms), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
