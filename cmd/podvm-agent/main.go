// Command podvm-agent is the agent of a pod VM: it serves the Kata agent API
// through the attested tunnel and runs the pod's containers with runc.
// "podvm-agent pause" is the pod's pause process.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/peerpod/peerpod/agent/boot"
	"github.com/peerpod/peerpod/agent/daemon"
	"github.com/peerpod/peerpod/agent/pause"
	"github.com/peerpod/peerpod/agent/podnet"
	"github.com/peerpod/peerpod/agent/policy"
	"github.com/peerpod/peerpod/agent/runc"
	"github.com/peerpod/peerpod/agent/sandbox"
	"github.com/peerpod/peerpod/agent/service"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/provision"
	"google.golang.org/protobuf/proto"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "pause" {
		os.Exit(pause.Run(context.Background()))
	}
	if err := run(); err != nil {
		slog.Error("podvm-agent", "err", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("podvm-agent", flag.ExitOnError)
	listen := fs.String("listen", "", "tunnel listen address (default :<user data listen_port>, 15150)")
	udFile := fs.String("userdata-file", "", "read user data from this file instead of fw_cfg / cloud metadata")
	stateDir := fs.String("state-dir", "/run/peerpod/agent", "bundles, rootfs mounts, runc state and the image cache")
	pauseBundle := fs.String("pause-bundle", "/pause_bundle", "pause bundle directory (config.json + rootfs)")
	runcPath := fs.String("runc", "", "OCI runtime binary, runc or crun (default "+runc.DefaultPath+"; as the pod VM's init, "+runc.CrunPath+" when the image has it)")
	kataSock := fs.String("kata-agent-socket", "", "forward agent streams byte for byte to this upstream kata-agent unix socket")
	allowAll := fs.Bool("dev-allow-all-policy", false, "DEVELOPMENT ONLY: serve every agent request without a policy")
	kataRoot := fs.String("kata-root", sandbox.KataRoot, "local directory standing for the runtime's /run/kata-containers (tests)")
	cgroupParent := fs.String("cgroup-parent", "/peerpod", "cgroup the sandbox's cgroups live under")
	setHostname := fs.Bool("set-hostname", true, "set the VM's hostname from CreateSandbox")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	podNetNS := fs.String("pod-netns", "", "where the pod network namespace is pinned (default <state-dir>/podns)")
	_ = fs.Parse(os.Args[1:])

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// ready waits for what the pod's sandbox needs beyond the agent's first
	// answer: the kernel modules the boot loads in the background.
	ready := func(context.Context) error { return nil }
	if os.Getpid() == 1 {
		// PID 1 of the libvirt initramfs: mounts, modules, user data, network first.
		res, err := boot.Setup(ctx, boot.Config{Logger: log})
		if err != nil {
			return err
		}
		ready = res.WaitModules
		if *udFile == "" {
			*udFile = res.UserDataFile
		}
		if *runcPath == "" {
			if _, err := os.Stat(runc.CrunPath); err == nil {
				*runcPath = runc.CrunPath
			}
		}
	}
	if *runcPath == "" {
		*runcPath = runc.DefaultPath
	}
	log.Info("OCI runtime", "path", *runcPath)

	cfg, src, err := daemon.LoadUserData(ctx, daemon.Sources{File: *udFile})
	if err != nil {
		return err
	}
	log.Info("user data loaded", "source", src, "sandbox", cfg.SandboxID, "attester", cfg.Attester, "warm", cfg.Warm)
	// Listen before the slower set-up below: a connection peerpodd makes
	// meanwhile waits in the backlog instead of being refused and retried
	// after a pause.
	if cfg.Warm {
		// Booted ahead of any pod: run what the sandbox will need once,
		// before the port answers and the node counts this VM as booted.
		warmUp(ctx, log)
	}
	addr := *listen
	if addr == "" {
		addr = ":" + strconv.Itoa(cfg.Port())
	}
	var ln net.Listener
	if ln, err = net.Listen("tcp", addr); err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if cfg.Warm {
		log.Info("warm VM: waiting for a sandbox")
		if cfg, ln, err = provision.Accept(ctx, ln, cfg, log); err != nil {
			return err
		}
	}
	tlsCfg, in, err := daemon.ServerTLS(ctx, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	opts := daemon.Options{Listener: ln, TLS: tlsCfg, KataAgentSocket: *kataSock, Logger: log}
	if *podNetNS == "" {
		*podNetNS = filepath.Join(*stateDir, "podns")
	}
	if err := os.MkdirAll(filepath.Dir(*podNetNS), 0o755); err != nil {
		return fmt.Errorf("pod netns directory: %w", err)
	}
	pn, err := podnet.New(podnet.Options{NetNSPath: *podNetNS, Logger: log})
	if err != nil {
		return err
	}
	defer pn.Close()
	opts.Handlers = map[tunnel.Kind]tunnel.Handler{tunnel.KindNet: func(ctx context.Context, c net.Conn, h tunnel.Header) {
		if err := ready(ctx); err != nil {
			log.Error("pod network stream refused", "err", err)
			c.Close()
			return
		}
		pn.Handle(ctx, c, h)
	}}
	if *kataSock != "" {
		log.Info("forwarding agent streams to an upstream kata-agent", "socket", *kataSock)
		return daemon.Run(ctx, opts)
	}

	policyText := ""
	if in != nil {
		policyText = in.Policy()
	}
	if *allowAll {
		log.Warn("!!! --dev-allow-all-policy: EVERY agent request is served whatever the policy says; never use this in production !!!")
	}
	// The initdata policy compiles (a few hundred milliseconds under TCG)
	// while the agent already answers health checks; every agent request
	// waits for it, so nothing is served without the policy.
	auth := newReadyAuthorizer(ready, func() (*policy.Engine, error) {
		return policy.New(ctx, policyText, policy.Options{AllowAll: *allowAll, Logger: log})
	})
	sb, err := sandbox.New(sandbox.Config{
		StateDir: *stateDir, KataRoot: *kataRoot, PauseBundle: *pauseBundle, Runc: *runcPath,
		CgroupParent: *cgroupParent, SetHostname: *setHostname, NetNS: pn.NetNS, ReapOrphans: true, Logger: log,
	})
	if err != nil {
		return err
	}
	svc := service.New(sb, auth, log)
	srv, err := svc.NewServer()
	if err != nil {
		return err
	}
	opts.Agent = srv
	opts.OnSecrets = func(_ context.Context, s *userdata.Secrets) error {
		if len(s.AuthJSON) == 0 || string(s.AuthJSON) == "null" {
			return nil
		}
		var raw json.RawMessage = s.AuthJSON
		if err := sb.Images().SetAuthJSON(raw); err != nil {
			return err
		}
		log.Info("registry credentials received")
		return nil
	}
	return daemon.Run(ctx, opts)
}

// readyAuthorizer holds every agent request until the VM is fully set up
// (kernel modules loaded) and the policy engine is built, then asks the
// engine. Health checks are another service and pass at once, so the VM
// reports ready while the last modules load and the policy compiles. A
// policy that does not compile fails every request with its error.
type readyAuthorizer struct {
	ready  func(context.Context) error
	built  chan struct{}
	engine *policy.Engine
	err    error
}

func newReadyAuthorizer(ready func(context.Context) error, build func() (*policy.Engine, error)) *readyAuthorizer {
	a := &readyAuthorizer{ready: ready, built: make(chan struct{})}
	go func() {
		defer close(a.built)
		a.engine, a.err = build()
		if a.err != nil {
			slog.Error("initdata policy", "err", a.err)
		}
	}()
	return a
}

// policy waits for the VM's set-up and the engine.
func (a *readyAuthorizer) policy(ctx context.Context) (*policy.Engine, error) {
	if err := a.ready(ctx); err != nil {
		return nil, fmt.Errorf("pod VM not set up: %w", err)
	}
	select {
	case <-a.built:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the initdata policy: %w", ctx.Err())
	}
	if a.err != nil {
		return nil, fmt.Errorf("initdata policy: %w", a.err)
	}
	return a.engine, nil
}

// Authorize waits for the VM's set-up and the policy engine, then applies the policy.
func (a *readyAuthorizer) Authorize(ctx context.Context, method string, req proto.Message) error {
	e, err := a.policy(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return e.Authorize(ctx, method, req)
}

// SetPolicy hands a SetPolicy request's policy to the engine.
func (a *readyAuthorizer) SetPolicy(ctx context.Context, rego string) error {
	e, err := a.policy(ctx)
	if err != nil {
		return err
	}
	return e.SetPolicy(ctx, rego)
}
