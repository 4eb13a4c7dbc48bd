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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// rawStream opens a yamux stream with no tunnel header, to send bad ones.
func rawStream(t *testing.T, s *Session) *yamux.Stream {
	t.Helper()
	st, err := s.mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// readRefusal reads a status from st and returns the refusal in it.
func readRefusal(t *testing.T, s *Session, st *yamux.Stream) *RefusedError {
	t.Helper()
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	c := &clientConn{stream: stream{st, s, s.streams.attach(st)}, status: statusGate{kind: "raw"}}
	_, err := c.Read(make([]byte, 1))
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("read on a bad stream = %v, want a refusal", err)
	}
	return re
}

// stillWorks checks that the session still carries streams.
func stillWorks(t *testing.T, s *Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := echoOnce(ctx, s, KindHealth, []byte("still here")); err != nil {
		t.Fatalf("session broken after a refused stream: %v", err)
	}
}

func TestBadStreamsAreRefusedSessionSurvives(t *testing.T) {
	pki := newTestPKI(t)
	pki.server.HeaderTimeout = time.Second // long enough for a loaded machine to read the bad headers first
	pki.server.MaxHeaderSize = 256
	addr := serve(t, newTestServer(t, pki.server))
	s := dial(t, addr, pki.client)

	tests := []struct {
		name string
		send []byte
		code byte
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: vm\r\n\r\n"), statusMalformed},
		{"oversized", []byte{headerMagic, headerVersion, 0xff, 0xff}, statusTooLarge},
		{"never sends", nil, statusHeaderTimeout},
		{"stops half way", []byte{headerMagic, headerVersion, 0x00}, statusHeaderTimeout},
		{"declares more than it sends", []byte{headerMagic, headerVersion, 0x00, 0x10, 0x01}, statusHeaderTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := rawStream(t, s)
			if tt.send != nil {
				if _, err := st.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			if re := readRefusal(t, s, st); re.Code != tt.code {
				t.Fatalf("refused with %v, want status %d", re, tt.code)
			}
			stillWorks(t, s)
		})
	}
}

