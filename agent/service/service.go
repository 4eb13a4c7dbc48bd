// Package service serves the Kata agent API (grpc.AgentService and
// grpc.Health over ttrpc) on top of the sandbox, behind the authorization gate.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"

	"github.com/containerd/ttrpc"
	"github.com/peerpod/peerpod/agent"
	"github.com/peerpod/peerpod/agent/copyfile"
	"github.com/peerpod/peerpod/agent/runc"
	"github.com/peerpod/peerpod/agent/sandbox"
	pb "github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/agent/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Version is reported by GetGuestDetails and Health.Version.
const Version = "peerpod-0.1"

// Service implements pb.AgentServiceService and pb.HealthService.
type Service struct {
	sb   *sandbox.Sandbox
	auth agent.Authorizer
	log  *slog.Logger

	mu     sync.Mutex
	policy string // the last policy set, kept when the Authorizer does not take policies
}

// New serves sb; auth is consulted by the gate (see NewServer).
func New(sb *sandbox.Sandbox, auth agent.Authorizer, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{sb: sb, auth: auth, log: log}
}

// NewServer makes a ttrpc server with both services registered behind the gate.
func (s *Service) NewServer() (*ttrpc.Server, error) {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(agent.Gate(s.auth, s.log)))
	if err != nil {
		return nil, fmt.Errorf("ttrpc server: %w", err)
	}
	pb.RegisterAgentServiceService(srv, s)
	pb.RegisterHealthService(srv, s)
	return srv, nil
}

// Policy is the last policy SetPolicy stored.
func (s *Service) Policy() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// toStatus turns an error into a ttrpc status with the class's code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, runc.ErrNotExist):
		code = codes.NotFound
	case errors.Is(err, sandbox.ErrAlreadyExists):
		code = codes.AlreadyExists
	case errors.Is(err, sandbox.ErrInvalid), errors.Is(err, copyfile.ErrOutside):
		code = codes.InvalidArgument
	case errors.Is(err, sandbox.ErrPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

var empty = &emptypb.Empty{}

func unimplemented(method string) error {
	return status.Errorf(codes.Unimplemented, "%s is not implemented by the peerpod agent", method)
}

// Health.

// Check answers SERVING.
func (s *Service) Check(context.Context, *pb.CheckRequest) (*pb.HealthCheckResponse, error) {
	return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
}

// Version reports the agent's version.
func (s *Service) Version(context.Context, *pb.CheckRequest) (*pb.VersionCheckResponse, error) {
	return &pb.VersionCheckResponse{AgentVersion: Version, GrpcVersion: Version}, nil
}

// Sandbox.

// CreateSandbox sets the sandbox up.
func (s *Service) CreateSandbox(ctx context.Context, r *pb.CreateSandboxRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.Create(ctx, r))
}

// DestroySandbox tears it down.
func (s *Service) DestroySandbox(ctx context.Context, _ *pb.DestroySandboxRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.Destroy(ctx))
}

// GetGuestDetails describes the agent.
func (s *Service) GetGuestDetails(_ context.Context, r *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	return s.sb.GuestDetails(r, Version), nil
}

// SetPolicy hands the policy to the Authorizer when it takes policies, and keeps it.
func (s *Service) SetPolicy(ctx context.Context, r *pb.SetPolicyRequest) (*emptypb.Empty, error) {
	if ps, ok := s.auth.(agent.PolicySetter); ok {
		if err := ps.SetPolicy(ctx, r.Policy); err != nil {
			return nil, toStatus(fmt.Errorf("set policy: %w: %w", err, sandbox.ErrInvalid))
		}
	}
	s.mu.Lock()
	s.policy = r.Policy
	s.mu.Unlock()
	return empty, nil
}

// CopyFile writes one chunk, directory or symlink under the shared directory.
func (s *Service) CopyFile(_ context.Context, r *pb.CopyFileRequest) (*emptypb.Empty, error) {
	err := s.sb.Shared().Apply(&copyfile.Request{
		Path: r.Path, FileSize: r.FileSize, FileMode: r.FileMode, DirMode: r.DirMode,
		UID: r.Uid, GID: r.Gid, Offset: r.Offset, Data: r.Data,
	})
	if err != nil && !errors.Is(err, copyfile.ErrOutside) {
		err = fmt.Errorf("%w: %w", err, sandbox.ErrInvalid)
	}
	return empty, toStatus(err)
}

