package tunnel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
)

// The figures of docs/benchmarks.md. Each benchmark measures a baseline (a
// unix socket, or raw TCP loopback) and the tunnel in alternating phases of
// the same run, so that load from other work on the machine falls on both
// alike, and reports each side and their ratio:
//
//	base-ns/op, tunnel-ns/op, tunnel/base   (latency: lower is better)
//	base-MB/s, tunnel-MB/s, tunnel/base     (throughput: higher is better)
//
// b.N counts operations of each side.

// benchTunnel is a tunnel session whose server serves the echo ttrpc
// service on KindAgent streams and a sink on KindNet streams.
func benchTunnel(b testing.TB) *Session {
	b.Helper()
	addr, pki := benchServer(b)
	return dial(b, addr, pki.client)
}

// benchServer serves the benchmarks' kinds and returns its address and
// the PKI of its clients.
func benchServer(b testing.TB) (string, *testPKI) {
	b.Helper()
	pki := newTestPKI(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pki.server.Logger, pki.client.Logger = quiet, quiet
	srv, err := NewServer(pki.server)
	if err != nil {
		b.Fatal(err)
	}
	srv.Handle(KindNet, func(ctx context.Context, c net.Conn, h Header) { sink(c) })
	serveTTRPC(b, newEchoTTRPC(b), srv.Listener(KindAgent))
	return serve(b, srv), pki
}

// benchUnix serves the echo ttrpc service on a unix socket.
func benchUnix(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	serveTTRPC(b, newEchoTTRPC(b), ln)
	return path
}

// dialer opens one connection to the echo service.
type dialer func(ctx context.Context) (net.Conn, error)

// echoDialers returns the baseline (unix socket) and the tunnel dialer.
func echoDialers(b *testing.B) [2]dialer {
	s := benchTunnel(b)
	path := benchUnix(b)
	return [2]dialer{
		func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		func(ctx context.Context) (net.Conn, error) {
			return s.Open(ctx, KindAgent, nil)
		},
	}
}

// paired runs b.N operations of each side, alternating short phases of at
// most phase operations (a few milliseconds each, so that both sides see
// the same machine), and reports both sides and their ratio. run(side, n)
// performs n operations of side 0 (baseline) or 1 (tunnel).
func paired(b *testing.B, phase int, bytesPerOp int64, run func(side, n int)) {
	b.Helper()
	var spent, cpu [2]time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(phase, b.N-done)
		for side := range 2 {
			start, startCPU := time.Now(), cpuTime()
			run(side, n)
			spent[side] += time.Since(start)
			cpu[side] += cpuTime() - startCPU
		}
		done += n
	}
	b.StopTimer()
	// CPU time of the whole process (both ends of the connection) per
	// operation: what the work costs, whatever else runs on the machine.
	b.ReportMetric(float64(cpu[0].Nanoseconds())/float64(b.N), "base-cpu-ns/op")
	b.ReportMetric(float64(cpu[1].Nanoseconds())/float64(b.N), "tunnel-cpu-ns/op")
	if bytesPerOp == 0 {
		base := float64(spent[0].Nanoseconds()) / float64(b.N)
		tun := float64(spent[1].Nanoseconds()) / float64(b.N)
		b.ReportMetric(base, "base-ns/op")
		b.ReportMetric(tun, "tunnel-ns/op")
		b.ReportMetric(tun/base, "tunnel/base")
		return
	}
	mbps := func(d time.Duration) float64 { return float64(bytesPerOp) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(spent[0]), "base-MB/s")
	b.ReportMetric(mbps(spent[1]), "tunnel-MB/s")
	b.ReportMetric(mbps(spent[1])/mbps(spent[0]), "tunnel/base")
}

// cpuTime returns the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var echoPayload = bytes.Repeat([]byte{0xa5}, 1024)

