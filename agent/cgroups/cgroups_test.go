package cgroups

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatsFromFiles(t *testing.T) {
	tests := []struct {
		name  string
		v2    bool
		files map[string]string
		cpu   uint64
		mem   uint64
		limit uint64
		pids  uint64
	}{
		{"v2", true, map[string]string{
			"pod/c/cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
			"pod/c/memory.current": "4096\n",
			"pod/c/memory.max":     "16777216\n",
			"pod/c/memory.stat":    "anon 100\nfile 200\n",
			"pod/c/pids.current":   "3\n",
			"pod/c/pids.max":       "max\n",
		}, 1_500_000, 4096, 16 << 20, 3},
		{"v1", false, map[string]string{
			"cpuacct/pod/c/cpuacct.usage":        "2000\n",
			"memory/pod/c/memory.usage_in_bytes": "8192\n",
			"memory/pod/c/memory.limit_in_bytes": "1048576\n",
			"memory/pod/c/memory.stat":           "cache 5\nrss 7\n",
			"pids/pod/c/pids.current":            "2\n",
		}, 2000, 8192, 1 << 20, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tt.files)
			m := &Manager{Root: root, V2: tt.v2}
			st, err := m.Stats("/pod/c")
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CpuStats.CpuUsage.TotalUsage; got != tt.cpu {
				t.Errorf("cpu = %d, want %d", got, tt.cpu)
			}
			if got := st.MemoryStats.Usage.Usage; got != tt.mem {
				t.Errorf("mem = %d, want %d", got, tt.mem)
			}
			if got := st.MemoryStats.Usage.Limit; got != tt.limit {
				t.Errorf("limit = %d, want %d", got, tt.limit)
			}
			if got := st.PidsStats.Current; got != tt.pids {
				t.Errorf("pids = %d, want %d", got, tt.pids)
			}
			if _, err := m.Stats("/pod/missing"); err == nil {
				t.Error("stats of a missing cgroup succeeded")
			}
		})
	}
}

// TestOOMEvent makes a real memory cgroup with a 16 MiB limit, runs a
// process that allocates without bound in it and waits for the OOM event.
func TestOOMEvent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a memory cgroup)")
	}
	m, err := Detect("")
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/peerpod-test-oom-%x", rand.Uint32())
	memDir := m.dir("memory", path)
	if err := os.MkdirAll(memDir, 0o755); err != nil {
		t.Skipf("needs a writable memory cgroup: %v", err)
	}
	t.Cleanup(func() { _ = m.Remove(path) })
	limitFile := "memory.limit_in_bytes"
	if m.V2 {
		limitFile = "memory.max"
		_ = os.WriteFile(filepath.Join(memDir, "memory.swap.max"), []byte("0"), 0)
	}
	if err := os.WriteFile(filepath.Join(memDir, limitFile), []byte("16777216"), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan struct{}, 4)
	if err := m.WatchOOM(ctx, path, func() { events <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	// The shell moves itself into the cgroup, then becomes an unbounded line buffer.
	cmd := exec.Command("/bin/busybox", "sh", "-c",
		fmt.Sprintf("echo $$ > %s/cgroup.procs && exec /bin/busybox tail /dev/zero", memDir))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-events:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		b1, _ := os.ReadFile(filepath.Join(memDir, "memory.oom_control"))
		b2, _ := os.ReadFile(filepath.Join(memDir, "cgroup.procs"))
		b3, _ := os.ReadFile(filepath.Join(memDir, "memory.usage_in_bytes"))
		t.Fatalf("no OOM event: %s procs=%s usage=%s v2=%v", b1, b2, b3, m.V2)
	}
	if err := <-done; err == nil {
		t.Fatal("the allocating process was not killed")
	}
	st, err := m.Stats(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryStats.Usage.Limit != 16<<20 {
		t.Errorf("limit = %d", st.MemoryStats.Usage.Limit)
	}
	cancel()
	if err := m.Remove(path); err != nil {
		t.Fatal(err)
	}
	if len(m.Dirs(path)) != 0 {
		t.Fatalf("cgroup left: %v", m.Dirs(path))
	}
}
