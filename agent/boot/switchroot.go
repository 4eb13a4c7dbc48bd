package boot

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// switchRoot makes the root a bind mount of the initramfs mounted over the
// kernel's initial root file system, and moves this process into it.
// pivot_root(2) refuses the initial root file system, and runc needs
// pivot_root to confine containers; the bind mount has a parent, so runc can
// pivot_root out of it. Nothing is copied, and the process goes on where it
// is: re-executing /init would only run the Go runtime and package
// initialization a second time, which costs hundreds of milliseconds under TCG.
func switchRoot() error {
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
	return nil
}
