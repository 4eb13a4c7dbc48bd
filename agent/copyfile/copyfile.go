// Package copyfile applies the Kata runtime's CopyFile requests: files,
// directories and symlinks copied into the VM in chunks, confined to the
// shared containers directory, a file appearing atomically with its last chunk.
package copyfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Prefix is the directory the Kata runtime copies into (without FS sharing,
// every bind-mounted host file of a container is copied below it).
const Prefix = "/run/kata-containers/shared/containers"

// MaxChunk is the largest data chunk of one request the runtime sends.
const MaxChunk = 1 << 20

// Request is one CopyFile request.
type Request struct {
	Path     string // absolute, under Prefix
	FileSize int64
	FileMode uint32 // with the S_IFMT bits: regular file, directory or symlink
	DirMode  uint32 // for parent directories that must be made
	UID, GID int32
	Offset   int64
	Data     []byte // file bytes at Offset, or the target of a symlink
}

// ErrOutside is returned for a path or symlink that leaves Prefix.
var ErrOutside = errors.New("outside " + Prefix)

// Writer applies requests under Dir, the local directory standing for
// Prefix (Prefix itself in the VM; a temporary directory in tests).
type Writer struct {
	Dir string
}

// Local maps a path under Prefix to its place under w.Dir, refusing
// anything that climbs out, also through symlinks already in place.
func (w *Writer) Local(path string) (string, error) {
	rel, err := relative(path)
	if err != nil {
		return "", err
	}
	if err := w.noSymlinkParents(rel); err != nil {
		return "", err
	}
	return filepath.Join(w.Dir, rel), nil
}

func relative(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("copy file %q: path is not absolute", path)
	}
	c := filepath.Clean(path)
	rel, ok := strings.CutPrefix(c, Prefix+"/")
	if !ok || rel == "" {
		return "", fmt.Errorf("copy file %q: %w", path, ErrOutside)
	}
	return rel, nil
}

// noSymlinkParents refuses rel when a directory on its way is a symlink.
func (w *Writer) noSymlinkParents(rel string) error {
	cur := w.Dir
	parts := strings.Split(rel, "/")
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy file %s: %w", rel, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("copy file %s: parent %s is a symlink: %w", rel, strings.TrimPrefix(cur, w.Dir+"/"), ErrOutside)
		}
		if !fi.IsDir() {
			return fmt.Errorf("copy file %s: parent %s is not a directory", rel, strings.TrimPrefix(cur, w.Dir+"/"))
		}
	}
	return nil
}

// Apply performs one request.
func (w *Writer) Apply(r *Request) error {
	rel, err := relative(r.Path)
	if err != nil {
		return err
	}
	if len(r.Data) > MaxChunk && r.FileMode&unix.S_IFMT != unix.S_IFLNK {
		return fmt.Errorf("copy file %s: chunk of %d bytes exceeds %d", r.Path, len(r.Data), MaxChunk)
	}
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return fmt.Errorf("copy file %s: %w", r.Path, err)
	}
	if err := w.noSymlinkParents(rel); err != nil {
		return err
	}
	if r.FileMode&unix.S_IFMT == unix.S_IFLNK {
		if err := checkTarget(rel, r); err != nil {
			return err
		}
	}
	dst := filepath.Join(w.Dir, rel)
	if err := w.mkParents(rel, r); err != nil {
		return err
	}
	switch r.FileMode & unix.S_IFMT {
	case unix.S_IFDIR:
		return w.dir(dst, r)
	case unix.S_IFLNK:
		return w.symlink(dst, r)
	case unix.S_IFREG, 0:
		return w.file(dst, r)
	default:
		return fmt.Errorf("copy file %s: unsupported file type %#o", r.Path, r.FileMode&unix.S_IFMT)
	}
}

