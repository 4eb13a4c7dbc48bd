package copyfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func p(rel string) string { return Prefix + "/" + rel }

func TestChunkedFileAtomic(t *testing.T) {
	w := &Writer{Dir: t.TempDir()}
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*MaxChunk)/16+5)
	var off int64
	for off < int64(len(data)) {
		end := min(off+MaxChunk, int64(len(data)))
		req := &Request{Path: p("c1-0123456789abcdef-cm/..2024/key"), FileSize: int64(len(data)), FileMode: unix.S_IFREG | 0o640, DirMode: unix.S_IFDIR | 0o750, UID: 1000, GID: 2000, Offset: off, Data: data[off:end]}
		if err := w.Apply(req); err != nil {
			t.Fatal(err)
		}
		off = end
		final := filepath.Join(w.Dir, "c1-0123456789abcdef-cm/..2024/key")
		_, err := os.Stat(final)
		if done := off == int64(len(data)); (err == nil) != done {
			t.Fatalf("after %d bytes: final file exists=%v", off, err == nil)
		}
	}
	got, err := os.ReadFile(filepath.Join(w.Dir, "c1-0123456789abcdef-cm/..2024/key"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content differs (%v)", err)
	}
	fi, _ := os.Stat(filepath.Join(w.Dir, "c1-0123456789abcdef-cm/..2024/key"))
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || st.Uid != 1000 || st.Gid != 2000 {
		t.Fatalf("mode %v uid %d gid %d", fi.Mode(), st.Uid, st.Gid)
	}
	di, _ := os.Stat(filepath.Join(w.Dir, "c1-0123456789abcdef-cm"))
	if di.Mode().Perm() != 0o750 {
		t.Fatalf("parent mode %v", di.Mode())
	}
}

func TestConfigMapLayout(t *testing.T) {
	w := &Writer{Dir: t.TempDir()}
	reqs := []*Request{
		{Path: p("cm"), FileMode: unix.S_IFDIR | 0o755, DirMode: 0o755},
		{Path: p("cm/..2024_01"), FileMode: unix.S_IFDIR | 0o755, DirMode: 0o755},
		{Path: p("cm/..2024_01/key"), FileMode: 0o644, FileSize: 5, Data: []byte("value")},
		{Path: p("cm/..data"), FileMode: unix.S_IFLNK | 0o777, Data: []byte("..2024_01")},
		{Path: p("cm/key"), FileMode: unix.S_IFLNK | 0o777, Data: []byte("..data/key")},
		{Path: p("empty"), FileMode: 0o600, FileSize: 0},
	}
	for _, r := range reqs {
		if err := w.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(w.Dir, "cm/key"))
	if err != nil || string(b) != "value" {
		t.Fatalf("cm/key = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(w.Dir, "empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("empty file: %v", err)
	}
	local, err := w.Local(p("cm/key"))
	if err != nil || local != filepath.Join(w.Dir, "cm/key") {
		t.Fatalf("Local = %q, %v", local, err)
	}
}

func TestRefused(t *testing.T) {
	w := &Writer{Dir: t.TempDir()}
	if err := w.Apply(&Request{Path: p("link"), FileMode: unix.S_IFLNK | 0o777, Data: []byte("sub")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  Request
	}{
		{"outside prefix", Request{Path: "/etc/passwd", FileMode: 0o644, FileSize: 1, Data: []byte("x")}},
		{"traversal", Request{Path: p("../../../../etc/x"), FileMode: 0o644, FileSize: 1, Data: []byte("x")}},
		{"relative", Request{Path: "run/kata-containers/shared/containers/x", FileMode: 0o644}},
		{"the prefix itself", Request{Path: Prefix, FileMode: unix.S_IFDIR | 0o755}},
		{"absolute symlink", Request{Path: p("l1"), FileMode: unix.S_IFLNK | 0o777, Data: []byte("/etc/shadow")}},
		{"escaping symlink", Request{Path: p("a/l2"), FileMode: unix.S_IFLNK | 0o777, Data: []byte("../../x")}},
		{"through a symlink", Request{Path: p("link/f"), FileMode: 0o644, FileSize: 1, Data: []byte("x")}},
		{"chunk beyond size", Request{Path: p("big"), FileMode: 0o644, FileSize: 1, Data: []byte("xy")}},
		{"chunk without start", Request{Path: p("late"), FileMode: 0o644, FileSize: 4, Offset: 2, Data: []byte("xy")}},
		{"device", Request{Path: p("dev"), FileMode: unix.S_IFCHR | 0o644}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := w.Apply(&tt.req); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := w.Local(p("link/f")); !errors.Is(err, ErrOutside) {
		t.Fatalf("Local through symlink: %v", err)
	}
	ents, _ := os.ReadDir(w.Dir)
	for _, e := range ents {
		if e.Name() != "link" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
