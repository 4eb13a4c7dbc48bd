package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestEchoAndMetadata(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	gotMeta := make(chan Header, 1)
	srv.Handle(KindConsole, func(ctx context.Context, c net.Conn, h Header) {
		gotMeta <- h
		_, _ = c.Write([]byte("hello"))
	})
	addr := serve(t, srv)
	s := dial(t, addr, pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := echoOnce(ctx, s, KindHealth, []byte("ping")); err != nil {
		t.Fatalf("echo: %v", err)
	}
	c, err := s.Open(ctx, KindConsole, map[string]string{"container": "abc", "empty": ""})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello" {
		t.Fatalf("console read = %q, %v", b, err)
	}
	h := <-gotMeta
	if h.Kind != KindConsole || len(h.Meta) != 2 || h.Meta["container"] != "abc" || h.Meta["empty"] != "" {
		t.Fatalf("handler got header %+v", h)
	}
	if got := s.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "vm" {
		t.Fatalf("peer CN = %q", got)
	}
}

func TestHalfClose(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	// The server reads to EOF, then answers with the byte count and closes.
	srv.Handle("count", func(ctx context.Context, c net.Conn, h Header) {
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%d", n)
	})
	// The server closes first and keeps reading what the client sends.
	sinkDone := make(chan struct{})
	srv.Handle("sink", func(ctx context.Context, c net.Conn, h Header) {
		defer close(sinkDone)
		_, _ = c.Write([]byte("bye"))
		_ = c.(interface{ CloseWrite() error }).CloseWrite()
		n, err := io.Copy(io.Discard, c)
		if n != 3 || err != nil {
			t.Errorf("sink read %d bytes, %v after closing its side, want 3 bytes then EOF", n, err)
		}
	})
	s := dial(t, serve(t, srv), pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := s.Open(ctx, "count", nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 300<<10) // more than one initial window
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("late")); err == nil {
		t.Fatal("write after CloseWrite succeeded")
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != fmt.Sprint(len(payload)) {
		t.Fatalf("after half-close read %q, %v; want %d", got, err, len(payload))
	}

	c, err = s.Open(ctx, "sink", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q, %v; want bye then EOF", got, err)
	}
	if _, err := c.Write([]byte("abc")); err != nil {
		t.Fatalf("write after the peer closed its side: %v", err)
	}
	_ = c.Close()
	<-sinkDone
}

func TestPeerVanishesMidStream(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	serverErr := make(chan error, 1)
	srv.Handle("stream", func(ctx context.Context, c net.Conn, h Header) {
		_, _ = c.Write([]byte("started"))
		_, err := io.Copy(io.Discard, c)
		if err == nil {
			err = errors.New("clean EOF")
		}
		serverErr <- err
	})
	proxy := newCutProxy(t, serve(t, srv))
	s := dial(t, proxy.addr(), pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := s.Open(ctx, "stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(bytes.Repeat([]byte("y"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	proxy.cut()

	if _, err := io.ReadAll(c); err == nil {
		t.Error("the node side read a clean end of stream after the peer vanished")
	}
	select {
	case err := <-serverErr:
		t.Logf("VM side: %v", err)
		if err.Error() == "clean EOF" {
			t.Error("the VM side read a clean end of stream after the peer vanished")
		}
	case <-ctx.Done():
		t.Fatal("the VM side handler never saw the peer vanish")
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("session not done after the connection was cut")
	}
	if err := s.Err(); err == nil || errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Err() = %v, want the connection error", err)
	} else {
		t.Logf("node side: %v", err)
	}
	if _, err := s.Open(ctx, "stream", nil); err == nil {
		t.Fatal("Open on a dead session succeeded")
	}
}

func TestKeepaliveDetectsSilentPeer(t *testing.T) {
	pki := newTestPKI(t)
	pki.client.KeepAliveInterval = 100 * time.Millisecond
	pki.client.ConnectionWriteTimeout = 2 * time.Second // also bounds the ping in Dial
	proxy := newCutProxy(t, serve(t, newTestServer(t, pki.server)))
	s := dial(t, proxy.addr(), pki.client)
	proxy.blackhole()
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("session to a silent peer never ended")
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("Err() = %v, want a keepalive error", err)
	}
}

func TestVerifier(t *testing.T) {
	pki := newTestPKI(t)
	refuse := VerifierFunc(func(ctx context.Context, st tls.ConnectionState) error {
		return errors.New("evidence does not match")
	})
	var sawCN atomic.Value
	accept := VerifierFunc(func(ctx context.Context, st tls.ConnectionState) error {
		sawCN.Store(st.PeerCertificates[0].Subject.CommonName)
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("node refuses the VM", func(t *testing.T) {
		addr := serve(t, newTestServer(t, pki.server))
		cfg := pki.client
		cfg.Verifier = refuse
		s, err := Dial(ctx, addr, cfg)
		if err == nil {
			_ = s.Close()
			t.Fatal("Dial succeeded with a refusing Verifier")
		}
		if !strings.Contains(err.Error(), "evidence does not match") {
			t.Fatalf("Dial error %q does not say why", err)
		}
	})
	t.Run("VM refuses the node", func(t *testing.T) {
		cfg := pki.server
		cfg.Verifier = refuse
		addr := serve(t, newTestServer(t, cfg))
		s, err := Dial(ctx, addr, pki.client)
		if err == nil {
			_ = s.Close()
			t.Fatal("Dial succeeded although the server's Verifier refuses")
		}
		t.Logf("Dial: %v", err)
	})
	t.Run("VM checks any node certificate with its Verifier", func(t *testing.T) {
		cfg := pki.server
		cfg.TLS = &tls.Config{Certificates: pki.server.TLS.Certificates, ClientAuth: tls.RequireAnyClientCert}
		cfg.Verifier = VerifierFunc(func(ctx context.Context, st tls.ConnectionState) error {
			if cn := st.PeerCertificates[0].Subject.CommonName; cn != "node-a" {
				return fmt.Errorf("unexpected node %q", cn)
			}
			return nil
		})
		addr := serve(t, newTestServer(t, cfg))
		other := newTestCA(t, "node's own CA")
		for _, tc := range []struct {
			cn string
			ok bool
		}{{"node-a", true}, {"node-b", false}} {
			node := pki.client
			node.TLS = &tls.Config{RootCAs: pki.ca.pool, GetClientCertificate: alwaysSend(other.issue(t, tc.cn))}
			s, err := Dial(ctx, addr, node)
			if (err == nil) != tc.ok {
				t.Fatalf("Dial as %s: %v, want ok=%v", tc.cn, err, tc.ok)
			}
			if err == nil {
				_ = s.Close()
			}
		}
	})
	t.Run("self-signed VM checked by the Verifier only", func(t *testing.T) {
		// As with attestation: the VM's certificate is its own, the node
		// skips chain checks and relies on the Verifier.
		vmCA := newTestCA(t, "key made in the VM")
		cfg := pki.server
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{vmCA.issue(t, "attested-vm")}, ClientCAs: pki.ca.pool}
		addr := serve(t, newTestServer(t, cfg))
		node := pki.client
		node.TLS = &tls.Config{InsecureSkipVerify: true, Certificates: pki.client.TLS.Certificates}
		node.Verifier = accept
		s := dial(t, addr, node)
		if err := echoOnce(ctx, s, KindHealth, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if sawCN.Load() != "attested-vm" {
			t.Fatalf("Verifier saw %v", sawCN.Load())
		}
	})
}

func TestServeStopsEverything(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	blocked := make(chan struct{})
	srv.Handle("block", func(ctx context.Context, c net.Conn, h Header) {
		close(blocked)
		<-ctx.Done()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	s := dial(t, ln.Addr().String(), pki.client)
	c, err := s.Open(ctx, "block", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-blocked
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the node's session outlived the server")
	}
}

// A stream the peer closed properly still ends with io.EOF when its session
// ends before the data is read; a stream it did not close ends in an error.
func TestStreamEndVersusSessionEnd(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	srv.Handle("done", func(ctx context.Context, c net.Conn, h Header) { _, _ = c.Write([]byte("done")) })
	srv.Handle("hang", func(ctx context.Context, c net.Conn, h Header) {
		_, _ = c.Write([]byte("partial"))
		<-ctx.Done()
	})
	s := dial(t, serve(t, srv), pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	done, err := s.Open(ctx, "done", nil)
	if err != nil {
		t.Fatal(err)
	}
	hang, err := s.Open(ctx, "hang", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the peer's FIN for "done" and the data of "hang" are in.
	for done.(*clientConn).entry.state.Load()&entryPeerEnded == 0 {
		if ctx.Err() != nil {
			t.Fatal("no FIN from the peer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := io.ReadFull(hang, make([]byte, 7)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	if got, err := io.ReadAll(done); err != nil || string(got) != "done" {
		t.Fatalf("closed stream after session end: %q, %v; want done, EOF", got, err)
	}
	if _, err := io.ReadAll(hang); err == nil || !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("open stream after session end: %v; want an error naming the closed session", err)
	}
}
