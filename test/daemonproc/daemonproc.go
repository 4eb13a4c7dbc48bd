// Package daemonproc runs peerpodd as a separate process for failure tests
// and benchmarks: the test binary re-executes itself as a daemon that is the
// real peerpodd (shim/config from the environment, shim/daemon) over a test
// fixture provider (procprovider or farm), so it can be killed with SIGKILL,
// restarted and measured like the real thing. Test fixture; never use it
// outside tests.
package daemonproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/test/farm"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/procprovider"
)

// Environment of the daemon child (besides peerpodd's own keys).
const (
	// EnvChild marks the re-executed test binary as the daemon.
	EnvChild = "PEERPOD_TEST_DAEMON"
	// EnvProcStateDir and EnvProcAgent configure procprovider.
	EnvProcStateDir = "PEERPOD_TEST_PROC_STATE_DIR"
	EnvProcAgent    = "PEERPOD_TEST_PROC_AGENT"
	// EnvFarmURL and EnvFarmDelay configure the farm provider.
	EnvFarmURL   = "PEERPOD_TEST_FARM_URL"
	EnvFarmDelay = "PEERPOD_TEST_FARM_DELAY"
)

// IsChild reports whether this process is a daemon child; TestMain calls
// it first and, if so, exits with Main's status.
func IsChild() bool { return os.Getenv(EnvChild) != "" }

// Main is the daemon child's main: peerpodd's own start-up with the fixture
// provider CLOUD_PROVIDER names (procprovider or farm).
func Main() int {
	cfg, err := config.Load(os.Getenv, nil, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerpodd (test): %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var prov provider.Provider
	switch cfg.CloudProvider {
	case procprovider.Name:
		prov, err = procprovider.New(procprovider.Config{StateDir: os.Getenv(EnvProcStateDir), AgentPath: os.Getenv(EnvProcAgent)})
	case "farm":
		var d time.Duration
		d, err = time.ParseDuration(os.Getenv(EnvFarmDelay))
		prov = farm.NewProvider(os.Getenv(EnvFarmURL), d)
	default:
		err = fmt.Errorf("CLOUD_PROVIDER %q is not a test fixture provider", cfg.CloudProvider)
	}
	if err != nil {
		log.Error("provider setup failed", "err", err)
		return 2
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Provider: prov, Logger: log,
		Retry: retry.Policy{Attempts: 3, Base: 50 * time.Millisecond}})
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	if err := d.Run(ctx); err != nil {
		log.Error("peerpodd failed", "err", err)
		return 1
	}
	return 0
}

// Options configure a daemon child.
type Options struct {
	// Dir holds the endpoint, pods dir, state dir and log (keep it short:
	// unix socket paths are limited to 107 bytes).
	Dir string
	// Env are peerpodd and fixture variables; CLOUD_PROVIDER is required
	// unless Binary chooses its provider itself.
	Env map[string]string
	// Binary is the daemon executable; empty re-executes the test binary,
	// whose TestMain must call IsChild and Main.
	Binary string
}

// Daemon is a running daemon child.
type Daemon struct {
	opts      Options
	Endpoint  string
	ProbeAddr string
	LogPath   string
	cmd       *exec.Cmd
	done      chan struct{}
}

// Start starts a daemon child and waits until it serves the hypervisor API
// (its journal is restored and every agent socket listens again by then).
// Cleanup kills it.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	d, err := start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Kill() })
	return d
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(opts Options) (*Daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"ATTESTER": "fake", "NODE_NAME": "node-" + filepath.Base(opts.Dir), "CLUSTER_ID": "test",
		"REMOTE_HYPERVISOR_ENDPOINT": filepath.Join(opts.Dir, "hv.sock"), "PODS_DIR": filepath.Join(opts.Dir, "pods"),
		"STATE_DIR": filepath.Join(opts.Dir, "state"), "PROBE_PORT": strconv.Itoa(port), "PROXY_TIMEOUT": "60s",
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	d := &Daemon{opts: opts, Endpoint: env["REMOTE_HYPERVISOR_ENDPOINT"], ProbeAddr: "127.0.0.1:" + env["PROBE_PORT"],
		LogPath: filepath.Join(opts.Dir, "peerpodd.log"), done: make(chan struct{})}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), EnvChild+"=1")
	if opts.Binary != "" {
		cmd = exec.Command(opts.Binary)
		cmd.Env = os.Environ()
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start peerpodd: %w", err)
	}
	d.cmd = cmd
	go func() { cmd.Wait(); close(d.done) }()
	c, _ := kataclient.New(kataclient.Config{HypervisorSocket: d.Endpoint})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Version(ctx, "0")
		cancel()
		if err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("peerpodd exited at start-up: %s", d.Tail(20))
		default:
		}
		if time.Now().After(deadline) {
			d.Kill()
			return nil, fmt.Errorf("peerpodd did not serve %s within 60s: %v; log: %s", d.Endpoint, err, d.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restart starts a new child with the same options (after Kill).
func (d *Daemon) Restart(t testing.TB) *Daemon {
	t.Helper()
	return Start(t, d.opts)
}

// PID is the child's process id.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the child to be gone.
func (d *Daemon) Kill() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Tail returns the last n lines of the child's log.
func (d *Daemon) Tail(n int) string {
	b, _ := os.ReadFile(d.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Metric reads one unlabelled sample (e.g. go_goroutines) from /metrics.
func (d *Daemon) Metric(name string) (float64, error) {
	// No keep-alive: an idle connection would hold a goroutine in peerpodd.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + d.ProbeAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// RSS is the child's resident set size in bytes (/proc/PID/status VmRSS).
func (d *Daemon) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("VmRSS not found")
}
