package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClientRedialsAfterServerRestart(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// First server.
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newTestServer(t, pki.server).Serve(sctx, ln) }()

	c := NewClient(addr, pki.client)
	t.Cleanup(func() { _ = c.Close() })
	first, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoOnce(ctx, first, KindHealth, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if s2, err := c.Session(ctx); err != nil || s2 != first {
		t.Fatalf("Session() = %p, %v; want the same live session %p", s2, err, first)
	}

	// The VM's server goes away: the session ends.
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case <-first.Done():
	case <-ctx.Done():
		t.Fatal("session did not end with the server")
	}

	// A new server on the same address; the client finds it by itself.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	serveOn(t, newTestServer(t, pki.server), ln2)
	var lastErr error
	for {
		conn, err := c.Open(ctx, KindHealth, nil)
		if err == nil {
			_, err = conn.Write([]byte("two"))
			if err == nil {
				buf := make([]byte, 3)
				_, err = conn.Read(buf)
			}
			_ = conn.Close()
			if err == nil {
				break
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("no stream after the server restarted: %v", lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := c.Reconnects(); n != 1 {
		t.Fatalf("Reconnects() = %d, want 1", n)
	}
	s, err := c.Session(ctx)
	if err != nil || s == first {
		t.Fatalf("Session() after restart = %v, %v; want a new session", s, err)
	}
}

func TestClientErrors(t *testing.T) {
	pki := newTestPKI(t)
	// Nothing listens: Session gives up when its context does, saying why.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := NewClient(addr, pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = c.Open(ctx, KindHealth, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open with no server = %v, want a deadline error naming %s", err, addr)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Session(context.Background()); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("Session after Close = %v, want ErrClientClosed", err)
	}
	// A bad config is reported, not retried.
	bad := NewClient(addr, Config{})
	defer bad.Close()
	if _, err := bad.Session(context.Background()); err == nil || !strings.Contains(err.Error(), "Config.TLS") {
		t.Fatalf("Session with no TLS = %v, want the config error", err)
	}
	noCert := pki.client
	noCert.TLS = &tls.Config{RootCAs: pki.ca.pool}
	bad2 := NewClient(addr, noCert)
	defer bad2.Close()
	if _, err := bad2.Session(context.Background()); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("Session with no client certificate = %v, want the config error", err)
	}
}

func TestListenAndServe(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newTestServer(t, pki.server).ListenAndServe(ctx, addr) }()
	c := NewClient(addr, pki.client)
	defer c.Close()
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ocancel()
	s, err := c.Session(octx)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoOnce(octx, s, KindHealth, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ListenAndServe after cancel = %v", err)
	}
	if err := newTestServer(t, pki.server).ListenAndServe(context.Background(), "not an address"); err == nil {
		t.Fatal("ListenAndServe on a bad address succeeded")
	}
}

func TestClientAdopt(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var accepted atomicCounter
	serveOn(t, newTestServer(t, pki.server), countingListener{ln, &accepted})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probe, err := Dial(ctx, addr, pki.client)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(addr, pki.client)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Adopt(probe); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Session(ctx); err != nil || s != probe {
		t.Fatalf("Session() = %p, %v; want the adopted %p", s, err, probe)
	}
	if err := echoOnce(ctx, probe, KindHealth, []byte("adopted")); err != nil {
		t.Fatal(err)
	}
	if n := accepted.load(); n != 1 {
		t.Fatalf("%d connections accepted, want only the probe's", n)
	}
	other, err := Dial(ctx, addr, pki.client)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := c.Adopt(other); err == nil {
		t.Fatal("a client with a session adopted another")
	}
	// The adopted session is watched like a dialled one: when it ends the
	// client dials anew.
	_ = probe.Close()
	if err := echoOnce(ctx, mustSession(ctx, t, c, probe), KindHealth, []byte("redialled")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if err := c.Adopt(other); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("Adopt after Close = %v", err)
	}
}

// mustSession waits for c's session to be another than old.
func mustSession(ctx context.Context, t *testing.T, c *Client, old *Session) *Session {
	t.Helper()
	for {
		s, err := c.Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s != old {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatal("no new session")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (a *atomicCounter) add()      { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomicCounter) load() int { a.mu.Lock(); defer a.mu.Unlock(); return a.n }

type countingListener struct {
	net.Listener
	n *atomicCounter
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.add()
	}
	return c, err
}
