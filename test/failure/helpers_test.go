package failure

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/test/daemonproc"
	"github.com/peerpod/peerpod/test/procprovider"
)

func TestMain(m *testing.M) {
	if os.Getenv(envSilent) != "" {
		os.Exit(silentAgent(os.Getenv(envSilent)))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// envSilent makes the test binary a "pod agent" that accepts TCP on the
// given address and never says a word.
const envSilent = "PEERPOD_TEST_SILENT_AGENT"

func silentAgent(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go io.Copy(io.Discard, c) // read whatever comes; never answer, never close
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veth pairs)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

// shortDir is a temporary directory with a short path (unix socket paths
// are limited to 107 bytes).
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ppf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

// binaries builds podvm-agent and peerpodd-procvm (peerpodd over the
// process provider) once per test binary.
func binaries(t *testing.T) (agent, peerpodd string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "ppf-bin-")
		if binErr != nil {
			return
		}
		for _, pkg := range []string{"./cmd/podvm-agent", "./test/procprovider/cmd/peerpodd-procvm"} {
			if binErr = goBuild(binDir, pkg); binErr != nil {
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "podvm-agent"), filepath.Join(binDir, "peerpodd-procvm")
}

func goBuild(dir, pkg string) error {
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// inProcess runs the real daemon in this process over prov.
type inProcess struct {
	d   *daemon.Daemon
	cfg *config.Config
	log string
}

func runDaemon(t *testing.T, base string, opts daemon.Options, env map[string]string) *inProcess {
	t.Helper()
	vars := map[string]string{
		"CLOUD_PROVIDER": "fixture", "ATTESTER": "fake", "NODE_NAME": "node-" + filepath.Base(base), "CLUSTER_ID": "failure",
		"REMOTE_HYPERVISOR_ENDPOINT": filepath.Join(base, "hv.sock"), "PODS_DIR": filepath.Join(base, "pods"),
		"STATE_DIR": filepath.Join(base, "state"), "PROXY_TIMEOUT": "60s",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(base, "peerpodd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	opts.Config = cfg
	opts.ProbeAddr = "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Retry.Attempts == 0 {
		opts.Retry = retry.Policy{Attempts: 2, Base: 20 * time.Millisecond}
	}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; logf.Close() })
	select {
	case <-d.Started():
	case err := <-done:
		t.Fatalf("peerpodd: %v", err)
	}
	return &inProcess{d: d, cfg: cfg, log: logPath}
}

// status reads a daemon child's /status.
func daemonStatus(addr string) (*daemon.Status, error) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + addr + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var st daemon.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("status %s: %w", b, err)
	}
	return &st, nil
}

// settled waits until no sandbox is provisioning or stopping (restore's
// background work is done) and returns the status.
func settled(t *testing.T, d *daemonproc.Daemon) *daemon.Status {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := daemonStatus(d.ProbeAddr)
		if err != nil {
			t.Fatal(err)
		}
		busy := 0
		for _, s := range st.Sandboxes {
			if s.State == journal.Provisioning || s.State == journal.Stopping {
				busy++
			}
		}
		if busy == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sandboxes still provisioning or stopping after restart:\n%s", busy, d.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leftovers lists the VMs prov still holds (by their records, which
// procprovider writes before making a namespace, veth or process), and
// address slots whose VM has no record: a create interrupted between
// reserving the address and recording the VM, which holds nothing else.
func leftovers(t *testing.T, stateDir string, prov *procprovider.Provider) (vms []procprovider.VM, orphanSlots []string) {
	t.Helper()
	vms, err := prov.VMs()
	if err != nil {
		t.Fatal(err)
	}
	slots, _ := filepath.Glob(filepath.Join(stateDir, "slot-*"))
	owned := map[string]bool{}
	for _, vm := range vms {
		owned[fmt.Sprintf("slot-%d", vm.Slot)] = true
	}
	for _, s := range slots {
		if !owned[filepath.Base(s)] {
			b, _ := os.ReadFile(s)
			orphanSlots = append(orphanSlots, filepath.Base(s)+" ("+string(b)+")")
		}
	}
	return vms, orphanSlots
}
