package podnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// packetPair returns a pump on one end of a SOCK_SEQPACKET socket pair,
// which keeps frame boundaries as a TAP does, and the other end.
func packetPair(t *testing.T) (*Pump, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		// Room for a few of the largest frames.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	p := NewPump(os.NewFile(uintptr(fds[0]), "pump-end"))
	peer := os.NewFile(uintptr(fds[1]), "peer-end")
	t.Cleanup(func() { p.Close(); peer.Close() })
	return p, peer
}

// runningPump is a pump between a packet socket pair's end (peer is the
// other end) and a stream whose node side it returns; it runs until the
// test ends.
func runningPump(t *testing.T) (p *Pump, peer *os.File, node net.Conn) {
	t.Helper()
	p, peer = packetPair(t)
	node, vm := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, vm) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, peer, node
}

// TestPumpFramesFromStream feeds length-prefixed frames in pieces that cut
// across frames and prefixes: each arrives whole, alone, in order.
func TestPumpFramesFromStream(t *testing.T) {
	p, peer, node := runningPump(t)

	// Three rounds: more than the read buffer holds, so partial frames
	// are moved to its front on the way.
	var sizes []int
	for range 3 {
		sizes = append(sizes, 1, 60, 1514, 9000, MaxFrame, 3, MaxFrame-1, 700)
	}
	var wire []byte
	var want [][]byte
	for i, n := range sizes {
		f := bytes.Repeat([]byte{byte(i%250 + 1)}, n)
		want = append(want, f)
		wire = binary.BigEndian.AppendUint32(wire, uint32(n))
		wire = append(wire, f...)
	}
	go func() {
		// Odd pieces: 7 bytes, then 3 KiB + 5 at a time.
		for len(wire) > 0 {
			k := min(len(wire), 7+len(wire)%3077)
			if _, err := node.Write(wire[:k]); err != nil {
				return
			}
			wire = wire[k:]
		}
	}()
	_ = peer.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, MaxFrame+1)
	for i, w := range want {
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("frame %d: got %d bytes of %#x, want %d of %#x", i, n, buf[0], len(w), w[0])
		}
	}
	if st := p.Stats(); st.FromStream != uint64(len(want)) {
		t.Fatalf("stats %+v, want %d frames from the stream", st, len(want))
	}
}

// TestPumpFramesToStream checks that frames the TAP side has ready go to
// the stream each after its length.
func TestPumpFramesToStream(t *testing.T) {
	_, peer, node := runningPump(t)

	sizes := []int{42, 1514, 65000, 1}
	for i, n := range sizes {
		if _, err := peer.Write(bytes.Repeat([]byte{byte(i + 1)}, n)); err != nil {
			t.Fatal(err)
		}
	}
	_ = node.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i, n := range sizes {
		var hdr [4]byte
		if _, err := io.ReadFull(node, hdr[:]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint32(hdr[:]); got != uint32(n) {
			t.Fatalf("frame %d: length %d, want %d", i, got, n)
		}
		f := make([]byte, n)
		if _, err := io.ReadFull(node, f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f[0] != byte(i+1) || f[n-1] != byte(i+1) {
			t.Fatalf("frame %d: wrong bytes", i)
		}
	}
}

// TestPumpBadStream checks that a frame length out of range, or a stream
// that ends inside a frame, ends Run with an error saying so.
func TestPumpBadStream(t *testing.T) {
	for _, tt := range []struct {
		name string
		wire []byte
		want string
	}{
		{"zero length", []byte{0, 0, 0, 0}, "frame of 0 bytes"},
		{"too long", binary.BigEndian.AppendUint32(nil, MaxFrame+1), "frame of"},
		{"cut inside a frame", append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...), "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := packetPair(t)
			node, vm := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- p.Run(context.Background(), vm) }()
			go func() { _, _ = node.Write(tt.wire); node.Close() }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Run = %v, want an error with %q", err, tt.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Run did not end")
			}
		})
	}
}
