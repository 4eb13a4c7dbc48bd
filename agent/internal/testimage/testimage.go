// Package testimage serves a container registry on loopback and builds small
// images from the host's static busybox, for tests of the agent that pull
// real images without the internet.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Busybox is the static busybox the test images are built from.
const Busybox = "/bin/busybox"

// Applets are linked to busybox in /bin of every test image.
var Applets = []string{"sh", "echo", "sleep", "cat", "true", "false", "head", "ls", "dd", "yes", "hostname", "tail", "stty", "env"}

// Registry is an in-process registry on loopback.
type Registry struct {
	// Host is host:port to use in image references.
	Host string
	// User and Password, when set, are required (HTTP basic auth).
	User, Password string
}

// Serve starts a registry for the test; with user != "" it requires those credentials.
func Serve(t testing.TB, user, password string) *Registry {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if user != "" {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Registry{Host: strings.TrimPrefix(srv.URL, "http://"), User: user, Password: password}
}

// File is one entry of a layer built by Layer.
type File struct {
	Name     string
	Mode     int64
	Body     []byte
	Link     string // symlink target when Type is tar.TypeSymlink
	Type     byte   // tar.TypeReg when 0
	UID, GID int
}

// Layer builds an uncompressed layer from entries.
func Layer(t testing.TB, files []File) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: typ, Linkname: f.Link, Size: int64(len(f.Body)), Uid: f.UID, Gid: f.GID, ModTime: time.Unix(1700000000, 0)}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar %s: %v", f.Name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				t.Fatalf("tar %s: %v", f.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// BusyboxLayer is a layer with /bin/busybox and its applet links, /etc and /tmp.
func BusyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		t.Skipf("needs %s (busybox-static): %v", Busybox, err)
	}
	files := []File{
		{Name: "bin/", Mode: 0o755, Type: tar.TypeDir},
		{Name: "bin/busybox", Mode: 0o755, Body: bb},
		{Name: "etc/", Mode: 0o755, Type: tar.TypeDir},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "tmp/", Mode: 0o1777, Type: tar.TypeDir},
		{Name: "proc/", Mode: 0o555, Type: tar.TypeDir},
		{Name: "sys/", Mode: 0o555, Type: tar.TypeDir},
		{Name: "dev/", Mode: 0o755, Type: tar.TypeDir},
	}
	for _, a := range Applets {
		files = append(files, File{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox"})
	}
	return Layer(t, files)
}

// Image makes an image of layers (lowest first) with the given command.
func Image(t testing.TB, cmd []string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = cmd
	cf.Config.Env = []string{"PATH=/bin", "FROM_IMAGE=yes"}
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Push uploads img as repo:tag and returns its reference.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref := fmt.Sprintf("%s/%s", r.Host, repoTag)
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if r.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}))
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// AuthJSON is a containers-auth.json document for this registry.
func (r *Registry) AuthJSON(user, password string) []byte {
	return fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, r.Host, b64(user+":"+password))
}
