package image

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/agent/internal/testimage"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, chown, overlay mounts)")
	}
}

// twoLayers pushes an image whose second layer deletes and replaces files of the first.
func twoLayers(t *testing.T, reg *testimage.Registry) string {
	t.Helper()
	base := testimage.BusyboxLayer(t)
	top := testimage.Layer(t, []testimage.File{
		{Name: "etc/motd", Mode: 0o644, Body: []byte("top\n")},
		{Name: "etc/.wh.group", Mode: 0o644},
		{Name: "data/", Mode: 0o755, Type: tar.TypeDir},
		{Name: "data/.wh..wh..opq", Mode: 0o644},
		{Name: "data/new", Mode: 0o600, Body: []byte("n"), UID: 1000, GID: 1000},
		{Name: "lnk", Type: tar.TypeSymlink, Link: "/etc/motd"},
	})
	return reg.Push(t, "test/two:v1", testimage.Image(t, []string{"sh"}, base, top))
}

func TestPullMountAndCache(t *testing.T) {
	needRoot(t)
	reg := testimage.Serve(t, "", "")
	ref := twoLayers(t, reg)
	st, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	img, err := st.Pull(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 || img.Config.Cmd[0] != "sh" || !strings.HasPrefix(img.Digest, "sha256:") {
		t.Fatalf("image = %+v", img)
	}
	for _, copyMode := range []bool{false, true} {
		root := filepath.Join(t.TempDir(), "rootfs")
		var mounted bool
		if copyMode {
			for _, l := range img.Layers {
				if err := applyLayerCopy(l, root); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			mounted, err = Mount(img.Layers, root, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if !mounted {
				t.Fatal("overlay not mounted on ext4 as root")
			}
			t.Cleanup(func() { _ = Unmount(root) })
		}
		checks := []struct {
			path   string
			exists bool
		}{
			{"bin/busybox", true}, {"etc/passwd", true}, {"etc/motd", true}, {"etc/group", false}, {"data/new", true},
		}
		for _, c := range checks {
			_, err := os.Lstat(filepath.Join(root, c.path))
			if (err == nil) != c.exists {
				t.Errorf("copy=%v %s: exists=%v, want %v", copyMode, c.path, err == nil, c.exists)
			}
		}
		var stt unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, "data/new"), &stt); err != nil || stt.Uid != 1000 || stt.Mode&0o777 != 0o600 {
			t.Errorf("copy=%v data/new owner/mode: %+v %v", copyMode, stt, err)
		}
		if l, _ := os.Readlink(filepath.Join(root, "lnk")); l != "/etc/motd" {
			t.Errorf("copy=%v symlink = %q", copyMode, l)
		}
	}
	// Second pull: from the cache, even with the registry gone.
	st2, err := NewStore(filepath.Dir(filepath.Dir(img.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	img2, err := st2.Pull(ctx, ref)
	if err != nil || img2.Digest != img.Digest {
		t.Fatalf("cached pull: %v %+v", err, img2)
	}
}

func TestPullErrorsNameImageAndAnswer(t *testing.T) {
	needRoot(t)
	reg := testimage.Serve(t, "alice", "s3cret")
	ref := reg.Push(t, "priv/bb:1", testimage.Image(t, []string{"sh"}, testimage.BusyboxLayer(t)))
	tests := []struct {
		name, ref string
		auth      []byte
		want      []string
	}{
		{"no credentials", ref, nil, []string{ref, "UNAUTHORIZED"}},
		{"wrong password", ref, reg.AuthJSON("alice", "nope"), []string{ref, "UNAUTHORIZED"}},
		{"missing image", reg.Host + "/priv/none:1", reg.AuthJSON("alice", "s3cret"), []string{"priv/none", "NAME_UNKNOWN"}},
		{"bad reference", "UPPER/Case::x", nil, []string{"bad reference"}},
		{"good", ref, reg.AuthJSON("alice", "s3cret"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := NewStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := st.SetAuthJSON(tt.auth); err != nil {
				t.Fatal(err)
			}
			_, err = st.Pull(context.Background(), tt.ref)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("pull succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		files []testimage.File
	}{
		{"dotdot", []testimage.File{{Name: "../evil", Mode: 0o644, Body: []byte("x")}}},
		{"through symlink", []testimage.File{{Name: "l", Type: tar.TypeSymlink, Link: "/tmp"}, {Name: "l/evil", Mode: 0o644, Body: []byte("x")}}},
		{"hard link out", []testimage.File{{Name: "h", Type: tar.TypeLink, Link: "../../etc/passwd"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testimage.Layer(t, tt.files)
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			dir := t.TempDir()
			if err := unpackLayer(rc, dir); err == nil {
				t.Fatal("unpack accepted an escaping entry")
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
				t.Fatal("file written outside the layer")
			}
		})
	}
}

func TestParseAuthJSON(t *testing.T) {
	tests := []struct {
		doc      string
		registry string
		user     string
		wantErr  bool
	}{
		{`{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}`, "index.docker.io", "u", false},
		{`{"auths":{"reg:5000":{"auth":"dTpw"}}}`, "reg:5000", "u", false},
		{``, "", "", false},
		{`{"auths":`, "", "", true},
		{`{"auths":{"r":{"auth":"!!"}}}`, "", "", true},
	}
	for _, tt := range tests {
		k, err := ParseAuthJSON([]byte(tt.doc))
		if (err != nil) != tt.wantErr {
			t.Fatalf("%q: err = %v", tt.doc, err)
		}
		if err != nil || tt.registry == "" {
			continue
		}
		found := false
		for _, r := range k.Registries() {
			found = found || r == tt.registry
		}
		if !found {
			t.Errorf("%q: registries %v lack %s", tt.doc, k.Registries(), tt.registry)
		}
	}
}
