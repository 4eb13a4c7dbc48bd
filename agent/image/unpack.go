package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// OCI whiteout markers inside layer tarballs.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpackLayer extracts the uncompressed layer tar r into dir, turning OCI
// whiteouts into overlayfs whiteouts (a 0/0 character device for a removed
// name, the trusted.overlay.opaque xattr for an opaque directory). No entry
// may write outside dir, neither by ".." nor through a symlink.
func unpackLayer(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		mt   time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		rel, err := cleanEntry(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue // the layer root itself
		}
		base := filepath.Base(rel)
		parent := filepath.Dir(rel)
		if err := mkdirBeneath(dir, parent); err != nil {
			return err
		}
		if base == whiteoutOpaque {
			p := filepath.Join(dir, parent)
			if err := unix.Lsetxattr(p, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return fmt.Errorf("mark %s opaque: %w", parent, err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			p := filepath.Join(dir, parent, strings.TrimPrefix(base, whiteoutPrefix))
			_ = os.RemoveAll(p)
			if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("whiteout %s: %w", rel, err)
			}
			continue
		}
		p := filepath.Join(dir, rel)
		if fi, err := os.Lstat(p); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("replace %s: %w", rel, err)
			}
		}
		mode := uint32(hdr.Mode & 07777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("mkdir %s: %w", rel, err)
			}
			dirs = append(dirs, dirTime{p, hdr.ModTime})
		case tar.TypeReg: // the reader reports old TypeRegA entries as TypeReg
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("create %s: %w", rel, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", rel, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				return fmt.Errorf("symlink %s: %w", rel, err)
			}
		case tar.TypeLink:
			target, err := cleanEntry(hdr.Linkname)
			if err != nil || target == "" {
				return fmt.Errorf("hard link %s to %q: outside the layer", rel, hdr.Linkname)
			}
			if err := checkNoSymlinkParents(dir, target); err != nil {
				return err
			}
			if err := os.Link(filepath.Join(dir, target), p); err != nil {
				return fmt.Errorf("hard link %s: %w", rel, err)
			}
			continue // shares the target's inode: its metadata is already set
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknod(p, typ|mode, int(dev)); err != nil {
				return fmt.Errorf("mknod %s: %w", rel, err)
			}
		default:
			continue // e.g. pax global headers: nothing to create
		}
		if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				_ = unix.Lsetxattr(p, name, []byte(v), 0) // best effort: the filesystem may refuse some namespaces
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(p, os.FileMode(mode)|modeBits(mode)); err != nil {
				return fmt.Errorf("chmod %s: %w", rel, err)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			_ = unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	// Directory times last: creating entries inside changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Chtimes(dirs[i].path, dirs[i].mt, dirs[i].mt)
	}
	return nil
}

// modeBits carries setuid/setgid/sticky from a tar mode to an os.FileMode.
func modeBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// cleanEntry turns a tar entry name into a path relative to the layer root,
// refusing names that climb out of it. "" is the root itself.
func cleanEntry(name string) (string, error) {
	c := filepath.Clean(strings.TrimLeft(name, "/"))
	if c == "." {
		return "", nil
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("layer entry %q climbs out of the layer", name)
	}
	return c, nil
}

// mkdirBeneath makes the directories of rel under root, refusing to pass
// through a symlink.
func mkdirBeneath(root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case err == nil && fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("layer path %s passes through symlink %s", rel, strings.TrimPrefix(cur, root))
		case err == nil && !fi.IsDir():
			return fmt.Errorf("layer path %s: %s is not a directory", rel, strings.TrimPrefix(cur, root))
		case err == nil:
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return fmt.Errorf("mkdir %s: %w", cur, err)
			}
		default:
			return fmt.Errorf("stat %s: %w", cur, err)
		}
	}
	return nil
}

// checkNoSymlinkParents refuses rel when a directory on its way is a symlink.
func checkNoSymlinkParents(root, rel string) error {
	cur := root
	parts := strings.Split(filepath.Dir(rel), string(filepath.Separator))
	for _, part := range parts {
		if part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return fmt.Errorf("stat %s: %w", cur, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("layer path %s passes through symlink", rel)
		}
	}
	return nil
}
