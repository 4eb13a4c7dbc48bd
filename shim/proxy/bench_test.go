package proxy

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echoServer serves a ttrpc method that returns its 1 KiB request, on a
// unix socket; it stands in for the agent.
func echoServer(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	srv.RegisterService("bench.Echo", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var v wrapperspb.BytesValue
			if err := unmarshal(&v); err != nil {
				return nil, err
			}
			return &v, nil
		},
	}})
	go srv.Serve(context.Background(), ln)
	b.Cleanup(func() { srv.Close() })
	return path
}

func call(b *testing.B, c *ttrpc.Client, payload []byte) {
	var out wrapperspb.BytesValue
	if err := c.Call(context.Background(), "bench.Echo", "Echo", &wrapperspb.BytesValue{Value: payload}, &out); err != nil {
		b.Fatal(err)
	}
	if len(out.Value) != len(payload) {
		b.Fatalf("echo returned %d bytes", len(out.Value))
	}
}

func dialT(b *testing.B, path string) net.Conn {
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// targets returns the direct socket and a proxy socket in front of it.
func targets(b *testing.B) (direct, proxied string) {
	direct = echoServer(b)
	p, err := Listen(filepath.Join(b.TempDir(), "agent.ttrpc"), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", direct)
	}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return direct, p.Path()
}

// BenchmarkEcho1KiB: a 1 KiB ttrpc echo on one long-lived connection,
// straight to the server ("direct") and through the agent-socket proxy.
func BenchmarkEcho1KiB(b *testing.B) {
	direct, proxied := targets(b)
	payload := make([]byte, 1024)
	for _, tc := range []struct{ name, path string }{{"direct", direct}, {"proxy", proxied}} {
		b.Run(tc.name, func(b *testing.B) {
			c := ttrpc.NewClient(dialT(b, tc.path))
			defer c.Close()
			b.ReportAllocs()
			for b.Loop() {
				call(b, c, payload)
			}
		})
	}
}

// BenchmarkEcho1KiBNewConn: the same with a new connection per call, as
// the Kata runtime does.
func BenchmarkEcho1KiBNewConn(b *testing.B) {
	direct, proxied := targets(b)
	payload := make([]byte, 1024)
	for _, tc := range []struct{ name, path string }{{"direct", direct}, {"proxy", proxied}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := ttrpc.NewClient(dialT(b, tc.path))
				call(b, c, payload)
				c.Close()
			}
		})
	}
}