func TestUnknownKindAndOversizedHeader(t *testing.T) {
	pki := newTestPKI(t)
	pki.server.MaxHeaderSize = 128
	pki.client.MaxHeaderSize = 8192
	addr := serve(t, newTestServer(t, pki.server))
	s := dial(t, addr, pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, tt := range []struct {
		kind Kind
		meta map[string]string
		code byte
	}{
		{"nobody-serves-this", nil, statusUnknownKind},
		{KindHealth, map[string]string{"big": strings.Repeat("x", 1000)}, statusTooLarge},
	} {
		c, err := s.Open(ctx, tt.kind, tt.meta)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(make([]byte, 1))
		var re *RefusedError
		if !errors.As(err, &re) || re.Code != tt.code || re.Kind != tt.kind {
			t.Fatalf("read on %q stream = %v, want refusal %d", tt.kind, err, tt.code)
		}
		if _, err2 := c.Read(make([]byte, 1)); !errors.Is(err2, err) {
			t.Fatalf("second read = %v, want the same refusal", err2)
		}
		_ = c.Close()
		stillWorks(t, s)
	}
	// The opener checks its own bound before sending.
	small := pki.client
	small.MaxHeaderSize = 128
	s2 := dial(t, addr, small)
	if _, err := s2.Open(ctx, KindHealth, map[string]string{"big": strings.Repeat("x", 1000)}); err == nil {
		t.Fatal("Open with a header over MaxHeaderSize succeeded")
	}
}

func TestThousandConcurrentStreams(t *testing.T) {
	pki := newTestPKI(t)
	addr := serve(t, newTestServer(t, pki.server))
	s := dial(t, addr, pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	var allOpen sync.WaitGroup // every stream is open before any is read
	var peak atomic.Int32
	allOpen.Add(n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := s.Open(ctx, KindHealth, map[string]string{"i": fmt.Sprint(i)})
			if err != nil {
				allOpen.Done()
				errs <- err
				return
			}
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(i)}, 1024+i)
			_, err = c.Write(msg)
			allOpen.Done()
			if err != nil {
				errs <- fmt.Errorf("stream %d write: %w", i, err)
				return
			}
			allOpen.Wait()
			if got := int32(s.NumStreams()); got > peak.Load() {
				peak.Store(got) // racy max, good enough: the first here sees them all
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- fmt.Errorf("stream %d read: %w", i, err)
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("stream %d: echo mismatch", i)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
	if p := peak.Load(); p < n {
		t.Fatalf("at most %d streams were open at once, want %d", p, n)
	}
	// The server closes each stream after the client; once its FINs are in,
	// nothing is left of the 1000 streams.
	for deadline := time.Now().Add(20 * time.Second); s.streams.len() != 0 || s.NumStreams() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d closed streams still tracked, %d in yamux", s.streams.len(), s.NumStreams())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTLSRefusals(t *testing.T) {
	pki := newTestPKI(t)
	var handled atomic.Int32
	srv, err := NewServer(pki.server)
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(KindHealth, func(ctx context.Context, c net.Conn, h Header) { handled.Add(1) })
	addr := serve(t, srv)
	other := newTestCA(t, "some other CA")

	tests := []struct {
		name string
		tls  *tls.Config
	}{
		{"no certificate", &tls.Config{RootCAs: pki.ca.pool, MinVersion: tls.VersionTLS13}},
		{"certificate from another CA", &tls.Config{RootCAs: pki.ca.pool, GetClientCertificate: alwaysSend(other.issue(t, "node"))}},
		{"TLS 1.2 at most", &tls.Config{RootCAs: pki.ca.pool, Certificates: pki.client.TLS.Certificates, MaxVersion: tls.VersionTLS12}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A raw TLS client, so that nothing on our side stops it early.
			tt.tls.ServerName = "127.0.0.1"
			tt.tls.NextProtos = []string{alpnProto}
			c, err := tls.Dial("tcp", addr, tt.tls)
			if err == nil {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				// TLS 1.3 servers check the client certificate after the
				// client's half of the handshake: the refusal arrives on read.
				hdr, _ := encodeHeader(Header{Kind: KindHealth}, DefaultMaxHeaderSize)
				sess, serr := yamux.Client(c, &yamux.Config{AcceptBacklog: 1, KeepAliveInterval: time.Hour,
					ConnectionWriteTimeout: 10 * time.Second, MaxStreamWindowSize: 256 << 10, LogOutput: io.Discard})
				if serr != nil {
					t.Fatal(serr)
				}
				defer sess.Close()
				if _, err = sess.Ping(); err == nil {
					if st, oerr := sess.OpenStream(); oerr == nil {
						_, _ = st.Write(hdr)
						_, err = st.Read(make([]byte, 1))
					} else {
						err = oerr
					}
				}
			}
			if err == nil {
				t.Fatal("the server accepted the client")
			}
			if errors.Is(err, yamux.ErrTimeout) || errors.Is(err, yamux.ErrConnectionWriteTimeout) {
				t.Fatalf("the server did not refuse, it went silent: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}
	// The same through Dial: a certificate from another CA fails Dial itself.
	bad := pki.client
	bad.TLS = &tls.Config{RootCAs: pki.ca.pool, GetClientCertificate: alwaysSend(other.issue(t, "node"))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s, err := Dial(ctx, addr, bad); err == nil {
		_ = s.Close()
		t.Fatal("Dial with a certificate from another CA succeeded")
	} else {
		t.Logf("Dial refused: %v", err)
	}
	// And the client refuses a server from another CA.
	wrongRoots := pki.client
	wrongRoots.TLS = &tls.Config{RootCAs: other.pool, Certificates: pki.client.TLS.Certificates}
	if s, err := Dial(ctx, addr, wrongRoots); err == nil {
		_ = s.Close()
		t.Fatal("Dial trusted a server certificate from another CA")
	}
	if n := handled.Load(); n != 0 {
		t.Fatalf("%d streams reached a handler from refused clients", n)
	}
}

func TestListenerClose(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	ln := srv.Listener(KindConsole)
	addr := serve(t, srv)
	s := dial(t, addr, pki.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := s.Open(ctx, KindConsole, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	_ = sc.Close()
	_ = c.Close()

	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
	c, err = s.Open(ctx, KindConsole, nil)
	if err != nil {
		t.Fatal(err)
	}
	var re *RefusedError
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &re) || re.Code != statusUnknownKind {
		t.Fatalf("read after the listener closed = %v, want unknown kind", err)
	}
	// The kind can be registered again.
	srv.Handle(KindConsole, func(ctx context.Context, c net.Conn, h Header) {})
}

func TestRegisterTwicePanics(t *testing.T) {
	pki := newTestPKI(t)
	srv := newTestServer(t, pki.server)
	for name, f := range map[string]func(){
		"handle twice":        func() { srv.Handle(KindHealth, func(context.Context, net.Conn, Header) {}) },
		"listener on handled": func() { srv.Listener(KindHealth) },
		"invalid kind":        func() { srv.Handle("Bad Kind", func(context.Context, net.Conn, Header) {}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// alwaysSend presents cert even when the server asks for other CAs (a Go
// client would otherwise send no certificate at all).
func alwaysSend(cert tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}
