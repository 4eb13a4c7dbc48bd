package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeTiny writes a small file and returns a Spec that puts it at /usr/local/bin/tiny.
func writeTiny(t *testing.T, content string) Spec {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tiny")
	if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Ref:        "ghcr.io/peerpod/tiny:test",
		Files:      []File{{Source: src, Path: "/usr/local/bin/tiny", Mode: 0o755}},
		Entrypoint: []string{"/usr/local/bin/tiny", "-v"},
		Created:    time.Unix(1700000000, 0).UTC(),
	}
}

func TestWriteReadBack(t *testing.T) {
	spec := writeTiny(t, "#!tiny\n")
	out := filepath.Join(t.TempDir(), "tiny.tar")
	digest, err := Write(spec, out)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatalf("ImageFromPath: %v", err)
	}
	got, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != digest {
		t.Errorf("digest read back %s, Write returned %s", got, digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, spec.Entrypoint) {
		t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, spec.Entrypoint)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/<arch>", cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(spec.Created) {
		t.Errorf("created %v, want %v", cf.Created.Time, spec.Created)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	var order []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		order = append(order, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(spec.Created) {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 %v", h.Name, h.Uid, h.Gid, h.ModTime, spec.Created)
		}
		if h.Name == "usr/local/bin/tiny" {
			b, _ := io.ReadAll(tr)
			if string(b) != "#!tiny\n" {
				t.Errorf("content %q", b)
			}
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("entries not sorted: %v", order)
	}
	tests := []struct {
		name string
		typ  byte
		mode int64
	}{
		{"usr/local/bin/tiny", tar.TypeReg, 0o755},
		{"usr/local/bin/", tar.TypeDir, 0o755},
		{"usr/", tar.TypeDir, 0o755},
		{"tmp/", tar.TypeDir, 0o1777},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := seen[tc.name]
			if !ok {
				t.Fatalf("%s missing from layer (have %v)", tc.name, order)
			}
			if h.Typeflag != tc.typ || h.Mode != tc.mode {
				t.Errorf("%s: type %c mode %o, want %c %o", tc.name, h.Typeflag, h.Mode, tc.typ, tc.mode)
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	spec := writeTiny(t, "same bytes")
	dir := t.TempDir()
	a, err := Write(spec, filepath.Join(dir, "a.tar"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Write(spec, filepath.Join(dir, "b.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("two builds differ: %s vs %s", a, b)
	}
	ba, _ := os.ReadFile(filepath.Join(dir, "a.tar"))
	bb, _ := os.ReadFile(filepath.Join(dir, "b.tar"))
	if string(ba) != string(bb) {
		t.Error("two archives differ byte for byte")
	}
	spec.Created = spec.Created.Add(time.Second)
	c, err := Write(spec, filepath.Join(dir, "c.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Error("changing the timestamp did not change the digest")
	}
}

func TestBadInput(t *testing.T) {
	good := writeTiny(t, "x")
	tests := []struct {
		name   string
		mutate func(*Spec)
	}{
		{"relative path", func(s *Spec) { s.Files[0].Path = "usr/bin/x" }},
		{"unclean path", func(s *Spec) { s.Files[0].Path = "/usr/../bin/x" }},
		{"missing source", func(s *Spec) { s.Files[0].Source = "/nonexistent/peerpod-x" }},
		{"duplicate path", func(s *Spec) { s.Files = append(s.Files, s.Files[0]) }},
		{"bad tag", func(s *Spec) { s.Ref = "Not A Tag" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			s.Files = slices.Clone(good.Files)
			tc.mutate(&s)
			out := filepath.Join(t.TempDir(), "x.tar")
			if _, err := Write(s, out); err == nil {
				t.Fatal("Write succeeded, want an error")
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind after failure", out)
			}
			if _, err := os.Stat(out + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s.tmp left behind after failure", out)
			}
		})
	}
}

func TestSourceDateEpoch(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"", 0, false},
		{"1700000000", 1700000000, false},
		{"-1", 0, true},
		{"soon", 0, true},
	}
	for _, tc := range tests {
		got, err := sourceDateEpoch(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("sourceDateEpoch(%q) err %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got.Unix() != tc.want {
			t.Errorf("sourceDateEpoch(%q) = %d, want %d", tc.in, got.Unix(), tc.want)
		}
	}
}
