package policy

import "unsafe"

// slab hands out values of type T from chunks allocated together, each
// chunk twice as large as the last (from minChunk elements up to
// maxChunkBytes): one allocation for many small values that live and die
// together, such as the terms of one policy input. After reset the same
// chunks, cleared, serve again.
type slab[T any] struct {
	chunks [][]T // every chunk made, in order
	used   int   // chunks[:used] have been handed out from
	free   []T   // the rest of chunks[used-1]
}

const (
	minChunk      = 8
	maxChunkBytes = 4096
)

// next returns a new zero T.
func (s *slab[T]) next() *T {
	if len(s.free) == 0 {
		s.refill()
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

// take returns n new zero Ts, side by side (their own allocation when n
// is large); appending to the slice does not reach other values.
func (s *slab[T]) take(n int) []T {
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

func (s *slab[T]) refill() {
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

// reset clears every value handed out and makes the chunks available
// again. Nothing handed out before may be used after.
func (s *slab[T]) reset() {
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
func (s *slab[T]) maxChunk() int {
	var zero T
	return max(maxChunkBytes/int(unsafe.Sizeof(zero)), minChunk)
}
