package api_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/agent/types"
	"github.com/peerpod/peerpod/api/hypervisor"
)

// recorder remembers which wire method a server handler was reached through
// and answers with the response the test prepared for it.
type recorder struct {
	mu    sync.Mutex
	calls []recorded
	resp  map[string]proto.Message // by "service/method"
}

type recorded struct {
	method string // "service/method"
	req    proto.Message
}

func (r *recorder) handle(method string, req proto.Message) (proto.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, recorded{method, req})
	resp, ok := r.resp[method]
	if !ok {
		return nil, fmt.Errorf("no response prepared for %s", method)
	}
	return resp, nil
}

func (r *recorder) prepare(method string, resp proto.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resp[method] = resp
}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// answer adapts recorder.handle to a typed generated handler.
func answer[Resp proto.Message](r *recorder, method string, req proto.Message) (Resp, error) {
	resp, err := r.handle(method, req)
	if err != nil {
		var zero Resp
		return zero, err
	}
	typed, ok := resp.(Resp)
	if !ok {
		var zero Resp
		return zero, fmt.Errorf("%s: prepared response is %T", method, resp)
	}
	return typed, nil
}

type agentServer struct{ r *recorder }

var _ agent.AgentServiceService = agentServer{}

const as = "grpc.AgentService/"

func (s agentServer) CreateContainer(_ context.Context, req *agent.CreateContainerRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"CreateContainer", req)
}
func (s agentServer) StartContainer(_ context.Context, req *agent.StartContainerRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"StartContainer", req)
}
func (s agentServer) RemoveContainer(_ context.Context, req *agent.RemoveContainerRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"RemoveContainer", req)
}
func (s agentServer) ExecProcess(_ context.Context, req *agent.ExecProcessRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"ExecProcess", req)
}
func (s agentServer) SignalProcess(_ context.Context, req *agent.SignalProcessRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"SignalProcess", req)
}
func (s agentServer) WaitProcess(_ context.Context, req *agent.WaitProcessRequest) (*agent.WaitProcessResponse, error) {
	return answer[*agent.WaitProcessResponse](s.r, as+"WaitProcess", req)
}
func (s agentServer) UpdateContainer(_ context.Context, req *agent.UpdateContainerRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"UpdateContainer", req)
}
func (s agentServer) StatsContainer(_ context.Context, req *agent.StatsContainerRequest) (*agent.StatsContainerResponse, error) {
	return answer[*agent.StatsContainerResponse](s.r, as+"StatsContainer", req)
}
func (s agentServer) RemoveStaleVirtiofsShareMounts(_ context.Context, req *agent.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"RemoveStaleVirtiofsShareMounts", req)
}
func (s agentServer) GetDiagnosticData(_ context.Context, req *agent.GetDiagnosticDataRequest) (*agent.GetDiagnosticDataResponse, error) {
	return answer[*agent.GetDiagnosticDataResponse](s.r, as+"GetDiagnosticData", req)
}
func (s agentServer) WriteStdin(_ context.Context, req *agent.WriteStreamRequest) (*agent.WriteStreamResponse, error) {
	return answer[*agent.WriteStreamResponse](s.r, as+"WriteStdin", req)
}
func (s agentServer) ReadStdout(_ context.Context, req *agent.ReadStreamRequest) (*agent.ReadStreamResponse, error) {
	return answer[*agent.ReadStreamResponse](s.r, as+"ReadStdout", req)
}
func (s agentServer) ReadStderr(_ context.Context, req *agent.ReadStreamRequest) (*agent.ReadStreamResponse, error) {
	return answer[*agent.ReadStreamResponse](s.r, as+"ReadStderr", req)
}
func (s agentServer) CloseStdin(_ context.Context, req *agent.CloseStdinRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"CloseStdin", req)
}
func (s agentServer) TtyWinResize(_ context.Context, req *agent.TtyWinResizeRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"TtyWinResize", req)
}
func (s agentServer) UpdateInterface(_ context.Context, req *agent.UpdateInterfaceRequest) (*types.Interface, error) {
	return answer[*types.Interface](s.r, as+"UpdateInterface", req)
}
func (s agentServer) UpdateRoutes(_ context.Context, req *agent.UpdateRoutesRequest) (*agent.Routes, error) {
	return answer[*agent.Routes](s.r, as+"UpdateRoutes", req)
}
func (s agentServer) ListInterfaces(_ context.Context, req *agent.ListInterfacesRequest) (*agent.Interfaces, error) {
	return answer[*agent.Interfaces](s.r, as+"ListInterfaces", req)
}
func (s agentServer) ListRoutes(_ context.Context, req *agent.ListRoutesRequest) (*agent.Routes, error) {
	return answer[*agent.Routes](s.r, as+"ListRoutes", req)
}
func (s agentServer) AddARPNeighbors(_ context.Context, req *agent.AddARPNeighborsRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"AddARPNeighbors", req)
}
func (s agentServer) CreateSandbox(_ context.Context, req *agent.CreateSandboxRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"CreateSandbox", req)
}
func (s agentServer) DestroySandbox(_ context.Context, req *agent.DestroySandboxRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"DestroySandbox", req)
}
func (s agentServer) GetGuestDetails(_ context.Context, req *agent.GuestDetailsRequest) (*agent.GuestDetailsResponse, error) {
	return answer[*agent.GuestDetailsResponse](s.r, as+"GetGuestDetails", req)
}
func (s agentServer) CopyFile(_ context.Context, req *agent.CopyFileRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"CopyFile", req)
}
func (s agentServer) GetOOMEvent(_ context.Context, req *agent.GetOOMEventRequest) (*agent.OOMEvent, error) {
	return answer[*agent.OOMEvent](s.r, as+"GetOOMEvent", req)
}
func (s agentServer) SetPolicy(_ context.Context, req *agent.SetPolicyRequest) (*emptypb.Empty, error) {
	return answer[*emptypb.Empty](s.r, as+"SetPolicy", req)
}

