// Package pause is the pod's pause process (podvm-agent pause): it holds the
// sandbox's namespaces, reaps orphans when it is the pid namespace's init,
// and exits on SIGTERM or SIGINT. It also reads pause bundles.
package pause

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Run blocks until ctx ends or SIGTERM/SIGINT arrives, reaping children.
func Run(ctx context.Context) int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			return 0
		case s := <-sigs:
			if s != syscall.SIGCHLD {
				return 0
			}
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}

// Bundle is a pause bundle shipped in the VM image: config.json with the
// pause process and a rootfs directory holding its binary.
type Bundle struct {
	// Rootfs is the bundle's rootfs directory.
	Rootfs string
	// Process is the bundle's process (args, env, cwd).
	Process *specs.Process
}

// LoadBundle reads the bundle at dir.
func LoadBundle(dir string) (*Bundle, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("pause bundle %s: %w", dir, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("pause bundle %s: config.json: %w", dir, err)
	}
	if s.Process == nil || len(s.Process.Args) == 0 {
		return nil, fmt.Errorf("pause bundle %s: config.json has no process args", dir)
	}
	root := "rootfs"
	if s.Root != nil && s.Root.Path != "" {
		root = s.Root.Path
	}
	if !filepath.IsAbs(root) {
		root = filepath.Join(dir, root)
	}
	if _, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("pause bundle %s: rootfs: %w", dir, err)
	}
	return &Bundle{Rootfs: root, Process: s.Process}, nil
}

// WriteBundle makes a pause bundle at dir whose rootfs holds binary as
// /pause, run with args (e.g. ["/pause", "pause"] for podvm-agent).
func WriteBundle(dir, binary string, args []string) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "sys", "dev", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return fmt.Errorf("pause bundle %s: %w", dir, err)
		}
	}
	in, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("pause bundle %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "pause"), in, 0o755); err != nil {
		return fmt.Errorf("pause bundle %s: %w", dir, err)
	}
	s := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/"}},
	}
	b, _ := json.MarshalIndent(&s, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		return fmt.Errorf("pause bundle %s: %w", dir, err)
	}
	return nil
}
