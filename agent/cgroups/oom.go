package cgroups

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WatchOOM calls fn each time the kernel OOM-kills a process in cgroup path,
// until ctx ends or the cgroup is removed. On v2 it watches the oom_kill
// counter of memory.events (inotify); on v1 it registers an eventfd on
// memory.oom_control through cgroup.event_control.
func (m *Manager) WatchOOM(ctx context.Context, path string, fn func()) error {
	if m.V2 {
		return m.watchV2(ctx, path, fn)
	}
	return m.watchV1(ctx, path, fn)
}

// newPollable turns a non-blocking fd into a file the Go poller waits on,
// so that closing it ends a pending Read.
func newPollable(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

func (m *Manager) watchV1(ctx context.Context, path string, fn func()) error {
	d := m.dir("memory", path)
	ctl, err := os.Open(filepath.Join(d, "memory.oom_control"))
	if err != nil {
		return fmt.Errorf("cgroups: watch oom of %s: %w", path, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		ctl.Close()
		return fmt.Errorf("cgroups: eventfd: %w", err)
	}
	ev := newPollable(efd, "oom-eventfd")
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(filepath.Join(d, "cgroup.event_control"), []byte(reg), 0); err != nil {
		ev.Close()
		ctl.Close()
		return fmt.Errorf("cgroups: register oom eventfd for %s: %w", path, err)
	}
	go func() {
		<-ctx.Done()
		ev.Close()
	}()
	go func() {
		defer ctl.Close()
		buf := make([]byte, 8)
		for {
			if _, err := ev.Read(buf); err != nil {
				return
			}
			// The eventfd also fires when the cgroup goes away. Otherwise it
			// signals an OOM as it begins, before oom_kill counts it: report it.
			if _, err := os.Stat(d); err != nil {
				return
			}
			fn()
		}
	}()
	return nil
}

func (m *Manager) watchV2(ctx context.Context, path string, fn func()) error {
	file := filepath.Join(m.Root, path, "memory.events")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("cgroups: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, file, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return fmt.Errorf("cgroups: watch %s: %w", file, err)
	}
	in := newPollable(fd, "oom-inotify")
	count := func() (uint64, bool) {
		kv, err := readKV(file)
		if err != nil {
			return 0, false
		}
		return kv["oom_kill"], true
	}
	last, _ := count()
	go func() {
		<-ctx.Done()
		in.Close()
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := in.Read(buf); err != nil {
				return
			}
			c, ok := count()
			if !ok {
				return // the cgroup is gone
			}
			if c > last {
				last = c
				fn()
			}
		}
	}()
	return nil
}
