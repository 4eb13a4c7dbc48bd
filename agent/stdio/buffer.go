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

// Buffer is a bounded FIFO of output bytes filled from one reader. Memory
// grows with what is held, up to the bound.
type Buffer struct {
	mu      sync.Mutex
	max     int
	data    []byte // held bytes, oldest first
	eof     bool
	dropped uint64
	wake    chan struct{} // closed and replaced when data or EOF arrives
}

// NewBuffer makes a buffer holding at most size bytes.
func NewBuffer(size int) *Buffer {
	if size <= 0 {
		size = DefaultBufferSize
	}
	return &Buffer{max: size, wake: make(chan struct{})}
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
	if len(p) > b.max { // only the newest max bytes can survive
		b.dropped += uint64(len(p) - b.max)
		p = p[len(p)-b.max:]
	}
	if over := len(b.data) + len(p) - b.max; over > 0 {
		b.dropped += uint64(over)
		n := copy(b.data, b.data[over:])
		b.data = b.data[:n]
	}
	b.data = append(b.data, p...)
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
		if len(b.data) > 0 {
			k := min(max, len(b.data))
			out := make([]byte, k)
			copy(out, b.data)
			rest := copy(b.data, b.data[k:])
			b.data = b.data[:rest]
			if rest == 0 && cap(b.data) > 64<<10 {
				b.data = nil // give a large idle buffer back
			}
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
