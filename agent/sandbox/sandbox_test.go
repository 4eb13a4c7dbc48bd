package sandbox

import (
	"context"
	"errors"
	"testing"

	"github.com/peerpod/peerpod/agent/cgroups"
	pb "github.com/peerpod/peerpod/api/agent"
)

func TestResolvConf(t *testing.T) {
	got := string(resolvConf([]string{"10.0.0.10", "nameserver 1.1.1.1", " ", "search a.svc b.svc", "options ndots:5"}))
	want := "nameserver 10.0.0.10\nnameserver 1.1.1.1\nsearch a.svc b.svc\noptions ndots:5\n"
	if got != want {
		t.Fatalf("resolv.conf =\n%s\nwant\n%s", got, want)
	}
}

func TestImageSource(t *testing.T) {
	img := &pb.Storage{Driver: DriverImageGuestPull, Source: "reg/app:1"}
	vol := &pb.Storage{Driver: DriverLocal, MountPoint: "/run/kata-containers/sandbox/local/v"}
	tests := []struct {
		name     string
		storages []*pb.Storage
		want     string
		extra    int
		wantErr  bool
	}{
		{"image", []*pb.Storage{img}, "reg/app:1", 0, false},
		{"image and a volume", []*pb.Storage{vol, img}, "reg/app:1", 1, false},
		{"none", []*pb.Storage{vol}, "", 0, true},
		{"two images", []*pb.Storage{img, img}, "", 0, true},
		{"no source", []*pb.Storage{{Driver: DriverImageGuestPull}}, "", 0, true},
	}
	for _, tt := range tests {
		src, extra, err := imageSource(tt.storages)
		if (err != nil) != tt.wantErr || src != tt.want || len(extra) != tt.extra {
			t.Errorf("%s: %q %d %v", tt.name, src, len(extra), err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error not classed invalid: %v", tt.name, err)
		}
	}
}

func newTestSandbox(t *testing.T) *Sandbox {
	t.Helper()
	s, err := New(Config{StateDir: t.TempDir(), KataRoot: t.TempDir(), Cgroups: &cgroups.Manager{Root: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadRequests(t *testing.T) {
	s := newTestSandbox(t)
	ctx := context.Background()
	if err := s.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "c"}); !errors.Is(err, ErrPrecondition) {
		t.Errorf("CreateContainer before CreateSandbox: %v", err)
	}
	tests := []struct {
		name string
		req  *pb.CreateSandboxRequest
		want error
	}{
		{"bad id", &pb.CreateSandboxRequest{SandboxId: "../x"}, ErrInvalid},
		{"kernel modules", &pb.CreateSandboxRequest{KernelModules: []*pb.KernelModule{{Name: "x"}}}, ErrInvalid},
		{"storage outside kata root", &pb.CreateSandboxRequest{Storages: []*pb.Storage{{Driver: DriverLocal, MountPoint: "/etc"}}}, ErrInvalid},
		{"unknown driver", &pb.CreateSandboxRequest{Storages: []*pb.Storage{{Driver: "virtio-fs", MountPoint: "/run/kata-containers/x"}}}, ErrInvalid},
	}
	for _, tt := range tests {
		if err := s.Create(ctx, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := s.Create(ctx, &pb.CreateSandboxRequest{Hostname: "h", Storages: []*pb.Storage{{Driver: DriverLocal, MountPoint: "/run/kata-containers/sandbox/local/v", Options: []string{"mode=0750"}}}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../x", "a/b"} {
		if err := s.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id}); !errors.Is(err, ErrInvalid) {
			t.Errorf("container id %q: %v", id, err)
		}
	}
	if err := s.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "c", Storages: []*pb.Storage{{Driver: DriverImageGuestPull, Source: "pause"}}}); err == nil {
		t.Error("pause without a pause bundle succeeded")
	}
	if _, err := s.container("c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed create left the container: %v", err)
	}
	if _, err := s.Wait(ctx, "nope", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait unknown: %v", err)
	}
	if err := s.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &pb.CreateSandboxRequest{}); err != nil {
		t.Fatalf("create after destroy: %v", err)
	}
}
