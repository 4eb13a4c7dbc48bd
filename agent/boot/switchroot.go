package boot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// switchedEnv marks the second run of /init, after SwitchRoot.
const switchedEnv = "PEERPOD_ROOT_SWITCHED"

// NeedSwitchRoot reports whether this PID 1 still runs on the kernel's initial
// root file system, where pivot_root(2) is not allowed — and runc needs it to
// confine containers.
func NeedSwitchRoot() bool {
	return os.Getpid() == 1 && os.Getenv(switchedEnv) == ""
}

// SwitchRoot copies the initramfs into a fresh tmpfs, frees the original,
// makes the tmpfs the root and executes /init again (it does not return on
// success). The new root is an ordinary mount, so runc can pivot_root out of
// it into container root file systems.
func SwitchRoot() error {
	const newRoot = "/.newroot"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return fmt.Errorf("boot: switch root: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("boot: switch root: mount tmpfs: %w", err)
	}
	if err := copyTree("/", newRoot, newRoot); err != nil {
		return fmt.Errorf("boot: switch root: copy: %w", err)
	}
	// Free the initramfs copy, as switch_root does; the new root is untouched.
	ents, _ := os.ReadDir("/")
	for _, e := range ents {
		if p := "/" + e.Name(); p != newRoot {
			_ = os.RemoveAll(p)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return fmt.Errorf("boot: switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("boot: switch root: move mount: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("boot: switch root: chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("boot: switch root: %w", err)
	}
	env := append(os.Environ(), switchedEnv+"=1")
	return fmt.Errorf("boot: switch root: exec /init: %w", syscall.Exec("/init", os.Args, env))
}

// copyTree copies src to dst (files, directories, symlinks), skipping skip.
func copyTree(src, dst, skip string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel == "." {
				return nil
			}
			return os.Mkdir(target, info.Mode().Perm()|info.Mode()&(fs.ModeSticky))
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, target)
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		default:
			return nil // no device nodes or sockets in the image
		}
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.Remove(dst))
	}
	return nil
}
