package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestDirectStream(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	got := make(chan Header, 1)
	srv.Handle("sink", func(ctx context.Context, c net.Conn, h Header) {
		got <- h
		n, _ := io.Copy(io.Discard, c)
		_, _ = c.Write([]byte{byte(n >> 20)})
	})
	addr := serve(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("echo", func(t *testing.T) {
		c, err := DialStream(ctx, addr, pki.client, KindHealth, map[string]string{"k": "v"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := make([]byte, 3<<20) // many TLS records, more than one batch
		_, _ = rand.Read(msg)
		go func() { _, _ = c.Write(msg) }()
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(c, back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, msg) {
			t.Fatal("echo differs")
		}
	})
	t.Run("header and half-close", func(t *testing.T) {
		c, err := DialStream(ctx, addr, pki.client, "sink", map[string]string{"a": "1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(make([]byte, 5<<20)); err != nil {
			t.Fatal(err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 1 || b[0] != 5 {
			t.Fatalf("sink answered %v, %v; want [5] (MiB received)", b, err)
		}
		if h := <-got; h.Kind != "sink" || h.Meta["a"] != "1" {
			t.Fatalf("handler saw header %+v", h)
		}
	})
	t.Run("unknown kind", func(t *testing.T) {
		c, err := DialStream(ctx, addr, pki.client, "nobody-serves-this", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		var re *RefusedError
		if !errors.As(err, &re) || re.Code != statusUnknownKind {
			t.Fatalf("read = %v, want an unknown-kind refusal", err)
		}
		if _, err2 := c.Read(make([]byte, 1)); !errors.Is(err2, err) {
			t.Fatalf("second read = %v, want the same refusal", err2)
		}
	})
	t.Run("malformed header", func(t *testing.T) {
		cfg, err := dialConfig(addr, pki.client)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := dialTLS(ctx, addr, cfg, alpnDirect)
		if err != nil {
			t.Fatal(err)
		}
		c := &directClient{directConn: newDirectConn(conn, "raw")}
		c.statusSent = true
		defer c.Close()
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(make([]byte, 1))
		var re *RefusedError
		if !errors.As(err, &re) || re.Code != statusMalformed {
			t.Fatalf("read = %v, want a malformed-header refusal", err)
		}
	})
	t.Run("session still works beside", func(t *testing.T) {
		if err := echoOnce(ctx, dial(t, addr, pki.client), KindHealth, []byte("hi")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDirectStreamRefusedPeers(t *testing.T) {
	pki := newTestPKI(t)
	addr := serve(t, newTestServer(t, pki.server))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("verifier refuses the server", func(t *testing.T) {
		cfg := pki.client
		cfg.Verifier = VerifierFunc(func(context.Context, tls.ConnectionState) error { return errors.New("no evidence") })
		_, err := DialStream(ctx, addr, cfg, KindHealth, nil)
		if err == nil || !strings.Contains(err.Error(), "no evidence") {
			t.Fatalf("DialStream = %v, want the verifier's refusal", err)
		}
	})
	t.Run("server refuses our certificate", func(t *testing.T) {
		other := newTestCA(t, "other CA")
		cfg := pki.client
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.Certificates = []tls.Certificate{other.issue(t, "stranger")}
		c, err := DialStream(ctx, addr, cfg, KindHealth, nil)
		if err == nil {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatal("a client with an untrusted certificate got a stream")
		}
	})
	t.Run("server that speaks only sessions", func(t *testing.T) {
		// A server of an older release: ALPN peerpod-tunnel/1 only.
		cfg := pki.server
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.TLS.NextProtos = []string{alpnProto}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg.TLS)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}
		}()
		if _, err := DialStream(ctx, ln.Addr().String(), pki.client, KindHealth, nil); err == nil {
			t.Fatal("DialStream succeeded against a server without direct streams")
		}
	})
}

func TestClientOpenDirectClosedWithClient(t *testing.T) {
	pki := newTestPKI(t)
	addr := serve(t, newTestServer(t, pki.server))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := NewClient(addr, pki.client)
	conn, err := c.OpenDirect(ctx, KindHealth, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err == nil || errors.Is(err, context.DeadlineExceeded) {
		// io.ReadAll returns nil at a clean EOF; a closed conn gives an error.
		t.Fatalf("read after Client.Close = %v, want a closed connection", err)
	}
	if _, err := c.OpenDirect(ctx, KindHealth, nil); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("OpenDirect after Close = %v, want ErrClientClosed", err)
	}
}