// BenchmarkTTRPCEcho1KiB: one caller, a 1 KiB BytesValue echoed by ttrpc,
// over a unix socket (base) and through a tunnel stream. long-lived reuses
// one connection; conn-per-call opens a connection (a stream) for every
// call, as the Kata runtime does.
func BenchmarkTTRPCEcho1KiB(b *testing.B) {
	d := echoDialers(b)
	ctx := context.Background()
	b.Run("long-lived", func(b *testing.B) {
		var clients [2]*ttrpc.Client
		for side := range 2 {
			conn, err := d[side](ctx)
			if err != nil {
				b.Fatal(err)
			}
			clients[side] = ttrpc.NewClient(conn)
			defer clients[side].Close()
		}
		paired(b, 10, 0, func(side, n int) {
			for range n {
				if err := callEcho(ctx, clients[side], echoPayload); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("conn-per-call", func(b *testing.B) {
		paired(b, 5, 0, func(side, n int) {
			for range n {
				if err := echoOnNewConn(ctx, d[side]); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func echoOnNewConn(ctx context.Context, d dialer) error {
	conn, err := d(ctx)
	if err != nil {
		return err
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	return callEcho(ctx, c, echoPayload)
}

// BenchmarkTTRPCEcho1KiBParallel64: 64 callers at once; ns/op is wall time
// per call, so base-ns/op ÷ tunnel-ns/op is the tunnel's aggregate rate as
// a fraction of the unix socket's.
func BenchmarkTTRPCEcho1KiBParallel64(b *testing.B) {
	const callers = 64
	d := echoDialers(b)
	ctx := context.Background()
	// fanOut runs n calls spread over the callers and fails b on an error.
	fanOut := func(n int, call func(caller int) error) {
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for i := range callers {
			share := n / callers
			if i < n%callers {
				share++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range share {
					if err := call(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.Run("long-lived", func(b *testing.B) {
		var clients [2][callers]*ttrpc.Client
		for side := range 2 {
			for i := range callers {
				conn, err := d[side](ctx)
				if err != nil {
					b.Fatal(err)
				}
				clients[side][i] = ttrpc.NewClient(conn)
				defer clients[side][i].Close()
			}
		}
		paired(b, 4*callers, 0, func(side, n int) {
			fanOut(n, func(i int) error { return callEcho(ctx, clients[side][i], echoPayload) })
		})
	})
	b.Run("conn-per-call", func(b *testing.B) {
		paired(b, 2*callers, 0, func(side, n int) {
			fanOut(n, func(int) error { return echoOnNewConn(ctx, d[side]) })
		})
	})
}

// BenchmarkThroughput1MiB: bytes pushed through one raw TCP loopback
// connection (base) and through one tunnel stream, 1 MiB writes, read with
// io.Copy-style 32 KiB reads by a sink that acknowledges every phase.
func BenchmarkThroughput1MiB(b *testing.B) {
	throughput(b, func(ctx context.Context) (net.Conn, error) { return benchTunnel(b).Open(ctx, KindNet, nil) })
}

// BenchmarkThroughputDirect1MiB is BenchmarkThroughput1MiB with the bytes
// on a direct stream (DialStream: a TLS connection of its own, no yamux)
// instead of a session stream.
func BenchmarkThroughputDirect1MiB(b *testing.B) {
	throughput(b, func(ctx context.Context) (net.Conn, error) {
		addr, pki := benchServer(b)
		return DialStream(ctx, addr, pki.client, KindNet, nil)
	})
}

func throughput(b *testing.B, open func(context.Context) (net.Conn, error)) {
	const chunk = 1 << 20
	const phase = 16 // MiB per phase: enough to fill the 16 MiB window
	buf := bytes.Repeat([]byte{0x5a}, chunk)
	ctx := context.Background()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sink(c)
	}()
	defer wg.Wait()
	defer ln.Close()
	tcp, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer tcp.Close()
	tun, err := open(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tun.Close()

	conns := [2]net.Conn{tcp, tun}
	ack := make([]byte, 1)
	paired(b, phase, chunk, func(side, n int) {
		c := conns[side]
		if _, err := fmt.Fprintf(c, "%08x", n*chunk); err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			b.Fatal(err)
		}
	})
}

// sink reads phases from c: an 8-digit hex byte count, that many bytes in
// 32 KiB reads, then a one-byte acknowledgement.
func sink(c net.Conn) {
	buf := make([]byte, 32<<10)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		var n int64
		if _, err := fmt.Sscanf(string(hdr[:]), "%08x", &n); err != nil {
			return
		}
		if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n), buf); err != nil {
			return
		}
		if _, err := c.Write([]byte{1}); err != nil {
			return
		}
	}
}
