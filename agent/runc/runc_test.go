package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Both runtimes the pod VM image may hold: the errors the agent relies on
// (an unknown container, a failed create's message) come out alike.
func TestUnknownContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (runc, crun)")
	}
	for _, path := range []string{DefaultPath, CrunPath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if _, err := os.Stat(path); err != nil {
				t.Skip("needs " + path + " (apt-get install " + filepath.Base(path) + ")")
			}
			r := &Runc{Path: path, Root: t.TempDir()}
			ctx := context.Background()
			if _, err := r.State(ctx, "nope"); !errors.Is(err, ErrNotExist) {
				t.Errorf("State: %v", err)
			}
			if err := r.Delete(ctx, "nope", true); err != nil && !errors.Is(err, ErrNotExist) {
				t.Errorf("Delete: %v", err)
			}
			if err := r.StartFifo(ctx, "nope", nil); err == nil {
				t.Error("StartFifo of an unknown container succeeded")
			}
			// A failed create quotes the runtime's own message from its log.
			bundle := t.TempDir()
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","root":{"path":"missing"},"process":{"args":["x"],"cwd":"/"}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			err := r.Create(ctx, "bad", bundle, CreateOpts{PidFile: filepath.Join(bundle, "pid"), Log: filepath.Join(bundle, "log")})
			if err == nil {
				_ = r.Delete(ctx, "bad", true)
				t.Fatal("create with a missing rootfs succeeded")
			}
			if errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), filepath.Base(path)+" create bad") {
				t.Errorf("create error %q: want the runtime's message, not ErrNotExist", err)
			}
			t.Log(err)
		})
	}
}

// runc's start by its exec fifo is for runc only; another runtime is
// started with its start command.
func TestFifoStartIsRuncOnly(t *testing.T) {
	for path, want := range map[string]bool{"": true, DefaultPath: true, "/opt/bin/runc": true, CrunPath: false} {
		if got := (&Runc{Path: path}).isRunc(); got != want {
			t.Errorf("isRunc with path %q = %v, want %v", path, got, want)
		}
	}
}

func TestReadPidFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		body string
		ok   bool
	}{{"123\n", true}, {"", false}, {"abc", false}, {"-1", false}}
	for _, tt := range tests {
		p := filepath.Join(dir, "pid")
		if err := os.WriteFile(p, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadPidFile(p); (err == nil) != tt.ok {
			t.Errorf("%q: err = %v", tt.body, err)
		}
	}
}
