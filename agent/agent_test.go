package agent

import (
	"context"
	"net"
	"testing"

	"github.com/containerd/ttrpc"
	pb "github.com/peerpod/peerpod/api/agent"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type recorder struct {
	calls []string
	deny  bool
}

func (r *recorder) Authorize(_ context.Context, method string, req proto.Message) error {
	r.calls = append(r.calls, method+":"+string(req.ProtoReflect().Descriptor().Name()))
	if r.deny {
		return status.Errorf(codes.PermissionDenied, "%s: denied by rule test", method)
	}
	return nil
}

// serve registers a hand-made grpc.AgentService (two methods) and grpc.Health
// behind the gate and returns a client.
func serve(t *testing.T, a Authorizer, handled *int) *ttrpc.Client {
	t.Helper()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(Gate(a, nil)))
	if err != nil {
		t.Fatal(err)
	}
	method := func(newReq func() proto.Message, resp func() any) ttrpc.Method {
		return func(ctx context.Context, unmarshal func(any) error) (any, error) {
			req := newReq()
			if err := unmarshal(req); err != nil {
				return nil, err
			}
			*handled++
			return resp(), nil
		}
	}
	srv.RegisterService(ServiceName, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"StartContainer": method(func() proto.Message { return &pb.StartContainerRequest{} }, func() any { return &pb.StartContainerRequest{ContainerId: "done"} }),
		"ReadStdout":     method(func() proto.Message { return &pb.ReadStreamRequest{} }, func() any { return &pb.ReadStreamResponse{Data: []byte("secret")} }),
	}})
	srv.RegisterService("grpc.Health", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Check": method(func() proto.Message { return &pb.CheckRequest{} }, func() any { return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING} }),
	}})
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestGate(t *testing.T) {
	tests := []struct {
		name        string
		deny        bool
		method      string
		req, resp   proto.Message
		wantCode    codes.Code
		wantHandled int
		wantCalls   []string
	}{
		{"allowed", false, "StartContainer", &pb.StartContainerRequest{ContainerId: "c"}, &pb.StartContainerRequest{}, codes.OK, 1, []string{"StartContainer:StartContainerRequest"}},
		{"denied", true, "StartContainer", &pb.StartContainerRequest{ContainerId: "c"}, &pb.StartContainerRequest{}, codes.PermissionDenied, 0, []string{"StartContainer:StartContainerRequest"}},
		{"denied read is end of stream", true, "ReadStdout", &pb.ReadStreamRequest{}, &pb.ReadStreamResponse{}, codes.OK, 0, []string{"ReadStdout:ReadStreamRequest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{deny: tt.deny}
			handled := 0
			c := serve(t, rec, &handled)
			err := c.Call(context.Background(), ServiceName, tt.method, tt.req, tt.resp)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("err = %v, want %v", err, tt.wantCode)
			}
			if handled != tt.wantHandled {
				t.Errorf("handler ran %d times, want %d", handled, tt.wantHandled)
			}
			if len(rec.calls) != len(tt.wantCalls) || (len(rec.calls) > 0 && rec.calls[0] != tt.wantCalls[0]) {
				t.Errorf("authorize calls %v, want %v", rec.calls, tt.wantCalls)
			}
			if r, ok := tt.resp.(*pb.ReadStreamResponse); ok && len(r.Data) != 0 {
				t.Errorf("denied read returned %q", r.Data)
			}
		})
	}
	t.Run("health is not gated", func(t *testing.T) {
		rec := &recorder{deny: true}
		handled := 0
		c := serve(t, rec, &handled)
		var resp pb.HealthCheckResponse
		if err := c.Call(context.Background(), "grpc.Health", "Check", &pb.CheckRequest{}, &resp); err != nil || resp.Status != pb.HealthCheckResponse_SERVING {
			t.Fatalf("Check: %v", err)
		}
		if len(rec.calls) != 0 {
			t.Fatalf("health was authorized: %v", rec.calls)
		}
	})
	t.Run("unregistered method is Unimplemented", func(t *testing.T) {
		handled := 0
		c := serve(t, AllowAll{}, &handled)
		err := c.Call(context.Background(), ServiceName, "PauseContainer", &pb.StartContainerRequest{}, &pb.StartContainerRequest{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("err = %v", err)
		}
	})
}
