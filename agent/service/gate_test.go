package service_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/agent/internal/agenttest"
	pb "github.com/peerpod/peerpod/api/agent"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// countingAuthorizer records every call and denies the methods in deny.
type countingAuthorizer struct {
	mu     sync.Mutex
	calls  map[string]int
	types  map[string]string
	deny   map[string]bool
	policy string
}

func (c *countingAuthorizer) Authorize(_ context.Context, method string, req proto.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
	c.types[method] = string(req.ProtoReflect().Descriptor().Name())
	if c.deny[method] {
		return status.Errorf(codes.PermissionDenied, "%s denied by test rule", method)
	}
	return nil
}

func (c *countingAuthorizer) SetPolicy(_ context.Context, rego string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.policy = rego
	return nil
}

func agentMethods(t *testing.T) []protoreflect.MethodDescriptor {
	t.Helper()
	sd := pb.File_api_agent_agent_proto.Services().ByName("AgentService")
	if sd == nil {
		t.Fatal("no AgentService in the descriptor")
	}
	var out []protoreflect.MethodDescriptor
	for i := 0; i < sd.Methods().Len(); i++ {
		out = append(out, sd.Methods().Get(i))
	}
	return out
}

func newMsg(t *testing.T, name protoreflect.FullName) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}

// TestGateAuthorizesEveryMethodOnce calls every AgentService method and
// checks the Authorizer saw each exactly once, with the decoded request.
func TestGateAuthorizesEveryMethodOnce(t *testing.T) {
	auth := &countingAuthorizer{calls: map[string]int{}, types: map[string]string{}}
	a := agenttest.Start(t, agenttest.Options{Authorizer: auth})
	methods := agentMethods(t)
	for _, m := range methods {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req := newMsg(t, m.Input().FullName())
		if m.Name() == "SetPolicy" {
			req = &pb.SetPolicyRequest{Policy: "package agent_policy"}
		}
		_ = a.Agent(ctx, string(m.Name()), req, newMsg(t, m.Output().FullName()))
		cancel()
	}
	for _, m := range methods {
		name := string(m.Name())
		if got := auth.calls[name]; got != 1 {
			t.Errorf("%s authorized %d times, want 1", name, got)
		}
		if got := auth.types[name]; got != string(m.Input().Name()) {
			t.Errorf("%s authorized with a %s, want %s", name, got, m.Input().Name())
		}
	}
	if auth.policy != "package agent_policy" || a.Service.Policy() != "package agent_policy" {
		t.Errorf("SetPolicy did not reach the authorizer: %q", auth.policy)
	}
	if len(methods) < 21 {
		t.Errorf("only %d methods in AgentService", len(methods))
	}
}

func TestGateDenials(t *testing.T) {
	auth := &countingAuthorizer{calls: map[string]int{}, types: map[string]string{},
		deny: map[string]bool{"CreateSandbox": true, "ReadStdout": true, "ReadStderr": true}}
	a := agenttest.Start(t, agenttest.Options{Authorizer: auth})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := a.Agent(ctx, "CreateSandbox", &pb.CreateSandboxRequest{Hostname: "x"}, &pb.ReadStreamResponse{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("denied CreateSandbox: %v", err)
	}
	if a.Sandbox.CgroupPath() != "" {
		t.Fatal("a denied CreateSandbox ran")
	}
	for _, m := range []string{"ReadStdout", "ReadStderr"} {
		var r pb.ReadStreamResponse
		if err := a.Agent(ctx, m, &pb.ReadStreamRequest{ContainerId: "c"}, &r); err != nil || len(r.Data) != 0 {
			t.Fatalf("denied %s: %v %q, want empty data", m, err, r.Data)
		}
	}
	var hc pb.HealthCheckResponse
	if err := a.Call(ctx, "grpc.Health", "Check", &pb.CheckRequest{}, &hc); err != nil {
		t.Fatalf("Health.Check: %v", err)
	}
}
