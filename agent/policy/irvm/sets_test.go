package irvm

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func stringTerms(ss ...string) []*ast.Term {
	out := make([]*ast.Term, len(ss))
	for i, s := range ss {
		out[i] = ast.StringTerm(s)
	}
	return out
}

// The merges of sorted strings give what OPA's set operations give, in
// OPA's iteration order.
func TestStringSetOps(t *testing.T) {
	for _, tc := range []struct{ a, b []string }{
		{nil, nil},
		{[]string{"a"}, nil},
		{nil, []string{"a"}},
		{[]string{"a", "b", "c"}, []string{"b"}},
		{[]string{"b", "a", "a", "c"}, []string{"c", "d", "a"}},
		{[]string{"SETTING_1=x", "PATH=/bin", "HOSTNAME=h"}, []string{"SETTING_1=x", "SETTING_10=y"}},
		{[]string{"", "z", "é", "Z"}, []string{"", "é"}},
	} {
		t.Run(fmt.Sprint(tc.a, tc.b), func(t *testing.T) {
			sa, sb := ast.NewSet(stringTerms(tc.a...)...), ast.NewSet(stringTerms(tc.b...)...)
			x := sortStrings(stringTerms(tc.a...))
			y := sortStrings(stringTerms(tc.b...))
			if !slices.EqualFunc(x, sa.Slice(), (*ast.Term).Equal) {
				t.Fatalf("sortStrings(%v) = %v, want %v", tc.a, x, sa.Slice())
			}
			for _, op := range []struct {
				name string
				got  []*ast.Term
				want ast.Set
			}{
				{"diff", diffStrings(nil, x, y), sa.Diff(sb)},
				{"intersect", intersectStrings(nil, x, y), sa.Intersect(sb)},
				{"union", unionStrings(nil, x, y), sa.Union(sb)},
			} {
				if !slices.EqualFunc(op.got, op.want.Slice(), (*ast.Term).Equal) {
					t.Errorf("%s = %v, want %v", op.name, op.got, op.want.Slice())
				}
			}
			for _, s := range append(tc.a, "missing") {
				if got, want := searchStrings(x, ast.StringTerm(s)), sa.Contains(ast.StringTerm(s)); got != want {
					t.Errorf("searchStrings(%q) = %v, want %v", s, got, want)
				}
			}
			if searchStrings(x, ast.InternedTerm(1)) {
				t.Error("a number found in a set of strings")
			}
		})
	}
}

// Only sets whose elements are all strings take irvm's form; a set with
// any other element (sorted first or last by OPA) does not.
func TestStringsOf(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want bool
	}{
		{`set()`, true},
		{`{"a", "b"}`, true},
		{`{1, "a"}`, false},
		{`{"a", ["b"]}`, false},
		{`{"a", {"b": 1}, "c"}`, false},
		{`{null}`, false},
	} {
		if _, got := stringsOf(ast.MustParseTerm(tc.set)); got != tc.want {
			t.Errorf("stringsOf(%s) = %v, want %v", tc.set, got, tc.want)
		}
	}
	b := (&evaluation{}).newSetBuilder(new(atomic.Int32))
	addTo(b, ast.StringTerm("b"))
	addTo(b, ast.StringTerm("a"))
	if got, ok := stringsOf(b); !ok || fmt.Sprint(got) != `["a" "b"]` {
		t.Fatalf("stringsOf(builder of b, a) = %v, %v", got, ok)
	}
	// Adds after a read keep the order: in order, out of order, repeated.
	for _, v := range []string{"c", "0", "b"} {
		addTo(b, ast.StringTerm(v))
	}
	if got, ok := stringsOf(b); !ok || fmt.Sprint(got) != `["0" "a" "b" "c"]` {
		t.Fatalf("stringsOf after adding c, 0, b = %v, %v", got, ok)
	}
	addTo(b, ast.InternedTerm(1))
	if _, ok := stringsOf(b); ok {
		t.Fatal("a builder holding a number is taken as a set of strings")
	}
	if got := materialize(b); !got.Equal(ast.MustParseTerm(`{1, "0", "a", "b", "c"}`)) {
		t.Fatalf("whole = %v", got)
	}
	// Adds after the set is made whole go to that set, not to irvm's form.
	c := (&evaluation{}).newSetBuilder(new(atomic.Int32))
	addTo(c, ast.StringTerm("b"))
	materialize(c)
	addTo(c, ast.StringTerm("a"))
	if _, ok := stringsOf(c); ok {
		t.Fatal("a builder made whole and added to is still read in irvm's form")
	}
	if got := c.Value.(*lazyValue).Lazy.(*setBuilder).Len(); got != 2 {
		t.Fatalf("Len after an add to the whole set = %d, want 2", got)
	}
}

