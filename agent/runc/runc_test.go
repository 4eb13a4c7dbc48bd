package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestUnknownContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (runc)")
	}
	if _, err := os.Stat(DefaultPath); err != nil {
		t.Skip("needs runc at " + DefaultPath)
	}
	r := &Runc{Root: t.TempDir()}
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
	// A failed create quotes runc's own message from its log.
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2","root":{"path":"missing"},"process":{"args":["x"],"cwd":"/"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := r.Create(ctx, "bad", bundle, CreateOpts{PidFile: filepath.Join(bundle, "pid"), Log: filepath.Join(bundle, "log")})
	if err == nil {
		_ = r.Delete(ctx, "bad", true)
		t.Fatal("create with a missing rootfs succeeded")
	}
	t.Log(err)
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