type healthServer struct{ r *recorder }

var _ agent.HealthService = healthServer{}

func (s healthServer) Check(_ context.Context, req *agent.CheckRequest) (*agent.HealthCheckResponse, error) {
	return answer[*agent.HealthCheckResponse](s.r, "grpc.Health/Check", req)
}
func (s healthServer) Version(_ context.Context, req *agent.CheckRequest) (*agent.VersionCheckResponse, error) {
	return answer[*agent.VersionCheckResponse](s.r, "grpc.Health/Version", req)
}

type hypervisorServer struct{ r *recorder }

var _ hypervisor.HypervisorService = hypervisorServer{}

func (s hypervisorServer) CreateVM(_ context.Context, req *hypervisor.CreateVMRequest) (*hypervisor.CreateVMResponse, error) {
	return answer[*hypervisor.CreateVMResponse](s.r, "hypervisor.Hypervisor/CreateVM", req)
}
func (s hypervisorServer) StartVM(_ context.Context, req *hypervisor.StartVMRequest) (*hypervisor.StartVMResponse, error) {
	return answer[*hypervisor.StartVMResponse](s.r, "hypervisor.Hypervisor/StartVM", req)
}
func (s hypervisorServer) StopVM(_ context.Context, req *hypervisor.StopVMRequest) (*hypervisor.StopVMResponse, error) {
	return answer[*hypervisor.StopVMResponse](s.r, "hypervisor.Hypervisor/StopVM", req)
}
func (s hypervisorServer) Version(_ context.Context, req *hypervisor.VersionRequest) (*hypervisor.VersionResponse, error) {
	return answer[*hypervisor.VersionResponse](s.r, "hypervisor.Hypervisor/Version", req)
}

// serve runs srv on a fresh unix socket and returns a client connected to it.
func serve(t *testing.T, srv *ttrpc.Server) *ttrpc.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ttrpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen %s: %v", sock, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() {
		_ = client.Close()
		_ = srv.Close()
		if err := <-done; err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return client
}

// sample builds a message of the named type with every field set, from the
// Kata table.
func sample(t *testing.T, specs map[string][]fieldSpec, name string) proto.Message {
	t.Helper()
	if name == "google.protobuf.Empty" {
		return &emptypb.Empty{}
	}
	return toProto(t, specs, name, expected(specs, name)).Interface()
}

func newOf(t *testing.T, name string) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatalf("no generated type %s: %v", name, err)
	}
	return mt.New().Interface()
}

type wireMethod struct {
	service, method, req, resp string
}

func wireMethods() []wireMethod {
	var out []wireMethod
	for _, svc := range slices.Sorted(maps.Keys(kataServices)) {
		for _, m := range slices.Sorted(maps.Keys(kataServices[svc])) {
			rr := kataServices[svc][m]
			out = append(out, wireMethod{svc, m, rr[0], rr[1]})
		}
	}
	return out
}

