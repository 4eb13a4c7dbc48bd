package boot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "usr/sbin"), 0o755))
	must(os.WriteFile(filepath.Join(src, "usr/sbin/runc"), []byte("runc"), 0o755))
	must(os.Symlink("usr/sbin/runc", filepath.Join(src, "runc")))
	must(os.Mkdir(filepath.Join(src, "skip"), 0o755))
	must(os.WriteFile(filepath.Join(src, "skip/x"), nil, 0o644))
	must(copyTree(src, dst, filepath.Join(src, "skip")))
	st, err := os.Stat(filepath.Join(dst, "usr/sbin/runc"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("copied runc: %v %v", st, err)
	}
	if tgt, err := os.Readlink(filepath.Join(dst, "runc")); err != nil || tgt != "usr/sbin/runc" {
		t.Fatalf("symlink: %q %v", tgt, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "skip")); !os.IsNotExist(err) {
		t.Fatalf("skipped dir was copied: %v", err)
	}
}
