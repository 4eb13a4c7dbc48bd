package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mount assembles a writable rootfs at target from read-only layer
// directories (lowest first), with overlayfs whose upper and work
// directories live in scratch. Where overlay cannot be mounted it copies the
// layers into target instead, applying their whiteouts. It reports whether
// target is a mount (to Unmount later).
func Mount(layers []string, target, scratch string) (mounted bool, err error) {
	if len(layers) == 0 {
		return false, ErrNoLayers
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return false, fmt.Errorf("rootfs %s: %w", target, err)
	}
	upper, work := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return false, fmt.Errorf("rootfs %s: %w", target, err)
		}
	}
	lowers := make([]string, len(layers))
	for i, l := range layers {
		lowers[len(layers)-1-i] = l // overlay wants the top layer first
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	merr := unix.Mount("overlay", target, "overlay", 0, opts)
	if merr == nil {
		return true, nil
	}
	for _, l := range layers {
		if err := applyLayerCopy(l, target); err != nil {
			return false, fmt.Errorf("rootfs %s: overlay failed (%v), copy failed: %w", target, merr, err)
		}
	}
	return false, nil
}

// Unmount undoes a Mount that reported mounted.
func Unmount(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// applyLayerCopy copies one unpacked layer over dst, honouring the
// overlay-style whiteouts unpackLayer wrote.
func applyLayerCopy(layer, dst string) error {
	return filepath.Walk(layer, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(layer, p)
		if rel == "." {
			return nil
		}
		out := filepath.Join(dst, rel)
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0 {
			return os.RemoveAll(out) // whiteout
		}
		if fi.IsDir() {
			if v := make([]byte, 1); func() bool {
				n, e := unix.Lgetxattr(p, "trusted.overlay.opaque", v)
				return e == nil && n == 1 && v[0] == 'y'
			}() {
				_ = os.RemoveAll(out)
			}
			if ofi, err := os.Lstat(out); err == nil && !ofi.IsDir() {
				_ = os.RemoveAll(out)
			}
			if err := os.MkdirAll(out, fi.Mode().Perm()); err != nil {
				return err
			}
			_ = os.Chmod(out, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
			return os.Lchown(out, int(st.Uid), int(st.Gid))
		}
		_ = os.RemoveAll(out)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(t, out); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(p, out, fi.Mode()); err != nil {
				return err
			}
		default:
			if err := unix.Mknod(out, st.Mode, int(st.Rdev)); err != nil {
				return err
			}
		}
		return os.Lchown(out, int(st.Uid), int(st.Gid))
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode.Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
	}
	return err
}
