package podnet

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn on a thread in the network namespace ns and returns it to
// the caller's namespace after. The thread is discarded if it cannot go back.
func Do(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(ferr, fmt.Errorf("return to netns: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// OpenNS opens the network namespace at path with an error that says
// whether it is missing.
func OpenNS(path string) (netns.NsHandle, error) {
	if path == "" {
		return -1, errors.New("no network namespace path")
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return -1, fmt.Errorf("network namespace %s does not exist: %w", path, err)
		}
		return -1, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return ns, nil
}

// NewPinnedNS makes a new network namespace and bind-mounts it at path
// (created if need be). It is a no-op when path already holds a namespace.
func NewPinnedNS(path string) error {
	if ns, err := netns.GetFromPath(path); err == nil {
		var st unix.Statfs_t
		isNS := unix.Fstatfs(int(ns), &st) == nil && (st.Type == unix.NSFS_MAGIC || st.Type == unix.PROC_SUPER_MAGIC)
		ns.Close()
		if isNS {
			if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
				var pst unix.Statfs_t
				if unix.Statfs(path, &pst) == nil && pst.Type == unix.NSFS_MAGIC {
					return nil
				}
			}
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("pod netns file %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// This thread changes namespace for good and is never unlocked.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind netns to %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// RemovePinnedNS unmounts and removes a namespace made by NewPinnedNS.
func RemovePinnedNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
