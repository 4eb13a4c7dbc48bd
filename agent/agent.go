// Package agent is the Kata agent API of the pod VM: the authorization gate
// every request passes through, and (in its subpackages) the service that
// runs the pod's containers with runc from images pulled inside the VM.
package agent

import (
	"context"
	"log/slog"
	"strings"

	"github.com/containerd/ttrpc"
	pb "github.com/peerpod/peerpod/api/agent"
	"google.golang.org/protobuf/proto"
)

// Authorizer decides whether one agent request may be served. method is the RPC name
// ("CreateContainer"); req is the decoded request. A denial is a ttrpc status error with
// codes.PermissionDenied naming the request and rule.
type Authorizer interface {
	Authorize(ctx context.Context, method string, req proto.Message) error
}

// PolicySetter is implemented by an Authorizer that takes policies from SetPolicy requests.
type PolicySetter interface {
	SetPolicy(ctx context.Context, rego string) error
}

// AllowAll is the Authorizer that serves every request. It is for tests and
// for development (podvm-agent --dev-allow-all-policy); it enforces nothing.
type AllowAll struct{}

// Authorize allows req.
func (AllowAll) Authorize(context.Context, string, proto.Message) error { return nil }

// ServiceName is the ttrpc service the gate authorizes.
const ServiceName = "grpc.AgentService"

// Gate returns the ttrpc unary server interceptor that authorizes every
// grpc.AgentService request exactly once, after it is decoded and before its
// handler runs. A denied ReadStdout/ReadStderr answers empty data (end of
// stream) instead of an error, as the Kata runtime expects. grpc.Health is
// not gated, like upstream Kata's agent: liveness carries no pod data.
func Gate(a Authorizer, log *slog.Logger) ttrpc.UnaryServerInterceptor {
	if log == nil {
		log = slog.Default()
	}
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
		service, method := splitMethod(info.FullMethod)
		if service != ServiceName {
			return m(ctx, unmarshal)
		}
		var denied error
		authorized := false
		gated := func(v any) error {
			if err := unmarshal(v); err != nil {
				return err
			}
			if authorized {
				return nil // a handler decodes once; never authorize twice
			}
			authorized = true
			msg, ok := v.(proto.Message)
			if !ok {
				return denyf(method, "request is not a protobuf message")
			}
			if err := a.Authorize(ctx, method, msg); err != nil {
				denied = err
				return err
			}
			return nil
		}
		resp, err := m(ctx, gated)
		if denied != nil {
			log.Warn("agent request denied", "method", method, "err", denied)
			if method == "ReadStdout" || method == "ReadStderr" {
				return &pb.ReadStreamResponse{}, nil
			}
		}
		return resp, err
	}
}

// splitMethod splits "/grpc.AgentService/CreateContainer".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	service, method, _ = strings.Cut(full, "/")
	return service, method
}
