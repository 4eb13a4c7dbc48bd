// Package boot prepares a pod VM when podvm-agent runs as PID 1 of the
// initramfs: it mounts the kernel file systems, loads the kernel modules the
// image ships, and configures the network from the kernel command line.
package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Config says where Setup finds its inputs; the zero value means the image defaults.
type Config struct {
	// ModulesDir holds the .ko files and the load-order file (default /lib/modules).
	ModulesDir string
	// CmdlinePath is the kernel command line (default /proc/cmdline).
	CmdlinePath string
	// LinkTimeout bounds the wait for the NIC to appear (default 10s).
	LinkTimeout time.Duration
	// Logger receives one line per step (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.ModulesDir == "" {
		c.ModulesDir = "/lib/modules"
	}
	if c.CmdlinePath == "" {
		c.CmdlinePath = "/proc/cmdline"
	}
	if c.LinkTimeout == 0 {
		c.LinkTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Setup makes the VM ready for the agent: root file system, mounts, modules,
// hostname, network. It returns once the NIC is up with its address; the
// caller then starts the agent. On the first run as PID 1 of an initramfs it
// moves the root to a tmpfs and executes /init again (see SwitchRoot).
func Setup(ctx context.Context, cfg Config) error {
	cfg.defaults()
	start := time.Now()
	log := cfg.Logger
	if NeedSwitchRoot() {
		return SwitchRoot()
	}
	if err := MountAll(); err != nil {
		return err
	}
	raw, err := os.ReadFile(cfg.CmdlinePath)
	if err != nil {
		return fmt.Errorf("boot: read kernel command line: %w", err)
	}
	n, err := LoadModules(cfg.ModulesDir, string(raw))
	if err != nil {
		return err
	}
	log.Info("boot: modules loaded", "count", n, "elapsed", time.Since(start))
	nc, err := ParseCmdline(string(raw))
	if err != nil {
		return err
	}
	if nc.Hostname != "" {
		if err := unix.Sethostname([]byte(nc.Hostname)); err != nil {
			return fmt.Errorf("boot: set hostname %q: %w", nc.Hostname, err)
		}
	}
	if err := ConfigureNetwork(ctx, nc, cfg.LinkTimeout); err != nil {
		return err
	}
	if _, err := os.Stat(FWCfgUserData); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("boot: fw_cfg user data unreadable", "err", err)
	}
	log.Info("boot: ready", "ip", nc.Addr, "gateway", nc.Gateway, "elapsed", time.Since(start))
	return nil
}

// FWCfgUserData is where QEMU's fw_cfg entry opt/peerpod/userdata appears once
// the qemu_fw_cfg module is loaded.
const FWCfgUserData = "/sys/firmware/qemu_fw_cfg/by_name/opt/peerpod/userdata/raw"
