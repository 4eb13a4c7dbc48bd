// Package cgroups reads the statistics and OOM kills of container cgroups
// and removes them, on the unified hierarchy (v2, in the pod VM) and on the
// legacy per-controller hierarchies (v1, e.g. the CI host).
package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where cgroup filesystems are mounted.
const DefaultRoot = "/sys/fs/cgroup"

// Manager knows the cgroup layout under Root.
type Manager struct {
	// Root is the cgroup mount root (DefaultRoot).
	Root string
	// V2 is true on a unified (cgroup2) hierarchy at Root.
	V2 bool
}

// Detect inspects root ("" = DefaultRoot): cgroup2 mounted there means v2.
func Detect(root string) (*Manager, error) {
	if root == "" {
		root = DefaultRoot
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil, fmt.Errorf("cgroups: statfs %s: %w", root, err)
	}
	return &Manager{Root: root, V2: st.Type == unix.CGROUP2_SUPER_MAGIC}, nil
}

// dir is the directory of a cgroup path in one v1 controller (ignored on v2).
func (m *Manager) dir(controller, path string) string {
	if m.V2 {
		return filepath.Join(m.Root, path)
	}
	return filepath.Join(m.Root, controller, path)
}

// Dirs lists the existing directories of path: one on v2, one per
// hierarchy holding it on v1.
func (m *Manager) Dirs(path string) []string {
	if m.V2 {
		d := filepath.Join(m.Root, path)
		if _, err := os.Stat(d); err == nil {
			return []string{d}
		}
		return nil
	}
	ents, err := os.ReadDir(m.Root)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.Name() == "unified" {
			continue // the empty v2 tree of a hybrid host; runc does not use it
		}
		d := filepath.Join(m.Root, e.Name(), path)
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// Remove deletes the cgroup path and its children in every hierarchy.
// A cgroup that still holds processes cannot be removed: that is an error.
func (m *Manager) Remove(path string) error {
	if strings.Trim(path, "/") == "" {
		return errors.New("cgroups: refusing to remove the root cgroup")
	}
	var errs []error
	for _, d := range m.Dirs(path) {
		var subdirs []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				subdirs = append(subdirs, p)
			}
			return nil
		})
		sort.Slice(subdirs, func(i, j int) bool { return len(subdirs[i]) > len(subdirs[j]) })
		for _, s := range subdirs {
			if err := unix.Rmdir(s); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("cgroups: remove %s: %w", s, err))
			}
		}
	}
	return errors.Join(errs...)
}

// readUint reads a file holding one number ("max" reads as 0).
func readUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// readKV reads a flat keyed file ("key value" lines).
func readKV(p string) (map[string]uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, nil
}
