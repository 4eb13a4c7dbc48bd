package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// upstream is a unix-socket server standing in for the VM's agent.
func upstream(t *testing.T, handle func(net.Conn)) OpenFunc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "up.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

func listen(t *testing.T, open OpenFunc) *Proxy {
	t.Helper()
	p, err := Listen(filepath.Join(t.TempDir(), "sb", "agent.ttrpc"), open, Options{OpenTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", p.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// Bytes pass unchanged both ways, and a half-close travels through: the
// upstream reads everything until EOF, then answers with a digest-like reply.
func TestSpliceByteForByteWithHalfClose(t *testing.T) {
	open := upstream(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client's CloseWrite arrives
		for i := range b {
			b[i] ^= 0x5a
		}
		c.Write(b)
	})
	p := listen(t, open)
	for _, size := range []int{0, 1, 1024, 1 << 20} {
		c := dial(t, p)
		msg := make([]byte, size)
		rand.Read(msg)
		go func() { c.Write(msg); c.CloseWrite() }()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != size {
			t.Fatalf("size %d: got %d bytes", size, len(got))
		}
		for i := range got {
			if got[i] != msg[i]^0x5a {
				t.Fatalf("size %d: byte %d differs", size, i)
			}
		}
	}
}

func TestManyConcurrentConnections(t *testing.T) {
	p := listen(t, upstream(t, func(c net.Conn) { io.Copy(c, c) }))
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", p.Path())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(i)}, 4096)
			c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("conn %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestOpenFailureClosesConnection(t *testing.T) {
	p := listen(t, func(context.Context) (net.Conn, error) { return nil, errors.New("VM not running") })
	c := dial(t, p)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read = %d, %v; want EOF", n, err)
	}
}

func TestCloseCutsConnectionsAndRemovesSocket(t *testing.T) {
	p, err := Listen(filepath.Join(t.TempDir(), "agent.ttrpc"), upstream(t, func(c net.Conn) { io.Copy(c, c) }), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	c.Write([]byte("x"))
	c.Read(make([]byte, 1))
	if p.Active() != 1 {
		t.Fatalf("Active = %d", p.Active())
	}
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung with an open connection")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after Close: %v", err)
	}
	if _, err := os.Stat(p.Path()); !os.IsNotExist(err) {
		t.Fatalf("socket file left: %v", err)
	}
}

func TestStaleSocketReplacedOtherFileRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.ttrpc")
	// A stale socket, as a killed process leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	p, err := Listen(path, func(context.Context) (net.Conn, error) { return nil, errors.New("x") }, Options{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	p.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file, nil, Options{}); err == nil {
		t.Fatal("regular file replaced")
	}
}