// mkParents makes missing parent directories with DirMode and the owner.
func (w *Writer) mkParents(rel string, r *Request) error {
	cur := w.Dir
	parts := strings.Split(rel, "/")
	for _, p := range parts[:len(parts)-1] {
		cur = filepath.Join(cur, p)
		if err := os.Mkdir(cur, os.FileMode(r.DirMode&0o7777)); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return fmt.Errorf("copy file %s: mkdir: %w", r.Path, err)
		}
		_ = os.Chmod(cur, os.FileMode(r.DirMode&0o777))
		if err := os.Lchown(cur, int(r.UID), int(r.GID)); err != nil {
			return fmt.Errorf("copy file %s: chown parent: %w", r.Path, err)
		}
	}
	return nil
}

func (w *Writer) dir(dst string, r *Request) error {
	fi, err := os.Lstat(dst)
	switch {
	case err == nil && !fi.IsDir():
		if err := os.Remove(dst); err != nil {
			return fmt.Errorf("copy file %s: replace with directory: %w", r.Path, err)
		}
		fallthrough
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(dst, 0o700); err != nil {
			return fmt.Errorf("copy file %s: mkdir: %w", r.Path, err)
		}
	case err != nil:
		return fmt.Errorf("copy file %s: %w", r.Path, err)
	}
	return setMeta(dst, r)
}

// checkTarget refuses a symlink whose target leaves Prefix.
func checkTarget(rel string, r *Request) error {
	target := string(r.Data)
	if target == "" || filepath.IsAbs(target) {
		return fmt.Errorf("copy file %s: symlink target %q: %w", r.Path, target, ErrOutside)
	}
	resolved := filepath.Clean(filepath.Join(filepath.Dir(rel), target))
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("copy file %s: symlink target %q: %w", r.Path, target, ErrOutside)
	}
	return nil
}

func (w *Writer) symlink(dst string, r *Request) error {
	target := string(r.Data)
	tmp := tempName(dst)
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("copy file %s: symlink: %w", r.Path, err)
	}
	if err := os.Lchown(tmp, int(r.UID), int(r.GID)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("copy file %s: chown: %w", r.Path, err)
	}
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		_ = os.RemoveAll(dst)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("copy file %s: %w", r.Path, err)
	}
	return nil
}

// tempName is where a file grows until its last chunk arrives.
func tempName(dst string) string {
	return filepath.Join(filepath.Dir(dst), ".copyfile-"+filepath.Base(dst))
}

func (w *Writer) file(dst string, r *Request) error {
	if r.Offset < 0 || r.FileSize < 0 || r.Offset+int64(len(r.Data)) > r.FileSize {
		return fmt.Errorf("copy file %s: chunk at %d of %d bytes exceeds file size %d", r.Path, r.Offset, len(r.Data), r.FileSize)
	}
	tmp := tempName(dst)
	flags := os.O_WRONLY
	if r.Offset == 0 {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(tmp, flags, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("copy file %s: chunk at offset %d without the chunks before it", r.Path, r.Offset)
		}
		return fmt.Errorf("copy file %s: %w", r.Path, err)
	}
	fail := func(err error) error {
		f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("copy file %s: %w", r.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if st.Size() != r.Offset {
		return fail(fmt.Errorf("chunk at offset %d does not follow the %d bytes received", r.Offset, st.Size()))
	}
	if _, err := f.WriteAt(r.Data, r.Offset); err != nil {
		return fail(err)
	}
	if r.Offset+int64(len(r.Data)) < r.FileSize {
		if err := f.Close(); err != nil {
			return fail(err)
		}
		return nil // more chunks to come
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := setMeta(tmp, r); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		_ = os.RemoveAll(dst)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("copy file %s: %w", r.Path, err)
	}
	return nil
}

func setMeta(p string, r *Request) error {
	if err := os.Lchown(p, int(r.UID), int(r.GID)); err != nil {
		return fmt.Errorf("copy file %s: chown: %w", r.Path, err)
	}
	if err := unix.Chmod(p, r.FileMode&0o7777); err != nil {
		return fmt.Errorf("copy file %s: chmod: %w", r.Path, err)
	}
	return nil
}
