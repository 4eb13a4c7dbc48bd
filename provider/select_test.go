package provider

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSelectInstanceTypesTable(t *testing.T) {
	types := []InstanceType{
		{Name: "big", VCPUs: 8, MemoryMiB: 32768},
		{Name: "small", VCPUs: 2, MemoryMiB: 8192},
		{Name: "gpu", VCPUs: 8, MemoryMiB: 65536, GPUs: 1},
		{Name: "medium", VCPUs: 4, MemoryMiB: 16384},
		{Name: "wide", VCPUs: 16, MemoryMiB: 16384},
	}
	all := []string{"big", "small", "gpu", "medium", "wide"}
	tests := []struct {
		name     string
		want     Resources
		explicit string
		allow    []string
		def      string
		out      []string
		errClass error
	}{
		{name: "default only", def: "small", out: []string{"small"}},
		{name: "default then larger fallbacks", allow: all, def: "small", out: []string{"small", "medium", "wide", "big"}},
		{name: "explicit allowed", explicit: "big", allow: all, def: "small", out: []string{"big"}},
		{name: "explicit not allowed", explicit: "big", def: "small", errClass: ErrInvalidConfig},
		{name: "explicit default always allowed", explicit: "small", def: "small", out: []string{"small"}},
		{name: "best fit memory", want: Resources{VCPUs: 2, MemoryMiB: 10000}, allow: all, def: "small", out: []string{"medium", "wide", "big"}},
		{name: "best fit cpu", want: Resources{VCPUs: 10}, allow: all, def: "small", out: []string{"wide"}},
		{name: "gpu asked", want: Resources{GPUs: 1}, allow: all, def: "small", out: []string{"gpu"}},
		{name: "gpu types skipped without gpu", want: Resources{VCPUs: 8, MemoryMiB: 40000}, allow: all, def: "small", errClass: ErrInvalidConfig},
		{name: "nothing fits", want: Resources{VCPUs: 64}, allow: all, def: "small", errClass: ErrInvalidConfig},
		{name: "allow list restricts", want: Resources{VCPUs: 3}, allow: []string{"big"}, def: "small", out: []string{"big"}},
		{name: "unknown default", def: "mystery", out: []string{"mystery"}},
		{name: "no default", errClass: ErrInvalidConfig},
		{name: "negative", want: Resources{VCPUs: -1}, def: "small", errClass: ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectInstanceTypes(types, tc.want, tc.explicit, tc.allow, tc.def)
			if tc.errClass != nil {
				if !errors.Is(err, tc.errClass) {
					t.Fatalf("err = %v, want class %v", err, tc.errClass)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.out) {
				t.Fatalf("got %v, want %v", got, tc.out)
			}
		})
	}
}

// bruteForceBest finds the smallest allowed fitting type by looking at every one.
func bruteForceBest(types []InstanceType, want Resources, allowed map[string]bool) (InstanceType, bool) {
	var best InstanceType
	found := false
	for _, t := range types {
		if !allowed[t.Name] || !Fits(t, want) {
			continue
		}
		if !found || CompareSize(t, best) < 0 {
			best, found = t, true
		}
	}
	return best, found
}

// TestSelectInstanceTypesProperty checks the choice against a brute-force
// search over random lists in random orders: the first candidate is the
// smallest fitting type, every candidate fits, they are sorted, and shuffling
// the input changes nothing.
func TestSelectInstanceTypesProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		n := 1 + rng.IntN(12)
		types := make([]InstanceType, n)
		allow := []string{}
		allowed := map[string]bool{}
		for i := range types {
			types[i] = InstanceType{
				Name:      fmt.Sprintf("t%02d", i),
				VCPUs:     int64(1 << rng.IntN(6)),
				MemoryMiB: int64(512 * (1 + rng.IntN(64))),
			}
			if rng.IntN(5) == 0 {
				types[i].GPUs = int64(1 + rng.IntN(4))
			}
			if rng.IntN(4) != 0 {
				allow = append(allow, types[i].Name)
				allowed[types[i].Name] = true
			}
		}
		def := types[rng.IntN(n)].Name
		allowed[def] = true
		want := Resources{VCPUs: int64(rng.IntN(33)), MemoryMiB: int64(rng.IntN(40000))}
		if rng.IntN(4) == 0 {
			want.GPUs = int64(rng.IntN(3))
		}
		if want == (Resources{}) {
			want.VCPUs = 1
		}
		got, err := SelectInstanceTypes(types, want, "", allow, def)
		best, ok := bruteForceBest(types, want, allowed)
		if !ok {
			if err == nil || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("iter %d: brute force finds nothing, got %v, %v", iter, got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("iter %d: %v (brute force found %s)", iter, err, best.Name)
		}
		if got[0] != best.Name {
			t.Fatalf("iter %d: chose %s, brute force %s; types %+v want %+v", iter, got[0], best.Name, types, want)
		}
		byName := map[string]InstanceType{}
		for _, ty := range types {
			byName[ty.Name] = ty
		}
		for i, name := range got {
			if !Fits(byName[name], want) || !allowed[name] {
				t.Fatalf("iter %d: candidate %s does not fit or is not allowed", iter, name)
			}
			if i > 0 && CompareSize(byName[got[i-1]], byName[name]) > 0 {
				t.Fatalf("iter %d: candidates out of order: %v", iter, got)
			}
		}
		shuffled := slices.Clone(types)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, err := SelectInstanceTypes(shuffled, want, "", allow, def)
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("iter %d: order-dependent: %v then %v (%v)", iter, got, again, err)
		}
	}
}
