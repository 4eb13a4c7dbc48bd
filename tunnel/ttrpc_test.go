package tunnel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echoService and echoMethod name a ttrpc service registered by hand.
const (
	echoService = "peerpod.test.Echo"
	echoMethod  = "Echo"
)

// newEchoTTRPC returns a ttrpc server whose Echo method returns its
// BytesValue request.
func newEchoTTRPC(t testing.TB) *ttrpc.Server {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(echoService, &ttrpc.ServiceDesc{
		Methods: map[string]ttrpc.Method{
			echoMethod: func(ctx context.Context, unmarshal func(any) error) (any, error) {
				var req wrapperspb.BytesValue
				if err := unmarshal(&req); err != nil {
					return nil, err
				}
				return &req, nil
			},
		},
	})
	return srv
}

// serveTTRPC serves srv on ln until the test ends.
func serveTTRPC(t testing.TB, srv *ttrpc.Server, ln net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil && !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("ttrpc Serve: %v", err)
		}
	})
}

func callEcho(ctx context.Context, c *ttrpc.Client, payload []byte) error {
	var resp wrapperspb.BytesValue
	if err := c.Call(ctx, echoService, echoMethod, wrapperspb.Bytes(payload), &resp); err != nil {
		return err
	}
	if !bytes.Equal(resp.Value, payload) {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestTTRPCOverListener(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	serveTTRPC(t, newEchoTTRPC(t), srv.Listener(KindAgent))
	s := dial(t, serve(t, srv), pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	payload := bytes.Repeat([]byte{7}, 1024)
	// One connection per request, as the Kata runtime does.
	for range 3 {
		conn, err := s.Open(ctx, KindAgent, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := ttrpc.NewClient(conn)
		if err := callEcho(ctx, c, payload); err != nil {
			t.Fatalf("echo on a new stream: %v", err)
		}
		_ = c.Close()
	}
	// One long-lived connection.
	conn, err := s.Open(ctx, KindAgent, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	for range 3 {
		if err := callEcho(ctx, c, payload); err != nil {
			t.Fatalf("echo on a long-lived stream: %v", err)
		}
	}
}
