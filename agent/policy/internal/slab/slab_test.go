package slab

import "testing"

// After reset a slab hands out its chunks again, every value zero, however
// much of them was used before.
func TestSlabReset(t *testing.T) {
	for _, used := range []int{0, 1, minChunk - 1, minChunk, minChunk + 3, 1000} {
		var s Slab[*int]
		one := 1
		for range 2 {
			for i := range used {
				p := s.Next()
				if *p != nil {
					t.Fatalf("used %d: value %d handed out not zero", used, i)
				}
				*p = &one
			}
			for _, n := range []int{3, 5} {
				vals := s.Take(n)
				for j, p := range vals {
					if p != nil {
						t.Fatalf("used %d: take(%d)[%d] not zero", used, n, j)
					}
					vals[j] = &one
				}
			}
			s.Reset()
		}
	}
}
