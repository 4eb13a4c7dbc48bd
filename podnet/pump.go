package podnet

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// MaxFrame bounds one frame on a net stream: a GSO super-frame of 64 KiB
// plus its virtio_net_hdr and Ethernet header.
const MaxFrame = 65536 + VnetHdrLen + 64

// streamBuf is the size of a net stream's read and write buffers: frames
// queued while the stream is busy go out in one write (fewer syscalls and
// fuller TLS records) instead of one write each.
const streamBuf = 256 << 10

// queueLen is how many frames read from the TAP wait for the stream; more
// are dropped (as a congested link would), and TCP recovers them.
const queueLen = 1024

// Pump moves frames between a TAP device and whichever net stream is
// attached with Run. Frames read while no stream is attached wait in a
// bounded queue (and are dropped when it is full), so a re-dialled stream
// carries on where the old one stopped.
type Pump struct {
	tap  *os.File
	q    chan []byte
	pool sync.Pool
	run  sync.Mutex // one Run at a time

	drops, in, out atomic.Uint64
	readErr        chan error
}

// NewPump starts reading frames from tap. Close stops it and closes tap.
func NewPump(tap *os.File) *Pump {
	p := &Pump{tap: tap, q: make(chan []byte, queueLen), readErr: make(chan error, 1)}
	p.pool.New = func() any { b := make([]byte, MaxFrame); return &b }
	go p.read()
	return p
}

func (p *Pump) read() {
	for {
		bp := p.pool.Get().(*[]byte)
		n, err := p.tap.Read(*bp)
		if err != nil {
			p.pool.Put(bp)
			p.readErr <- err
			close(p.q)
			return
		}
		f := (*bp)[:n]
		select {
		case p.q <- f:
		default:
			p.drops.Add(1)
			p.pool.Put(bp)
		}
	}
}

func (p *Pump) put(f []byte) {
	f = f[:cap(f)]
	p.pool.Put(&f)
}

// Stats are a pump's frame counters.
type Stats struct {
	ToStream, FromStream, Dropped uint64
}

// Stats returns the frame counters.
func (p *Pump) Stats() Stats {
	return Stats{ToStream: p.out.Load(), FromStream: p.in.Load(), Dropped: p.drops.Load()}
}

// Close stops the pump and closes its TAP.
func (p *Pump) Close() error { return p.tap.Close() }

// Run forwards frames between the TAP and conn until conn fails, ctx ends
// or the TAP is closed. It closes conn before returning.
func (p *Pump) Run(ctx context.Context, conn net.Conn) error {
	p.run.Lock()
	defer p.run.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- p.toStream(ctx, conn) }()
	go func() { errc <- p.fromStream(conn) }()
	err := <-errc
	cancel()
	conn.Close()
	<-errc
	if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
		return ctx.Err()
	}
	return err
}

func (p *Pump) toStream(ctx context.Context, conn net.Conn) error {
	w := bufio.NewWriterSize(conn, streamBuf)
	var hdr [4]byte
	put := func(f []byte) error {
		binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
		_, err := w.Write(hdr[:])
		if err == nil {
			_, err = w.Write(f)
		}
		p.put(f)
		p.out.Add(1)
		return err
	}
	for {
		var f []byte
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case f, ok = <-p.q:
		}
		if !ok {
			return fmt.Errorf("TAP read: %w", <-p.peekErr())
		}
		if err := put(f); err != nil {
			return fmt.Errorf("net stream write: %w", err)
		}
	drain:
		for w.Buffered() < streamBuf-MaxFrame {
			select {
			case f, ok = <-p.q:
				if !ok {
					break drain
				}
				if err := put(f); err != nil {
					return fmt.Errorf("net stream write: %w", err)
				}
			default:
				break drain
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("net stream write: %w", err)
		}
	}
}

// peekErr returns the reader's error channel, keeping the error for the
// next caller.
func (p *Pump) peekErr() <-chan error {
	c := make(chan error, 1)
	err := <-p.readErr
	p.readErr <- err
	c <- err
	return c
}

func (p *Pump) fromStream(conn net.Conn) error {
	r := bufio.NewReaderSize(conn, streamBuf)
	var hdr [4]byte
	buf := make([]byte, MaxFrame)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("net stream read: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxFrame || n == 0 {
			return fmt.Errorf("net stream: frame of %d bytes", n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("net stream read: %w", err)
		}
		p.in.Add(1)
		if _, err := p.tap.Write(buf[:n]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("TAP write: %w", err)
			}
			// A frame the kernel refuses (device down, bad header) is dropped.
			p.drops.Add(1)
		}
	}
}
