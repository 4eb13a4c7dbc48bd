package podnet_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peerpod/peerpod/test/kataclient"
)

const (
	busybox      = "/bin/busybox"
	runcPath     = "/usr/sbin/runc"
	containerWeb = 8090
	greeting     = "hello from the pod's container"
)

// pauseBundle writes a pause bundle whose process is busybox sleeping.
func pauseBundle(t *testing.T, dir string) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	s := specs.Spec{Version: specs.Version, Root: &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/busybox", "sleep", "2147483647"}, Cwd: "/", Env: []string{"PATH=/bin"}}}
	b, _ := json.Marshal(&s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pushWebImage serves a registry on addr (an address of the VM's host-side
// veth, which the VM reaches) holding a busybox image with /www/index.html,
// and returns the image reference.
func pushWebImage(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
		dir  bool
	}{
		{"bin/", 0o755, nil, true}, {"bin/busybox", 0o755, bb, false},
		{"www/", 0o755, nil, true}, {"www/index.html", 0o644, []byte(greeting + "\n"), false},
		{"tmp/", 0o1777, nil, true}, {"proc/", 0o555, nil, true}, {"sys/", 0o555, nil, true},
		{"dev/", 0o755, nil, true}, {"etc/", 0o755, nil, true},
	} {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if f.dir {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	ref := ln.Addr().String() + "/podnet/web:1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// TestContainer runs the pod the way the Kata runtime does — sandbox,
// pause container, an app container pulled from a registry — and checks
// that the app container has the pod's network: the client reaches its
// HTTP server on the pod IP, and it reaches the client from the pod IP.
func TestContainer(t *testing.T) {
	requireRoot(t)
	for _, p := range []string{busybox, runcPath} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s", p)
		}
	}
	dir := t.TempDir()
	sfx := randHex(4)
	r := newRigWith(t, "tunnel", 1500, rigOptions{cgroups: true, agentArgs: []string{
		"--pause-bundle", pauseBundle(t, filepath.Join(dir, "pause")),
		"--kata-root", filepath.Join(dir, "kata"), "--cgroup-parent", "/podnet-" + sfx, "--runc", runcPath}})
	t.Cleanup(func() { removeCgroups(t, "podnet-"+sfx) })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r.start(ctx)
	if err := r.sb.Start(ctx); err != nil {
		r.fatalf("pod start (CreateSandbox, pause container): %v", err)
	}
	ref := pushWebImage(t, net.JoinHostPort(r.vm.HostIP.String(), "0"))
	const cid = "web"
	ct := kataclient.Container{ID: cid, Image: ref, Args: []string{"/bin/busybox", "httpd", "-f", "-p", fmt.Sprint(containerWeb), "-h", "/www"}}
	if err := r.sb.CreateContainer(ctx, ct); err != nil {
		r.fatalf("CreateContainer: %v", err)
	}
	if err := r.sb.StartContainer(ctx, cid); err != nil {
		r.fatalf("StartContainer: %v", err)
	}
	// Client → container, on the pod IP.
	var out string
	var err error
	for i := 0; i < 50; i++ {
		if out, err = output(ctx, r.inCluster("show", fmt.Sprintf("http://%s:%d/index.html", podIP, containerWeb))); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || strings.TrimSpace(out) != greeting {
		r.fatalf("client → container: %q %v", out, err)
	}
	// Container → client, from the pod IP.
	r.background(r.inCluster("serve", fmt.Sprintf("%s:%d", clientIP, cliPort)))
	eid := "wget-" + sfx
	if err := r.sb.ExecProcess(ctx, cid, eid, []string{"/bin/busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:%d/hello", clientIP, cliPort)}, false); err != nil {
		r.fatalf("exec wget: %v", err)
	}
	b, err := r.sb.ReadAll(ctx, cid, eid, false)
	if err != nil {
		r.fatalf("exec wget: stdout: %v", err)
	}
	if st, err := r.sb.WaitProcess(ctx, cid, eid); err != nil || st != 0 {
		r.fatalf("exec wget: status %d, %v (stdout %q)", st, err, b)
	}
	if !strings.Contains(string(b), " to "+podIP+":") {
		r.fatalf("container → client: %q, want it from %s", b, podIP)
	}
	if err := r.sb.Stop(ctx); err != nil {
		r.fatalf("pod stop: %v", err)
	}
	if hostLeftover(t, r.sb.ID) {
		r.fatalf("device left in the host namespace")
	}
}

// removeCgroups removes the (empty) cgroup directories named name of every
// hierarchy, innermost first.
func removeCgroups(t *testing.T, name string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if d := "/sys/fs/cgroup/" + name; fileExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		var all []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			if err := os.Remove(all[i]); err != nil {
				t.Logf("cgroup %s: %v", all[i], err)
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