// TestServerWireNames registers the generated services on a ttrpc server and
// calls every method by its raw Kata service and method strings, as the Kata
// shim does.
func TestServerWireNames(t *testing.T) {
	specs := kataSpecs(t)
	rec := &recorder{resp: map[string]proto.Message{}}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	agent.RegisterAgentServiceService(srv, agentServer{rec})
	agent.RegisterHealthService(srv, healthServer{rec})
	hypervisor.RegisterHypervisorService(srv, hypervisorServer{rec})
	client := serve(t, srv)

	for _, wm := range wireMethods() {
		t.Run(wm.service+"/"+wm.method, func(t *testing.T) {
			key := wm.service + "/" + wm.method
			req, want := sample(t, specs, wm.req), sample(t, specs, wm.resp)
			rec.prepare(key, want)
			got := newOf(t, wm.resp)
			if err := client.Call(t.Context(), wm.service, wm.method, req, got); err != nil {
				t.Fatalf("call %s: %v", key, err)
			}
			calls := rec.take()
			if len(calls) != 1 || calls[0].method != key {
				t.Fatalf("calling %s reached %v", key, calls)
			}
			if !proto.Equal(calls[0].req, req) {
				t.Errorf("%s: server got request %v, sent %v", key, calls[0].req, req)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s: client got response %v, server sent %v", key, got, want)
			}
		})
	}

	// Calls outside the set are answered Unimplemented by ttrpc itself.
	for _, c := range []struct{ service, method string }{
		{"grpc.AgentService", "UpdateEphemeralMounts"},
		{"grpc.AgentService", "PauseContainer"},
		{"grpc.AgentService", "/grpc.AgentService/CreateContainer"},
		{"AgentService", "CreateContainer"},
		{"grpc.Hypervisor", "CreateVM"},
	} {
		err := client.Call(t.Context(), c.service, c.method, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("call %s %s: got %v, want Unimplemented", c.service, c.method, err)
		}
	}
	if calls := rec.take(); len(calls) != 0 {
		t.Errorf("unknown names reached handlers: %v", calls)
	}
}

// TestClientWireNames serves every Kata method by its raw names and calls it
// through the generated clients, so the clients must use the same names.
func TestClientWireNames(t *testing.T) {
	specs := kataSpecs(t)
	rec := &recorder{resp: map[string]proto.Message{}}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	for svc, methods := range kataServices {
		desc := &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{}}
		for m, rr := range methods {
			desc.Methods[m] = func(_ context.Context, unmarshal func(any) error) (any, error) {
				mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(rr[0]))
				if err != nil {
					return nil, err
				}
				req := mt.New().Interface()
				if err := unmarshal(req); err != nil {
					return nil, err
				}
				return rec.handle(svc+"/"+m, req)
			}
		}
		srv.RegisterService(svc, desc)
	}
	client := serve(t, srv)
	clients := map[string]any{
		"grpc.AgentService":     agent.NewAgentServiceClient(client),
		"grpc.Health":           agent.NewHealthClient(client),
		"hypervisor.Hypervisor": hypervisor.NewHypervisorClient(client),
	}

	for _, wm := range wireMethods() {
		t.Run(wm.service+"/"+wm.method, func(t *testing.T) {
			key := wm.service + "/" + wm.method
			req, want := sample(t, specs, wm.req), sample(t, specs, wm.resp)
			rec.prepare(key, want)
			fn := reflect.ValueOf(clients[wm.service]).MethodByName(wm.method)
			if !fn.IsValid() {
				t.Fatalf("generated %s client has no method %s", wm.service, wm.method)
			}
			out := fn.Call([]reflect.Value{reflect.ValueOf(t.Context()), reflect.ValueOf(req)})
			if err, _ := out[1].Interface().(error); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			calls := rec.take()
			if len(calls) != 1 || calls[0].method != key || !proto.Equal(calls[0].req, req) {
				t.Fatalf("client %s reached %v", key, calls)
			}
			if got := out[0].Interface().(proto.Message); !proto.Equal(got, want) {
				t.Errorf("%s: got response %v, want %v", key, got, want)
			}
		})
	}
}

// TestServiceDescriptors checks the services in our generated files: exactly
// Kata's names, and for each method Kata's request and response types.
func TestServiceDescriptors(t *testing.T) {
	got := map[string]map[string][2]string{}
	for _, fd := range ourFiles {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			methods := map[string][2]string{}
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				if md.IsStreamingClient() || md.IsStreamingServer() {
					t.Errorf("%s: streaming, Kata's is unary", md.FullName())
				}
				methods[string(md.Name())] = [2]string{string(md.Input().FullName()), string(md.Output().FullName())}
			}
			got[string(sd.FullName())] = methods
		}
	}
	if !reflect.DeepEqual(got, kataServices) {
		t.Errorf("services:\n got %v\nwant %v", got, kataServices)
	}
}
