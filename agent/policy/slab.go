package policy

import "unsafe"

// slab hands out values of type T from chunks allocated together, each
// chunk twice as large as the last (from minChunk elements up to
// maxChunkBytes): one allocation for many small values that live and die
// together, such as the terms of one policy input.
type slab[T any] struct {
	free []T
	size int
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
	s.size = min(max(2*s.size, minChunk), s.maxChunk())
	s.free = make([]T, s.size)
}

// maxChunk is the number of Ts in maxChunkBytes (at least minChunk).
func (s *slab[T]) maxChunk() int {
	var zero T
	return max(maxChunkBytes/int(unsafe.Sizeof(zero)), minChunk)
}
