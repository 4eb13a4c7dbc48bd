// Package service serves the Kata remote hypervisor API (ttrpc service
// hypervisor.Hypervisor) on a unix socket, on top of a sandbox.Manager, and
// maps its errors to ttrpc status codes.
package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerpod/peerpod/api/hypervisor"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/annotations"
	"github.com/peerpod/peerpod/shim/sandbox"
)

// Version is what the Version call answers.
const Version = "peerpod-0.1.0"

// Lifecycle is what the service needs of a sandbox manager.
type Lifecycle interface {
	CreateVM(ctx context.Context, id string, annotations map[string]string, netns string) (string, error)
	StartVM(ctx context.Context, id string) error
	StopVM(ctx context.Context, id string) error
}

// Service implements hypervisor.HypervisorService.
type Service struct {
	lc  Lifecycle
	log *slog.Logger
}

var _ hypervisor.HypervisorService = (*Service)(nil)

// New makes the service over lc.
func New(lc Lifecycle, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{lc: lc, log: log}
}

// CreateVM implements hypervisor.HypervisorService.
func (s *Service) CreateVM(ctx context.Context, req *hypervisor.CreateVMRequest) (*hypervisor.CreateVMResponse, error) {
	path, err := s.lc.CreateVM(ctx, req.GetId(), req.GetAnnotations(), req.GetNetworkNamespacePath())
	if err != nil {
		a := req.GetAnnotations()
		pod := a[annotations.SandboxName]
		if ns := a[annotations.SandboxNamespace]; ns != "" {
			pod = ns + "/" + pod
		}
		return nil, s.status("CreateVM", req.GetId(), pod, err)
	}
	return &hypervisor.CreateVMResponse{AgentSocketPath: path}, nil
}

// StartVM implements hypervisor.HypervisorService.
func (s *Service) StartVM(ctx context.Context, req *hypervisor.StartVMRequest) (*hypervisor.StartVMResponse, error) {
	if err := s.lc.StartVM(ctx, req.GetId()); err != nil {
		return nil, s.status("StartVM", req.GetId(), s.pod(req.GetId()), err)
	}
	return &hypervisor.StartVMResponse{}, nil
}

// StopVM implements hypervisor.HypervisorService.
func (s *Service) StopVM(ctx context.Context, req *hypervisor.StopVMRequest) (*hypervisor.StopVMResponse, error) {
	if err := s.lc.StopVM(ctx, req.GetId()); err != nil {
		return nil, s.status("StopVM", req.GetId(), s.pod(req.GetId()), err)
	}
	return &hypervisor.StopVMResponse{}, nil
}

// Version implements hypervisor.HypervisorService.
func (s *Service) Version(ctx context.Context, req *hypervisor.VersionRequest) (*hypervisor.VersionResponse, error) {
	return &hypervisor.VersionResponse{Version: Version}, nil
}

// Code is the ttrpc status code for a Manager error.
func Code(err error) codes.Code {
	var inv *sandbox.InvalidError
	var te *sandbox.AgentTimeoutError
	switch {
	case errors.As(err, &te):
		return codes.DeadlineExceeded
	case errors.As(err, &inv):
		return codes.InvalidArgument
	case errors.Is(err, sandbox.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, sandbox.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, sandbox.ErrState):
		return codes.FailedPrecondition
	case errors.Is(err, sandbox.ErrLimit):
		return codes.ResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, provider.ErrInvalidConfig):
		return codes.InvalidArgument
	case errors.Is(err, provider.ErrCapacity):
		return codes.ResourceExhausted
	case errors.Is(err, provider.ErrThrottled), errors.Is(err, provider.ErrTransient):
		return codes.Unavailable
	}
	return codes.Internal
}

// PodNamer is implemented by lifecycles that know a sandbox's pod, for logs.
type PodNamer interface {
	PodName(id string) string
}

func (s *Service) pod(id string) string {
	if n, ok := s.lc.(PodNamer); ok {
		return n.PodName(id)
	}
	return ""
}

func (s *Service) status(call, id, pod string, err error) error {
	code := Code(err)
	lvl := slog.LevelWarn
	if code == codes.Internal {
		lvl = slog.LevelError
	}
	s.log.Log(context.Background(), lvl, call+" failed", "sandbox_id", id, "pod", pod, "code", code.String(), "err", err)
	return status.Errorf(code, "%s: %v", call, err)
}

// Listen makes the hypervisor socket at path (mode 0600, its directory
// 0755 if missing), replacing a stale socket left by a previous process.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("hypervisor socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("hypervisor socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("hypervisor socket %s: another process is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("hypervisor socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("hypervisor socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("hypervisor socket %s: %w", path, err)
	}
	return ln, nil
}

// Serve serves svc on ln until ctx ends, then shuts the server down.
func Serve(ctx context.Context, ln net.Listener, svc hypervisor.HypervisorService) error {
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	hypervisor.RegisterHypervisorService(srv, svc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, ttrpc.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("hypervisor server: %w", err)
	case <-ctx.Done():
		srv.Close()
		<-errc
		return nil
	}
}
