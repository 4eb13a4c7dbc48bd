package tunnel

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
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
