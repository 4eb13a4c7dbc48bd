// Package slab hands out values from chunks allocated together: one
// allocation for many small values that live and die together, the
// chunks reused after a reset.
package slab

import "unsafe"

// Slab hands out values of type T from chunks allocated together, each
// chunk twice as large as the last (from minChunk elements up to
// maxChunkBytes): one allocation for many small values that live and die
// together, such as the terms of one policy input. After Reset the same
// chunks, cleared, serve again.
type Slab[T any] struct {
	chunks [][]T // every chunk made, in order
	used   int   // chunks[:used] have been handed out from
	free   []T   // the rest of chunks[used-1]
}

const (
	minChunk      = 8
	maxChunkBytes = 4096
)

// Next returns a new zero T.
func (s *Slab[T]) Next() *T {
	if len(s.free) == 0 {
		s.refill()
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

// Take returns n new zero Ts, side by side (their own allocation when n
// is large); appending to the slice does not reach other values.
func (s *Slab[T]) Take(n int) []T {
	if n > s.maxChunk()/4 {
		return make([]T, n)
	}
	for len(s.free) < n {
		s.refill()
	}
	r := s.free[:n:n]
	s.free = s.free[n:]
	return r
}

func (s *Slab[T]) refill() {
	if s.used == len(s.chunks) {
		size := minChunk
		if s.used > 0 {
			size = min(2*len(s.chunks[s.used-1]), s.maxChunk())
		}
		s.chunks = append(s.chunks, make([]T, size))
	}
	s.free = s.chunks[s.used]
	s.used++
}

// Reset clears every value handed out and makes the chunks available
// again. Nothing handed out before may be used after.
func (s *Slab[T]) Reset() {
	for i, c := range s.chunks[:s.used] {
		if i == s.used-1 {
			c = c[:len(c)-len(s.free)] // the last one's free part is still zero
		}
		clear(c)
	}
	s.used = 0
	s.free = nil
}

// maxChunk is the number of Ts in maxChunkBytes (at least minChunk).
func (s *Slab[T]) maxChunk() int {
	var zero T
	return max(maxChunkBytes/int(unsafe.Sizeof(zero)), minChunk)
}
