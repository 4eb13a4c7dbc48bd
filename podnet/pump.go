package podnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// MaxFrame bounds one frame on a net stream: a GSO super-frame of 64 KiB
// plus its virtio_net_hdr and Ethernet header.
const MaxFrame = 65536 + VnetHdrLen + 64

// batchSize is how many bytes of frames one stream write carries at most.
// Every frame the TAP has ready is read (until it would block) into one
// buffer that goes out in one write: one system call and as few TLS
// records as the bytes need, instead of one each per frame.
const batchSize = 512 << 10

// readBuf is the size of a net stream's read buffer: room for a few
// frames, and always for a whole one after a partial frame.
const readBuf = 4 * MaxFrame

// Pump moves frames between a TAP device and whichever net stream is
// attached with Run. While none is, frames wait in the TAP's queue (and
// the kernel drops them once it is full, as a congested link would), so a
// re-opened stream carries on where the old one stopped.
type Pump struct {
	tap *os.File
	raw interface {
		Read(func(fd uintptr) bool) error
	}
	run sync.Mutex // one Run at a time

	drops, in, out, inBytes, outBytes, batches atomic.Uint64
}

// NewPump returns a pump for tap (opened non-blocking, as OpenTAP does).
// Close closes tap.
func NewPump(tap *os.File) *Pump {
	p := &Pump{tap: tap}
	if rc, err := tap.SyscallConn(); err == nil {
		p.raw = rc
	}
	return p
}

// Stats are a pump's counters.
type Stats struct {
	ToStream, FromStream, Dropped  uint64
	ToStreamBytes, FromStreamBytes uint64
	// Writes is how many stream writes carried the ToStream frames.
	Writes uint64
}

// Stats returns the counters.
func (p *Pump) Stats() Stats {
	return Stats{ToStream: p.out.Load(), FromStream: p.in.Load(), Dropped: p.drops.Load(),
		ToStreamBytes: p.outBytes.Load(), FromStreamBytes: p.inBytes.Load(), Writes: p.batches.Load()}
}

// Close closes the pump's TAP, which ends a Run.
func (p *Pump) Close() error { return p.tap.Close() }

// Run forwards frames between the TAP and conn until conn fails, ctx ends
// or the TAP is closed. It closes conn before returning.
func (p *Pump) Run(ctx context.Context, conn net.Conn) error {
	if p.raw == nil {
		return errors.New("TAP is not pollable")
	}
	p.run.Lock()
	defer p.run.Unlock()
	_ = p.tap.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		conn.Close()
		_ = p.tap.SetReadDeadline(time.Unix(1, 0)) // wakes toStream
	})
	errc := make(chan error, 2)
	go func() { errc <- p.toStream(conn) }()
	go func() { errc <- p.fromStream(conn) }()
	err := <-errc
	cancel()
	<-errc
	if !stop() {
		<-fired // the next Run must not see this one's deadline
	}
	if ctx.Err() != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)) {
		if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.Canceled) {
			return cerr
		}
	}
	return err
}

// toStream reads every frame the TAP has ready into one batch of
// length-prefixed frames and writes it to conn.
func (p *Pump) toStream(conn net.Conn) error {
	buf := make([]byte, batchSize)
	for {
		off, frames := 0, 0
		var rerr error
		err := p.raw.Read(func(fd uintptr) bool {
			for off+4+MaxFrame <= len(buf) {
				n, err := unix.Read(int(fd), buf[off+4:off+4+MaxFrame])
				if err == unix.EINTR {
					continue
				}
				if err == unix.EAGAIN {
					return off > 0 // nothing more ready: send what we have, or wait
				}
				if err != nil {
					rerr = err
					return true
				}
				if n == 0 {
					rerr = io.EOF
					return true
				}
				binary.BigEndian.PutUint32(buf[off:], uint32(n))
				off += 4 + n
				frames++
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if off > 0 {
			if _, werr := conn.Write(buf[:off]); werr != nil {
				return fmt.Errorf("net stream write: %w", werr)
			}
			p.out.Add(uint64(frames))
			p.outBytes.Add(uint64(off - 4*frames))
			p.batches.Add(1)
		}
		if err != nil {
			return fmt.Errorf("TAP read: %w", err)
		}
	}
}

// fromStream reads length-prefixed frames from conn and writes each to
// the TAP straight from the buffer the stream was read into: bytes are
// copied once, from the connection into buf, and not again.
func (p *Pump) fromStream(conn net.Conn) error {
	buf := make([]byte, readBuf)
	r, w := 0, 0 // buf[r:w] holds bytes read and not yet written out
	for {
		// Write out every whole frame in the buffer.
		for w-r >= 4 {
			n := int(binary.BigEndian.Uint32(buf[r:]))
			if n > MaxFrame || n == 0 {
				return fmt.Errorf("net stream: frame of %d bytes", n)
			}
			if w-r < 4+n {
				break
			}
			frame := buf[r+4 : r+4+n]
			r += 4 + n
			p.in.Add(1)
			p.inBytes.Add(uint64(n))
			if _, err := p.tap.Write(frame); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return fmt.Errorf("TAP write: %w", err)
				}
				// A frame the kernel refuses (device down, bad header) is dropped.
				p.drops.Add(1)
			}
		}
		if r == w {
			r, w = 0, 0
		} else if len(buf)-r < 4+MaxFrame {
			// Too little room after a partial frame for the largest one:
			// move it to the front.
			w = copy(buf, buf[r:w])
			r = 0
		}
		n, err := conn.Read(buf[w:])
		w += n
		if err != nil && (n == 0 || !errors.Is(err, io.EOF)) {
			if w > r && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("net stream read: %w", err)
		}
	}
}
