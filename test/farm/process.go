package farm

import (
	"context"
	"fmt"
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
)

// EnvChild makes a re-executed test binary run a farm in the directory it
// names (see StartProcess).
const EnvChild = "PEERPOD_TEST_FARM_DIR"

// IsChild reports whether this process is a farm child; TestMain calls it
// first and, if so, exits with ChildMain's status.
func IsChild() bool { return os.Getenv(EnvChild) != "" }

// ChildMain runs a farm until SIGTERM, writing "URL PORT" to DIR/farm.addr.
func ChildMain() int {
	dir := os.Getenv(EnvChild)
	f, err := New(dir, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	tmp := filepath.Join(dir, "farm.addr.tmp")
	if err := os.WriteFile(tmp, []byte(f.URL+" "+strconv.Itoa(f.Port)), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Rename(tmp, filepath.Join(dir, "farm.addr")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return 0
}

// Remote is a farm running in a child process, so its pod agents are in a
// process of their own as they would be in a VM.
type Remote struct {
	URL  string
	Port int
	dir  string
	prov *Provider
}

// StartProcess re-executes the test binary as a farm in dir and waits for
// it; Cleanup stops it and its VMs.
func StartProcess(t testing.TB, dir string) *Remote {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), EnvChild+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "farm.addr"))
		if err == nil {
			url, port, _ := strings.Cut(string(b), " ")
			n, err := strconv.Atoi(port)
			if err != nil {
				t.Fatalf("farm address %q: %v", b, err)
			}
			return &Remote{URL: url, Port: n, dir: dir, prov: NewProvider(url, 0)}
		}
		if time.Now().After(deadline) {
			t.Fatal("farm did not start within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// VMs lists the farm's VMs.
func (r *Remote) VMs(ctx context.Context) ([]provider.Instance, error) {
	return r.prov.List(ctx, nil)
}

// DirectSocket is where VM id's agent serves ttrpc without peerpodd or the tunnel.
func (r *Remote) DirectSocket(id string) string { return filepath.Join(r.dir, id+".sock") }
