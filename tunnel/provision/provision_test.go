package provision

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/shim/tlsca"
)

type fixture struct {
	ca   *tlsca.CA
	boot *userdata.Config
	ln   net.Listener
	addr string
	got  chan result
}

type result struct {
	cfg *userdata.Config
	ln  net.Listener
	err error
}

func start(t *testing.T) *fixture {
	t.Helper()
	ca, err := tlsca.LoadOrCreate(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fixture{ca: ca, ln: ln, addr: ln.Addr().String(), got: make(chan result, 1),
		boot: &userdata.Config{Version: userdata.Version, Warm: true, VMName: "podvm-warm-1",
			TunnelCA: string(ca.CertPEM()), Attester: userdata.AttesterFake}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		cfg, tln, err := Accept(ctx, ln, f.boot, nil)
		f.got <- result{cfg, tln, err}
	}()
	return f
}

func (f *fixture) pod(t *testing.T, mod func(*userdata.Config)) []byte {
	t.Helper()
	c := *f.boot
	c.Warm, c.SandboxID = false, "sandbox-1"
	c.Initdata = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
	if mod != nil {
		mod(&c)
	}
	b, err := userdata.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestProvisionOnce(t *testing.T) {
	f := start(t)
	ctx := ctxT(t)
	// A bare TCP probe first, as the node's reachability check makes.
	if c, err := net.Dial("tcp", f.addr); err == nil {
		c.Close()
	}
	if err := Send(ctx, f.addr, f.ca.ClientTLS(), f.pod(t, nil)); err != nil {
		t.Fatalf("send: %v", err)
	}
	// The node dials the tunnel the moment it hears "ok": that connection
	// must wait for the tunnel server, untouched by provisioning.
	next, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := next.Write([]byte("client hello")); err != nil {
		t.Fatal(err)
	}
	r := <-f.got
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	c, err := r.ln.Accept()
	if err != nil {
		t.Fatalf("the connection made after provisioning did not wait in the backlog: %v", err)
	}
	buf := make([]byte, 12)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "client hello" {
		t.Fatalf("the connection made after provisioning was touched: %q, %v", buf, err)
	}
	c.Close()
	if r.cfg.SandboxID != "sandbox-1" || r.cfg.Warm || !strings.Contains(r.cfg.Initdata, "0.1.0") {
		t.Fatalf("provisioned config %+v", r.cfg)
	}
	// The listener is the tunnel server's now: still open, nobody serving
	// provisioning on it, so a second Send gets no answer.
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := Send(sctx, f.addr, f.ca.ClientTLS(), f.pod(t, nil)); err == nil {
		t.Fatal("a second provisioning succeeded")
	}
}

func TestRefusalsKeepWaiting(t *testing.T) {
	f := start(t)
	ctx := ctxT(t)
	other, err := tlsca.LoadOrCreate(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	// A client the VM's tunnel CA did not sign.
	if err := Send(ctx, f.addr, other.ClientTLS(), f.pod(t, nil)); err == nil {
		t.Fatal("a client of another CA provisioned the VM")
	}
	for name, mod := range map[string]func(*userdata.Config){
		"other CA":       func(c *userdata.Config) { c.TunnelCA = string(other.CertPEM()) },
		"other attester": func(c *userdata.Config) { c.Attester = userdata.AttesterSNP },
	} {
		err := Send(ctx, f.addr, f.ca.ClientTLS(), f.pod(t, mod))
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("%s: got %v, want a refusal", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if err := Send(ctx, f.addr, f.ca.ClientTLS(), []byte("not user data")); err == nil || !strings.Contains(err.Error(), "parse") {
		t.Fatalf("garbage: got %v, want a parse refusal", err)
	}
	select {
	case r := <-f.got:
		t.Fatalf("Accept returned after refusals only: %+v, %v", r.cfg, r.err)
	default:
	}
	if err := Send(ctx, f.addr, f.ca.ClientTLS(), f.pod(t, nil)); err != nil {
		t.Fatalf("good user data after refusals: %v", err)
	}
	if r := <-f.got; r.err != nil || r.cfg.SandboxID != "sandbox-1" {
		t.Fatalf("accept: %+v, %v", r.cfg, r.err)
	}
}

func TestAcceptEndsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ca, err := tlsca.LoadOrCreate(t.TempDir(), "test")
	if err != nil {
		t.Fatal(err)
	}
	boot := &userdata.Config{Version: userdata.Version, Warm: true, TunnelCA: string(ca.CertPEM()), Attester: userdata.AttesterFake}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, _, err := Accept(ctx, ln, boot, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	boot.Warm, boot.SandboxID = false, "x"
	if _, _, err := Accept(context.Background(), ln, boot, nil); err == nil || !strings.Contains(err.Error(), "not booted warm") {
		t.Fatalf("a VM booted for a sandbox: got %v", err)
	}
}

func TestSendTooLarge(t *testing.T) {
	err := Send(context.Background(), "127.0.0.1:1", nil, make([]byte, MaxUserDataSize+1))
	if err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Fatalf("got %v", err)
	}
}

func TestWarmUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WarmUp(ctx); err != nil {
		t.Fatal(err)
	}
}
