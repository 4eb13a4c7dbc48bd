package boot

import (
	"fmt"
	"os"
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

// SwitchRoot makes the root a bind mount of the initramfs mounted over the
// kernel's initial root, then executes /init again (it does not return on
// success). pivot_root(2) refuses a root that is the initial root file
// system; the bind mount has a parent, so runc can pivot_root out of it into
// container root file systems. Nothing is copied.
func SwitchRoot() error {
	const newRoot = "/.root"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return fmt.Errorf("boot: switch root: %w", err)
	}
	if err := unix.Mount("/", newRoot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("boot: switch root: bind /: %w", err)
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
