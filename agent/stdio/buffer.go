// Package stdio carries a container process's standard streams between its
// pipes (or pty) and the agent's ReadStdout/ReadStderr/WriteStdin calls,
// through bounded buffers.
//
// Output is drained from the process continuously into a ring buffer of a
// fixed size. When no one reads and the buffer is full, the oldest bytes are
// dropped (and counted) rather than stopping the drain: a client that stops
// reading must never block the container's writes forever. Kubernetes logs
// tolerate a gap; a hung workload is worse.
package stdio

import (
	"context"
	"io"
	"sync"
)

// DefaultBufferSize is the per-stream bound on buffered output.
const DefaultBufferSize = 1 << 20

// Buffer is a bounded FIFO of output bytes filled from one reader.
type Buffer struct {
	mu      sync.Mutex
	ring    []byte
	start   int // index of the oldest byte
	n       int // bytes held
	eof     bool
	dropped uint64
	wake    chan struct{} // closed and replaced when data or EOF arrives
}

// NewBuffer makes a buffer holding at most size bytes.
func NewBuffer(size int) *Buffer {
	if size <= 0 {
		size = DefaultBufferSize
	}
	return &Buffer{ring: make([]byte, size), wake: make(chan struct{})}
}

// Fill copies r into the buffer until r ends, then marks end of stream.
// Run it on its own goroutine.
func (b *Buffer) Fill(r io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			b.write(chunk[:n])
		}
		if err != nil {
			b.CloseWrite()
			return
		}
	}
}

func (b *Buffer) write(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	size := len(b.ring)
	if len(p) > size { // only the newest size bytes can survive
		b.dropped += uint64(len(p) - size)
		p = p[len(p)-size:]
	}
	if over := b.n + len(p) - size; over > 0 {
		b.start = (b.start + over) % size
		b.n -= over
		b.dropped += uint64(over)
	}
	end := (b.start + b.n) % size
	c := copy(b.ring[end:], p)
	copy(b.ring, p[c:])
	b.n += len(p)
	b.signal()
}

func (b *Buffer) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// CloseWrite marks the end of the stream: readers get io.EOF once the buffer is drained.
func (b *Buffer) CloseWrite() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof {
		b.eof = true
		b.signal()
	}
}

// Read waits for output and returns up to max bytes of it; io.EOF once the
// stream ended and everything was read.
func (b *Buffer) Read(ctx context.Context, max int) ([]byte, error) {
	if max <= 0 {
		max = 32 << 10
	}
	for {
		b.mu.Lock()
		if b.n > 0 {
			k := min(max, b.n)
			out := make([]byte, k)
			c := copy(out, b.ring[b.start:min(b.start+k, len(b.ring))])
			copy(out[c:], b.ring[:k-c])
			b.start = (b.start + k) % len(b.ring)
			b.n -= k
			b.mu.Unlock()
			return out, nil
		}
		if b.eof {
			b.mu.Unlock()
			return nil, io.EOF
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Dropped is how many bytes were discarded because no one read them in time.
func (b *Buffer) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
