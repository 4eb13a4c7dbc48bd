package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// reapInterval is how often orphaned zombies are looked for.
const reapInterval = 2 * time.Second

// reapOrphans reaps zombie children that no process record owns: orphans
// re-parented to the agent (PID 1 in the VM, or a subreaper). A zombie is
// reaped only when two scans in a row saw it, so a child someone is about to
// wait for (a runc command, a container process) is never taken from them.
func (s *Sandbox) reapOrphans(stop <-chan struct{}) {
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	seen := map[int]bool{}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := map[int]bool{}
		for _, pid := range zombieChildren(os.Getpid()) {
			if s.owns(pid) {
				continue
			}
			if seen[pid] {
				var ws unix.WaitStatus
				if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil {
					s.log.Debug("reaped an orphan", "pid", pid)
				}
				continue
			}
			now[pid] = true
		}
		seen = now
	}
}

// owns reports whether pid is a container or exec process the sandbox tracks.
func (s *Sandbox) owns(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		if c == nil {
			continue
		}
		if c.init != nil && c.init.pid == pid {
			return true
		}
		c.mu.Lock()
		for _, p := range c.execs {
			if p != nil && p.pid == pid {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
	}
	return false
}

// zombieChildren lists the zombie children of parent from /proc.
func zombieChildren(parent int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		f := bytes.Fields(b[i+2:])
		if len(f) < 2 || string(f[0]) != "Z" {
			continue
		}
		if ppid, err := strconv.Atoi(string(f[1])); err == nil && ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}
