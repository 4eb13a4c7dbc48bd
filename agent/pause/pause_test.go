package pause

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestBundleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := WriteBundle(dir, "/bin/busybox", []string{"/pause", "sleep", "1"}); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Rootfs != filepath.Join(dir, "rootfs") || b.Process.Args[0] != "/pause" {
		t.Fatalf("bundle = %+v", b)
	}
	if _, err := LoadBundle(t.TempDir()); err == nil {
		t.Fatal("empty dir loaded as a bundle")
	}
}

func TestRunEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if code := Run(ctx); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