// stringSetModule builds sets of strings from the input and combines
// them with each other and with constant sets.
const stringSetModule = `package t

import rego.v1

names := {n | some n in input.names}

fixed := {"b", "d", "f"}

x := {
	"minus": names - fixed, "rminus": fixed - names, "and": fixed & names, "or": names | fixed,
	"count": count(names), "scan": [n | some n in names], "in": ["b" in names, "z" in fixed],
	"concat": concat(",", fixed - names), "prefix": strings.any_prefix_match("b-1", names),
	"fixed_after": [f | some f in fixed],
}
`

// Sets of strings from one evaluation reach no other (a reused state, a
// concurrent one), and the constant sets they are combined with do not
// change: every evaluation agrees with topdown on its own input.
func TestStringSetsAcrossEvaluations(t *testing.T) {
	ctx := context.Background()
	prog, err := Compile(ctx, rego.Query("data.t.x"), rego.Module("t.rego", stringSetModule))
	if err != nil {
		t.Fatal(err)
	}
	td, err := rego.New(rego.Query("data.t.x"), rego.Module("t.rego", stringSetModule)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inputs := []string{
		`{"names": ["f", "a", "b", "c"]}`,
		`{"names": ["z"]}`,
		`{"names": []}`,
		`{"names": ["d", "d", "b", "a"]}`,
		`{"names": ["b", "d", "f", "g", "h", "i", "j"]}`,
	}
	want := make([]any, len(inputs))
	for i, raw := range inputs {
		if want[i], err = topdownValue(ctx, td, ast.MustParseTerm(raw).Value); err != nil {
			t.Fatal(err)
		}
	}
	check := func(i int) error {
		got, err := irvmValue(ctx, prog, ast.MustParseTerm(inputs[i]).Value, nil)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want[i]) {
			return fmt.Errorf("input %d: irvm %s, topdown %s", i, show(got), show(want[i]))
		}
		return nil
	}
	for round := range 3 {
		for i := range inputs {
			if err := check(i); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(inputs))
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 50 {
				if err := check((g + r) % len(inputs)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSortStrings: sorted by insertion or in general, with repeats, the
// result is the sorted distinct strings.
func TestSortStrings(t *testing.T) {
	x := uint32(7)
	next := func(n uint32) uint32 {
		x = x*1664525 + 1013904223
		return (x >> 8) % n
	}
	for _, size := range []int{0, 1, 2, 3, 12, 33, 64, 65, 200, 1000} {
		for _, shape := range []string{"random", "sorted", "reversed", "sorted with a tail", "few values"} {
			var in []string
			for i := range size {
				switch shape {
				case "random":
					in = append(in, fmt.Sprintf("k%d", next(100000)))
				case "sorted":
					in = append(in, fmt.Sprintf("k%06d", i))
				case "reversed":
					in = append(in, fmt.Sprintf("k%06d", size-i))
				case "sorted with a tail":
					if i < size*3/4 {
						in = append(in, fmt.Sprintf("S%06d", i))
					} else {
						in = append(in, fmt.Sprintf("K%d", next(1000)))
					}
				case "few values":
					in = append(in, fmt.Sprintf("v%d", next(5)))
				}
			}
			want := slices.Compact(slices.Sorted(slices.Values(in)))
			got := sortStrings(stringTerms(in...))
			if len(got) != len(want) {
				t.Fatalf("%s, %d: %d strings, want %d", shape, size, len(got), len(want))
			}
			for i := range want {
				if str(got[i]) != want[i] {
					t.Fatalf("%s, %d: at %d %s, want %s", shape, size, i, str(got[i]), want[i])
				}
			}
		}
	}
}

// BenchmarkSortStrings sorts a container's environment as a policy's set
// of it holds it (the pod's variables in order, then the runtime's),
// with sortStrings and with a general sort.
func BenchmarkSortStrings(b *testing.B) {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	for j := range 24 {
		env = append(env, fmt.Sprintf("SETTING_%02d=value-%02d-of-container-7", j, j))
	}
	env = append(env, "HOSTNAME=web", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_PORT=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1")
	src := stringTerms(env...)
	buf := make([]*ast.Term, len(src))
	b.Run("sortStrings", func(b *testing.B) {
		for b.Loop() {
			copy(buf, src)
			sortStrings(buf)
		}
	})
	b.Run("general", func(b *testing.B) {
		for b.Loop() {
			copy(buf, src)
			slices.SortFunc(buf, compareStrings)
		}
	})
}
