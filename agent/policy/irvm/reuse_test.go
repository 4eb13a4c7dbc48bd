package irvm

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// reuseModule has argument-less rules that read the input (memoized for
// one evaluation), arrays built by appending, and a rule called twice.
const reuseModule = `package t

import rego.v1

user := input.user

groups := [upper(g) | some g in input.groups]

tags := {g | some g in input.groups}

x := {"user": user, "again": user, "groups": groups, "n": count(groups), "tags": tags}
`

func evalX(t *testing.T, p *Program, user string, groups ...string) ast.Value {
	t.Helper()
	in := ast.NewObject(ast.Item(ast.StringTerm("user"), ast.StringTerm(user)))
	var gs []*ast.Term
	for _, g := range groups {
		gs = append(gs, ast.StringTerm(g))
	}
	in.Insert(ast.StringTerm("groups"), ast.ArrayTerm(gs...))
	rs, err := p.Eval(context.Background(), in, nil)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Eval user=%s: %v, %v", user, rs, err)
	}
	return rs[0]
}

func wantX(user string, groups ...string) ast.Value {
	var gs, tags []*ast.Term
	for _, g := range groups {
		gs = append(gs, ast.StringTerm(g))
		tags = append(tags, ast.StringTerm(strings.ToLower(g)))
	}
	return ast.NewObject(ast.Item(ast.StringTerm("x"), ast.ObjectTerm(
		ast.Item(ast.StringTerm("user"), ast.StringTerm(user)),
		ast.Item(ast.StringTerm("again"), ast.StringTerm(user)),
		ast.Item(ast.StringTerm("groups"), ast.ArrayTerm(gs...)),
		ast.Item(ast.StringTerm("n"), ast.InternedTerm(len(gs))),
		ast.Item(ast.StringTerm("tags"), ast.SetTerm(tags...)),
	)))
}

// Evaluation states are reused: nothing one evaluation memoized or built
// reaches the next, and a result stays as it was after later evaluations.
func TestReusedEvaluationState(t *testing.T) {
	p, err := Compile(context.Background(), rego.Query("x = data.t.x"), rego.Module("t.rego", reuseModule))
	if err != nil {
		t.Fatal(err)
	}
	first := evalX(t, p, "alice", "a", "b")
	if want := wantX("alice", "A", "B"); ast.Compare(first, want) != 0 {
		t.Fatalf("first evaluation = %v, want %v", first, want)
	}
	kept := first.String()
	tests := []struct {
		user   string
		groups []string
		want   ast.Value
	}{
		{"bob", []string{"c"}, wantX("bob", "C")},
		{"carol", nil, wantX("carol")},
		{"alice", []string{"a", "b"}, wantX("alice", "A", "B")},
		{"dave", []string{"x", "y", "z"}, wantX("dave", "X", "Y", "Z")},
	}
	for _, tt := range tests {
		if got := evalX(t, p, tt.user, tt.groups...); ast.Compare(got, tt.want) != 0 {
			t.Fatalf("user %s after other evaluations = %v, want %v", tt.user, got, tt.want)
		}
	}
	if first.String() != kept {
		t.Fatalf("the first result changed to %v after later evaluations, was %s", first, kept)
	}
}