// GetOOMEvent waits for the next OOM kill.
func (s *Service) GetOOMEvent(ctx context.Context, _ *pb.GetOOMEventRequest) (*pb.OOMEvent, error) {
	id, err := s.sb.OOMEvent(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.OOMEvent{ContainerId: id}, nil
}

// RemoveStaleVirtiofsShareMounts has nothing to do: the pod VM shares no filesystem with the node.
func (s *Service) RemoveStaleVirtiofsShareMounts(context.Context, *pb.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	return empty, nil
}

// GetDiagnosticData returns a container's termination log.
func (s *Service) GetDiagnosticData(_ context.Context, r *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	if r.LogType != "termination_log" {
		return nil, status.Errorf(codes.InvalidArgument, "diagnostic data %q is not supported (want termination_log)", r.LogType)
	}
	data, err := s.sb.TerminationLog(r.ContainerId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetDiagnosticDataResponse{Data: data}, nil
}

// Containers.

// CreateContainer pulls the image and creates the container.
func (s *Service) CreateContainer(ctx context.Context, r *pb.CreateContainerRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.CreateContainer(ctx, r))
}

// StartContainer starts it.
func (s *Service) StartContainer(ctx context.Context, r *pb.StartContainerRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.StartContainer(ctx, r.ContainerId))
}

// RemoveContainer deletes it.
func (s *Service) RemoveContainer(ctx context.Context, r *pb.RemoveContainerRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.RemoveContainer(ctx, r.ContainerId, r.Timeout))
}

// ExecProcess starts a process in a container.
func (s *Service) ExecProcess(ctx context.Context, r *pb.ExecProcessRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.Exec(ctx, r))
}

// SignalProcess signals a process, or every process of the container for exec_id "".
func (s *Service) SignalProcess(ctx context.Context, r *pb.SignalProcessRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.Signal(ctx, r.ContainerId, r.ExecId, syscall.Signal(r.Signal)))
}

// WaitProcess waits for a process's exit status.
func (s *Service) WaitProcess(ctx context.Context, r *pb.WaitProcessRequest) (*pb.WaitProcessResponse, error) {
	st, err := s.sb.Wait(ctx, r.ContainerId, r.ExecId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.WaitProcessResponse{Status: st}, nil
}

// StatsContainer reads a container's cgroup statistics.
func (s *Service) StatsContainer(_ context.Context, r *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error) {
	st, err := s.sb.Stats(r.ContainerId)
	return st, toStatus(err)
}

// Stdio.

// ReadStdout reads process output; empty data is end of stream.
func (s *Service) ReadStdout(ctx context.Context, r *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	b, err := s.sb.ReadOutput(ctx, r.ContainerId, r.ExecId, false, r.Len)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReadStreamResponse{Data: b}, nil
}

// ReadStderr reads process error output; empty data is end of stream.
func (s *Service) ReadStderr(ctx context.Context, r *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	b, err := s.sb.ReadOutput(ctx, r.ContainerId, r.ExecId, true, r.Len)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ReadStreamResponse{Data: b}, nil
}

// WriteStdin writes to a process's stdin.
func (s *Service) WriteStdin(ctx context.Context, r *pb.WriteStreamRequest) (*pb.WriteStreamResponse, error) {
	n, err := s.sb.WriteStdin(ctx, r.ContainerId, r.ExecId, r.Data)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.WriteStreamResponse{Len: uint32(n)}, nil
}

// CloseStdin closes a process's stdin.
func (s *Service) CloseStdin(_ context.Context, r *pb.CloseStdinRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.CloseStdin(r.ContainerId, r.ExecId))
}

// TtyWinResize resizes a TTY process's window.
func (s *Service) TtyWinResize(_ context.Context, r *pb.TtyWinResizeRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.ResizeTTY(r.ContainerId, r.ExecId, r.Row, r.Column))
}

// Not implemented: the remote hypervisor path never calls these (PROTOCOLS.md §1.4);
// the node configures the VM's network itself.

// UpdateContainer applies new resource limits (in-place resize).
func (s *Service) UpdateContainer(ctx context.Context, r *pb.UpdateContainerRequest) (*emptypb.Empty, error) {
	return empty, toStatus(s.sb.UpdateContainer(ctx, r.ContainerId, r.Resources))
}

// UpdateInterface is not implemented.
func (s *Service) UpdateInterface(context.Context, *pb.UpdateInterfaceRequest) (*types.Interface, error) {
	return nil, unimplemented("UpdateInterface")
}

// UpdateRoutes is not implemented.
func (s *Service) UpdateRoutes(context.Context, *pb.UpdateRoutesRequest) (*pb.Routes, error) {
	return nil, unimplemented("UpdateRoutes")
}

// ListInterfaces is not implemented.
func (s *Service) ListInterfaces(context.Context, *pb.ListInterfacesRequest) (*pb.Interfaces, error) {
	return nil, unimplemented("ListInterfaces")
}

// ListRoutes is not implemented.
func (s *Service) ListRoutes(context.Context, *pb.ListRoutesRequest) (*pb.Routes, error) {
	return nil, unimplemented("ListRoutes")
}

// AddARPNeighbors is not implemented.
func (s *Service) AddARPNeighbors(context.Context, *pb.AddARPNeighborsRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("AddARPNeighbors")
}
