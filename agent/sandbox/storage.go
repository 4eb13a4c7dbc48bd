package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pb "github.com/peerpod/peerpod/api/agent"
	"golang.org/x/sys/unix"
)

// Storage drivers the agent handles.
const (
	DriverImageGuestPull = "image_guest_pull"
	DriverEphemeral      = "ephemeral"
	DriverLocal          = "local"
)

var mountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME,
	"sync": unix.MS_SYNCHRONOUS, "rw": 0, "defaults": 0,
}

// parseOptions splits mount options into flags and filesystem data.
func parseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			flags |= f
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// mountStorage sets up one non-image storage and returns its mount point
// when it mounted something ("" for a plain directory).
func (s *Sandbox) mountStorage(st *pb.Storage) (string, error) {
	if st.MountPoint == "" || !filepath.IsAbs(st.MountPoint) {
		return "", fmt.Errorf("storage %q: mount point %q is not absolute: %w", st.Source, st.MountPoint, ErrInvalid)
	}
	clean := filepath.Clean(st.MountPoint)
	mp := s.local(clean)
	if !strings.HasPrefix(clean, KataRoot+"/") {
		return "", fmt.Errorf("storage %q: mount point %s is outside %s: %w", st.Source, st.MountPoint, KataRoot, ErrInvalid)
	}
	switch st.Driver {
	case DriverEphemeral:
		if st.Fstype != "" && st.Fstype != "tmpfs" {
			return "", fmt.Errorf("storage %q: ephemeral fstype %q is not tmpfs: %w", st.Source, st.Fstype, ErrInvalid)
		}
		if err := os.MkdirAll(mp, 0o755); err != nil {
			return "", fmt.Errorf("storage %s: %w", st.MountPoint, err)
		}
		flags, data := parseOptions(st.Options)
		if err := unix.Mount("tmpfs", mp, "tmpfs", flags, data); err != nil {
			return "", fmt.Errorf("storage %s: mount tmpfs (%s): %w", st.MountPoint, data, err)
		}
		return mp, nil
	case DriverLocal:
		mode := os.FileMode(0o777)
		for _, o := range st.Options {
			if v, ok := strings.CutPrefix(o, "mode="); ok {
				if m, err := strconv.ParseUint(v, 8, 32); err == nil {
					mode = os.FileMode(m)
				}
			}
		}
		if err := os.MkdirAll(mp, mode); err != nil {
			return "", fmt.Errorf("storage %s: %w", st.MountPoint, err)
		}
		if err := os.Chmod(mp, mode); err != nil {
			return "", fmt.Errorf("storage %s: %w", st.MountPoint, err)
		}
		if st.FsGroup != nil {
			if err := os.Chown(mp, -1, int(st.FsGroup.GroupId)); err != nil {
				return "", fmt.Errorf("storage %s: %w", st.MountPoint, err)
			}
		}
		return "", nil
	default:
		return "", fmt.Errorf("storage %q: driver %q is not supported (supported: %s, %s, %s): %w",
			st.Source, st.Driver, DriverImageGuestPull, DriverEphemeral, DriverLocal, ErrInvalid)
	}
}
