package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/agent/cgroups"
)

func TestReapOrphans(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	s, err := New(Config{StateDir: t.TempDir(), KataRoot: t.TempDir(), Cgroups: &cgroups.Manager{Root: t.TempDir()}, ReapOrphans: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The shell exits at once; its background child is orphaned to us (a subreaper).
	out, err := exec.Command("/bin/sh", "-c", "sleep 0.2 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			return // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d was not reaped (zombies of ours: %v)", pid, zombieChildren(os.Getpid()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
