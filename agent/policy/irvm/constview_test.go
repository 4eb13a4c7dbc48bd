package irvm

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// constModule reads a constant in every way a policy can: dots with
// constant and variable keys from statements that meet several of its
// objects in turn, keys that are not strings, scans, membership, count,
// comparisons, built-ins; and input objects of the same shape through the
// same statements.
const constModule = `package t

import rego.v1

table := {
	"a": {"x": 1, "y": "one"}, "b": {"x": 2, "y": "two"}, "c": {"x": 3},
	"d": {"y": "dee", "z": 5},
	"n": {1: "number key", true: "bool key", "1": "string key"},
	"list": [{"x": 10}, {"x": 20}, [30, {"x": 40}]],
}

get(o, k) := o[k]

x := {
	"by_key": [table[k].x | some k in input.keys],
	"y": [v | some k in input.keys; v := table[k].y],
	"alternating": [get(table.a, "x"), get(table.b, "x"), get(input.obj, "x"), get(table.a, "y"), get(input.obj, "y")],
	"missing": [v | v := get(table.c, "y")],
	"other_keys": [table.n[1], table.n[true], table.n["1"], get(table.n, 1), get(table.n, input.n)],
	"input_twice": [get(input.obj, k) | some k in ["x", "y"]],
	"scan_object": [[k, v] | some k, v in table.a],
	"scan_array": [v.x | some v in table.list; is_object(v)],
	"nested": table.list[2][1].x,
	"member": [{"x": 10} in table.list, {"x": 11} in table.list, "one" in table.a],
	"count": [count(table), count(table.list), count(table.a)],
	"equal": [table.a == {"x": 1, "y": "one"}, table.list[2] == [30, {"x": 40}], input.obj == table.a],
	"builtins": [json.marshal(table.c), object.get(table, ["b", "y"], "none"), object.keys(table.a)],
	"whole": table.b,
	"layouts": [[k, v.y] | some k, v in table],
}
`

// A constant read through its view agrees with topdown, in every
// evaluation, whatever the statements looked into before, and input
// objects read through the same statements are never taken for it.
func TestConstantView(t *testing.T) {
	ctx := context.Background()
	prog, err := Compile(ctx, rego.Query("data.t.x"), rego.Module("t.rego", constModule))
	if err != nil {
		t.Fatal(err)
	}
	td, err := rego.New(rego.Query("data.t.x"), rego.Module("t.rego", constModule)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inputs := []string{
		`{"keys": ["a", "b"], "obj": {"x": 10, "y": "ten"}, "n": 1}`,
		`{"keys": ["c", "b", "zz"], "obj": {"x": 20}, "n": true}`,
		`{"keys": [], "obj": {"x": 1, "y": "one"}, "n": "1"}`,
		`{"keys": ["b"], "obj": {"y": "no x"}, "n": 2}`,
	}
	want := make([]any, len(inputs))
	for i, raw := range inputs {
		if want[i], err = topdownValue(ctx, td, ast.MustParseTerm(raw).Value); err != nil {
			t.Fatal(err)
		}
	}
	check := func(round, i int) {
		got, err := irvmValue(ctx, prog, ast.MustParseTerm(inputs[i]).Value, nil)
		if err != nil {
			t.Errorf("round %d, input %d: %v", round, i, err)
			return
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("round %d, input %d: irvm %s, topdown %s", round, i, show(got), show(want[i]))
		}
	}
	for round := range 3 {
		for i := range inputs {
			check(round, i)
		}
	}
	// Concurrent evaluations share the view (go test -race).
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 20 {
				check(r, (g+r)%len(inputs))
			}
		}()
	}
	wg.Wait()
}

// A view gives each member's view, its whole value is the original, and
// the slot of a key (any type) finds the member.
func TestConstViewMembers(t *testing.T) {
	orig := ast.MustParseTerm(`{"a": [1, {"b": 2}], 3: "three", false: null}`)
	v := constView(orig)
	lz := v.Value.(*lazyValue)
	if lz.whole != orig || materialize(v) != orig {
		t.Fatal("the view's whole value is not the original")
	}
	obj := lz.Lazy.(*constObject)
	for _, tc := range []struct {
		key, want string
	}{
		{`"a"`, `[1, {"b": 2}]`},
		{`3`, `"three"`},
		{`false`, `null`},
		{`"3"`, ``},
		{`4`, ``},
	} {
		got := obj.Member(ast.MustParseTerm(tc.key))
		if tc.want == "" {
			if got != nil || obj.Slot(ast.MustParseTerm(tc.key)) != -1 {
				t.Errorf("member %s = %v, want none", tc.key, got)
			}
			continue
		}
		if got == nil || !materialize(got).Equal(ast.MustParseTerm(tc.want)) {
			t.Errorf("member %s = %v, want %s", tc.key, got, tc.want)
			continue
		}
		if obj.MemberAt(obj.Slot(ast.MustParseTerm(tc.key))) != got {
			t.Errorf("slot of %s finds another member", tc.key)
		}
	}
	arr := obj.Member(ast.StringTerm("a")).Value.(*lazyValue).Lazy.(*constArray)
	inner := arr.Member(ast.InternedTerm(1))
	if arr.Elem(1) != inner || arr.Elem(0) != arr.Member(ast.InternedTerm(0)) {
		t.Fatal("an array's element by index is not its member by key")
	}
	if _, ok := inner.Value.(*lazyValue).Lazy.(*constObject); !ok {
		t.Fatalf("an object in an array is not a view: %T", inner.Value)
	}
	var keys []string
	obj.Members(func(k, _ *ast.Term) bool {
		keys = append(keys, k.String())
		return false
	})
	if want := []string{"false", "3", `"a"`}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("members in order %v, want %v (OPA's)", keys, want)
	}
	if s := ast.MustParseTerm(`{"x"}`); constView(s) != s {
		t.Fatal("a set was given a view")
	}
	// Objects with the same keys share a shape (a slot found in one is
	// right in the other); others do not.
	list := constView(ast.MustParseTerm(`[{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5, "c": 6}, {"b": 7, "a": 8}, {1: 0, "b": 0}, {"1": 0, "b": 0}]`))
	shape := func(i int) *constShape {
		return list.Value.(*lazyValue).Lazy.(*constArray).elems[i].Value.(*lazyValue).Lazy.(*constObject).shape
	}
	if shape(0) != shape(1) || shape(0) != shape(3) {
		t.Error("objects with the same keys have different shapes")
	}
	if shape(0) == shape(2) || shape(4) == shape(5) {
		t.Error("objects with different keys share a shape")
	}
}