// Concurrent evaluations of one program each see only their own input.
func TestConcurrentEvaluations(t *testing.T) {
	p, err := Compile(context.Background(), rego.Query("x = data.t.x"), rego.Module("t.rego", reuseModule))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				user, g := fmt.Sprintf("u%d-%d", w, i), fmt.Sprintf("g%d", i)
				in := ast.NewObject(ast.Item(ast.StringTerm("user"), ast.StringTerm(user)),
					ast.Item(ast.StringTerm("groups"), ast.ArrayTerm(ast.StringTerm(g))))
				rs, err := p.Eval(context.Background(), in, nil)
				if err != nil || len(rs) != 1 {
					errs <- fmt.Sprintf("%s: %v %v", user, rs, err)
					return
				}
				if want := wantX(user, fmt.Sprintf("G%d", i)); ast.Compare(rs[0], want) != 0 {
					errs <- fmt.Sprintf("%s: got %v, want %v", user, rs[0], want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// An array being built is made whole as it is when used; appends after
// that are in the next whole value, not in the one made before.
func TestArrayBuilder(t *testing.T) {
	b := (&evaluation{}).newArrayBuilder(1)
	for i := range 2 {
		if !appendTo(b, ast.InternedTerm(i)) {
			t.Fatal("appendTo refused an array builder")
		}
	}
	first := materialize(b)
	if want := ast.MustParseTerm("[0, 1]"); !first.Equal(want) {
		t.Fatalf("whole after two appends = %v, want %v", first, want)
	}
	if materialize(b) != first {
		t.Fatal("the whole value was made twice without an append between")
	}
	appendTo(b, ast.InternedTerm(2))
	if want := ast.MustParseTerm("[0, 1, 2]"); !materialize(b).Equal(want) {
		t.Fatalf("whole after a third append = %v, want %v", materialize(b), want)
	}
	if want := ast.MustParseTerm("[0, 1]"); !first.Equal(want) {
		t.Fatalf("the earlier whole value changed to %v", first)
	}
	if n := b.Value.(*lazyValue).Lazy.(*arrayBuilder).Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	if e := b.Value.(*lazyValue).Lazy.(*arrayBuilder).Elem(2); !e.Equal(ast.InternedTerm(2)) {
		t.Fatalf("Elem(2) = %v, want 2", e)
	}
	if appendTo(ast.ArrayTerm(), ast.InternedTerm(1)) {
		t.Fatal("appendTo appended to an ast.Array")
	}
}

// A constant function's value, read by concurrent evaluations, is kept
// with its whole value made, even when the function builds it by
// appending.
func TestConstantArrayIsWhole(t *testing.T) {
	ctx := context.Background()
	p := compileX(t, "table := [y | some y in [3, 1, 2]; y > 1]\nx := [table[input.i], count(table)]")
	rs, err := p.Eval(ctx, ast.MustParseTerm(`{"i": 1}`).Value, nil)
	if err != nil || len(rs) != 1 || !rs[0].(ast.Object).Get(ast.StringTerm("x")).Equal(ast.MustParseTerm("[2, 2]")) {
		t.Fatalf("Eval = %v, %v", rs, err)
	}
	n := 0
	for _, f := range p.funcs {
		if c := f.val.Load(); f.pure && c != nil {
			n++
			// Kept as a view whose whole value is already made: reading
			// it writes nothing.
			lz, ok := c.t.Value.(*lazyValue)
			if !ok {
				t.Errorf("constant %s is not kept as a view", f.fn.Name)
				continue
			}
			if _, isView := lz.Lazy.(*constArray); !isView || lz.whole == nil {
				t.Errorf("constant %s is kept as a %T, whole value %v", f.fn.Name, lz.Lazy, lz.whole)
			}
		}
	}
	if n == 0 {
		t.Fatal("no constant function was computed")
	}
}

// A set being built holds each element once, is made whole when first
// used, and takes adds after that into the same whole set.
func TestSetBuilder(t *testing.T) {
	s := (&evaluation{}).newSetBuilder(new(atomic.Int32))
	for _, v := range []string{"b", "a", "b"} {
		if !addTo(s, ast.StringTerm(v)) {
			t.Fatal("addTo refused a set builder")
		}
	}
	if got := s.Value.(*lazyValue).Lazy.(*setBuilder).Len(); got != 2 {
		t.Fatalf("Len = %d, want 2", got)
	}
	whole := materialize(s)
	if want := ast.MustParseTerm(`{"a", "b"}`); !whole.Equal(want) {
		t.Fatalf("whole = %v, want %v", whole, want)
	}
	addTo(s, ast.StringTerm("c"))
	if want := ast.MustParseTerm(`{"a", "b", "c"}`); !materialize(s).Equal(want) || !whole.Equal(want) {
		t.Fatalf("after adding c: %v (term made before: %v), want %v", materialize(s), whole, want)
	}
	if dot(s, ast.StringTerm("c")) == nil || dot(s, ast.StringTerm("d")) != nil {
		t.Fatal("membership by dot is wrong")
	}
	var keys []string
	s.Value.(*lazyValue).Members(func(k, v *ast.Term) bool {
		keys = append(keys, string(k.Value.(ast.String)))
		return false
	})
	if fmt.Sprint(keys) != "[a b c]" {
		t.Fatalf("members = %v, want [a b c] in order", keys)
	}
	if addTo(ast.SetTerm(), ast.InternedTerm(1)) {
		t.Fatal("addTo added to an ast.Set")
	}
}

// record is a Slotted object whose layout is its key order.
type record struct {
	layout *recordLayout
	vals   []*ast.Term
}

type recordLayout struct {
	Layout
	keys []string
}

func (r *record) Layout() *Layout { return &r.layout.Layout }
func (r *record) Slot(key *ast.Term) int {
	for i, k := range r.layout.keys {
		if key.Equal(ast.StringTerm(k)) {
			return i
		}
	}
	return -1
}
func (r *record) MemberAt(i int) *ast.Term { return r.vals[i] }
func (r *record) Member(key *ast.Term) *ast.Term {
	if i := r.Slot(key); i >= 0 {
		return r.vals[i]
	}
	return nil
}
func (r *record) Members(f func(k, v *ast.Term) bool) {
	r.Materialize().(ast.Object).Until(f)
}
func (r *record) Materialize() ast.Value {
	obj := ast.NewObject()
	for i, k := range r.layout.keys {
		obj.Insert(ast.StringTerm(k), r.vals[i])
	}
	return obj
}
func (r *record) Type() string { return "object" }

// A dot with a constant key finds the member by slot in the layout it
// first met, and by key in any other layout.
func TestSlottedDot(t *testing.T) {
	ctx := context.Background()
	p := compileX(t, "f(r) := r.name\nx := [f(input.a), f(input.b), f(input.a), object.get(input.b, \"missing\", 0)]")
	nameFirst, idFirst := &recordLayout{keys: []string{"name", "id"}}, &recordLayout{keys: []string{"id", "name"}}
	for i := range 3 {
		a := &record{layout: nameFirst, vals: []*ast.Term{ast.StringTerm(fmt.Sprintf("a%d", i)), ast.InternedTerm(1)}}
		b := &record{layout: idFirst, vals: []*ast.Term{ast.InternedTerm(2), ast.StringTerm(fmt.Sprintf("b%d", i))}}
		in := ast.NewObject(ast.Item(ast.StringTerm("a"), LazyTerm(a)), ast.Item(ast.StringTerm("b"), LazyTerm(b)))
		rs, err := p.Eval(ctx, in, nil)
		if err != nil || len(rs) != 1 {
			t.Fatalf("Eval: %v, %v", rs, err)
		}
		want := ast.MustParseTerm(fmt.Sprintf(`[%q, %q, %q, 0]`, fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("a%d", i)))
		if got := rs[0].(ast.Object).Get(ast.StringTerm("x")); !got.Equal(want) {
			t.Fatalf("round %d: x = %v, want %v", i, got, want)
		}
	}
}

// A MakeSetStmt's sets start with room for as many elements as its
// earlier sets grew to; a set may still grow past it.
func TestSetSizeHint(t *testing.T) {
	var hint atomic.Int32
	first := (&evaluation{}).newSetBuilder(&hint)
	for i := range 5 {
		addTo(first, ast.InternedTerm(i))
	}
	materialize(first)
	if hint.Load() != 5 {
		t.Fatalf("hint after a set of 5 = %d", hint.Load())
	}
	second := (&evaluation{}).newSetBuilder(&hint)
	if c := cap(second.Value.(*lazyValue).Lazy.(*setBuilder).elems); c != 5 {
		t.Fatalf("room made for the next set = %d, want 5", c)
	}
	for i := range 7 {
		addTo(second, ast.InternedTerm(i))
	}
	if got := materialize(second).Value.(ast.Set).Len(); got != 7 || hint.Load() != 7 {
		t.Fatalf("second set has %d elements, hint %d; want 7 and 7", got, hint.Load())
	}
}

// An object being built is handed out as it is when used; inserts after
// that go to a new object, so the value handed out does not change. Small
// or grown past maxSmallObject members or by a key that is not a string,
// it holds what was inserted last at each key.
func TestObjectBuilder(t *testing.T) {
	if _, _, ok := objectBuilderOf(ast.ObjectTerm()); ok {
		t.Fatal("objectBuilderOf accepted an ast.Object")
	}
	for _, tc := range []struct {
		name string
		keys []*ast.Term
	}{
		{"small", stringTerms("a", "b", "c")},
		{"grown", stringTerms("k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9")},
		{"number key", []*ast.Term{ast.StringTerm("a"), ast.InternedTerm(1), ast.StringTerm("b")}},
	} {
		term := (&evaluation{}).newObjectBuilder()
		b, lz, ok := objectBuilderOf(term)
		if !ok {
			t.Fatal("objectBuilderOf refused an object builder")
		}
		want := ast.NewObject()
		var handed []*ast.Term
		var wants []ast.Object
		for i, k := range tc.keys {
			b.insert(lz, k, ast.InternedTerm(i))
			b.insert(lz, k, ast.InternedTerm(i+100)) // the last insert at a key wins
			want.Insert(k, ast.InternedTerm(i+100))
			if got := b.Member(k); got == nil || !got.Equal(ast.InternedTerm(i+100)) {
				t.Fatalf("%s: member %v is %v", tc.name, k, got)
			}
			if b.Len() != want.Len() {
				t.Fatalf("%s: %d members, want %d", tc.name, b.Len(), want.Len())
			}
			handed = append(handed, materialize(term))
			wants = append(wants, want.Copy())
		}
		for i, h := range handed {
			if h.Value.Compare(wants[i]) != 0 {
				t.Fatalf("%s: object handed out after %d inserts is %v, want %v", tc.name, i+1, h, wants[i])
			}
		}
		if b.Member(ast.StringTerm("missing")) != nil || b.Member(ast.InternedTerm(7)) != nil {
			t.Fatalf("%s: a key never inserted is present", tc.name)
		}
	}
}

// What dots find in objects is kept for one evaluation only: data changed
// in place between evaluations is read afresh, and one dot reading two
// objects in turn finds each one's member.
func TestObjectDotsPerEvaluation(t *testing.T) {
	ctx := context.Background()
	p := compileX(t, "f(r) := r.name\nx := [data.cfg.limit, f(input.a), f(input.b), f(input.a), f(input.b)]")
	cfg := ast.NewObject(ast.Item(ast.StringTerm("limit"), ast.InternedTerm(1)))
	data := ast.NewObject(ast.Item(ast.StringTerm("cfg"), ast.NewTerm(cfg)))
	in := ast.MustParseTerm(`{"a": {"name": "A"}, "b": {"name": "B"}}`).Value
	for _, limit := range []int{1, 2, 3} {
		cfg.Insert(ast.StringTerm("limit"), ast.InternedTerm(limit))
		rs, err := p.Eval(ctx, in, data)
		if err != nil || len(rs) != 1 {
			t.Fatalf("Eval: %v, %v", rs, err)
		}
		want := ast.MustParseTerm(fmt.Sprintf(`[%d, "A", "B", "A", "B"]`, limit))
		if got := rs[0].(ast.Object).Get(ast.StringTerm("x")); !got.Equal(want) {
			t.Fatalf("limit %d: x = %v, want %v", limit, got, want)
		}
	}
}

// Arrays grow in the evaluation's slab, which the next evaluation reuses:
// an array an evaluation returned keeps its elements after it.
func TestArrayResultOutlivesEvaluation(t *testing.T) {
	p := compileX(t, "x := [[g | some g in input.groups], [n, 1]] if n := input.user")
	eval := func(user string, groups ...string) ast.Value {
		t.Helper()
		return evalX(t, p, user, groups...).(ast.Object).Get(ast.StringTerm("x")).Value
	}
	first := eval("a", "g1", "g2", "g3", "g4", "g5")
	want := ast.MustParseTerm(`[["g1", "g2", "g3", "g4", "g5"], ["a", 1]]`).Value
	for range 3 {
		if got := eval("b", "h1", "h2", "h3", "h4", "h5", "h6"); ast.Compare(got, ast.MustParseTerm(`[["h1", "h2", "h3", "h4", "h5", "h6"], ["b", 1]]`).Value) != 0 {
			t.Fatalf("second evaluation = %v", got)
		}
		if ast.Compare(first, want) != 0 {
			t.Fatalf("the first result became %v after later evaluations, want %v", first, want)
		}
	}
}

// compileX compiles a module of package t (rego.v1) whose body is body,
// for the query x = data.t.x.
func compileX(t *testing.T, body string) *Program {
	t.Helper()
	p, err := Compile(context.Background(), rego.Query("x = data.t.x"), rego.Module("t.rego", "package t\nimport rego.v1\n"+body))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
