// Package initramfs builds the pod VM's initramfs: a newc cpio archive whose
// bytes depend only on its inputs (sorted entries, fixed owners, inodes and
// modification times), so the same inputs always give the same image.
package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Kind is what an entry is.
type Kind int

// Entry kinds.
const (
	File Kind = iota
	Dir
	Symlink
	CharDev
)

// Entry is one archive member.
type Entry struct {
	// Path is the absolute path inside the image ("/init", "/usr/sbin/runc").
	Path string
	Kind Kind
	// Mode is the permission bits (0755, 0644); the type bits come from Kind.
	Mode fs.FileMode
	// Data is a file's content.
	Data []byte
	// Target is a symlink's target.
	Target string
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
}

// Archive is a set of entries keyed by path. Adding a file also adds its
// parent directories (mode 0755) unless they were added explicitly.
type Archive struct {
	entries map[string]Entry
	// MTime is the modification time written for every entry (seconds since
	// the epoch; SOURCE_DATE_EPOCH).
	MTime int64
}

// New returns an empty archive whose entries carry mtime.
func New(mtime int64) *Archive {
	return &Archive{entries: map[string]Entry{}, MTime: mtime}
}

func clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("initramfs: path %q is not absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("initramfs: path %q names the root", p)
	}
	return c, nil
}

// Add puts e in the archive. Adding a path twice with different content is an error.
func (a *Archive) Add(e Entry) error {
	p, err := clean(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if old, ok := a.entries[p]; ok {
		if old.Kind == Dir && e.Kind == Dir {
			return nil
		}
		if old.Kind != e.Kind || !bytes.Equal(old.Data, e.Data) || old.Target != e.Target || old.Mode != e.Mode ||
			old.Major != e.Major || old.Minor != e.Minor {
			return fmt.Errorf("initramfs: %s added twice with different content", p)
		}
		return nil
	}
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if old, ok := a.entries[d]; ok {
			if old.Kind != Dir {
				return fmt.Errorf("initramfs: %s: parent %s is not a directory", p, d)
			}
			continue
		}
		a.entries[d] = Entry{Path: d, Kind: Dir, Mode: 0o755}
	}
	a.entries[p] = e
	return nil
}

// AddFile adds a regular file.
func (a *Archive) AddFile(p string, mode fs.FileMode, data []byte) error {
	return a.Add(Entry{Path: p, Kind: File, Mode: mode, Data: data})
}

// AddDir adds a directory.
func (a *Archive) AddDir(p string, mode fs.FileMode) error {
	return a.Add(Entry{Path: p, Kind: Dir, Mode: mode})
}

// AddSymlink adds a symbolic link.
func (a *Archive) AddSymlink(p, target string) error {
	return a.Add(Entry{Path: p, Kind: Symlink, Mode: 0o777, Target: target})
}

// AddCharDev adds a character device node (/dev/console, say: the kernel
// opens it as PID 1's stdin, stdout and stderr before devtmpfs is mounted).
func (a *Archive) AddCharDev(p string, mode fs.FileMode, major, minor uint32) error {
	return a.Add(Entry{Path: p, Kind: CharDev, Mode: mode, Major: major, Minor: minor})
}

// Paths returns the archive's paths in the order WriteTo writes them.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	// Sorting the paths puts every directory before what it holds.
	sort.Strings(ps)
	return ps
}

const (
	typeDir     = 0o040000
	typeFile    = 0o100000
	typeSymlink = 0o120000
	typeCharDev = 0o020000
)

// WriteTo writes the archive as a newc cpio stream ending with the trailer.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	for i, p := range a.Paths() {
		e := a.entries[p]
		var mode uint32
		var data []byte
		switch e.Kind {
		case Dir:
			mode = typeDir
		case File:
			mode, data = typeFile, e.Data
		case Symlink:
			mode, data = typeSymlink, []byte(e.Target)
		case CharDev:
			mode = typeCharDev
		default:
			return cw.n, fmt.Errorf("initramfs: %s: unknown kind %d", p, e.Kind)
		}
		mode |= uint32(e.Mode.Perm())
		nlink := uint32(1)
		if e.Kind == Dir {
			nlink = 2
		}
		if err := writeHeader(cw, uint32(i+1), mode, nlink, a.MTime, e.Major, e.Minor, strings.TrimPrefix(p, "/"), data); err != nil {
			return cw.n, fmt.Errorf("initramfs: write %s: %w", p, err)
		}
	}
	if err := writeHeader(cw, 0, 0, 1, 0, 0, 0, "TRAILER!!!", nil); err != nil {
		return cw.n, fmt.Errorf("initramfs: write trailer: %w", err)
	}
	return cw.n, nil
}

func writeHeader(w io.Writer, ino, mode, nlink uint32, mtime int64, rmajor, rminor uint32, name string, data []byte) error {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, uint32(mtime), len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, pad(len(buf))...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(pad(len(data)))
	return err
}

func pad(n int) []byte { return make([]byte, (4-n%4)%4) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
