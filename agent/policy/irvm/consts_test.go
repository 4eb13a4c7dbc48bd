package irvm

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// constModule looks into a constant's objects with constant and variable
// keys, from statements that meet several of them in turn, and into input
// objects of the same shape through the same statements.
const constModule = `package t

import rego.v1

table := {"a": {"x": 1, "y": "one"}, "b": {"x": 2, "y": "two"}, "c": {"x": 3}, "n": {"1": "string key"}}

get(o, k) := o[k]

x := {
	"by_key": [table[k].x | some k in input.keys],
	"y": [v | some k in input.keys; v := table[k].y],
	"alternating": [get(table.a, "x"), get(table.b, "x"), get(input.obj, "x"), get(table.a, "y"), get(input.obj, "y")],
	"missing": [v | v := get(table.c, "y")],
	"number_key": [v | v := get(table.n, 1)],
	"input_twice": [get(input.obj, k) | some k in ["x", "y"]],
}
`

// A dot into a constant's object finds what ast.Object.Get finds, whatever
// object the same statement looked into before, and input objects (never
// indexed) are read afresh in every evaluation.
func TestConstantObjectIndex(t *testing.T) {
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
		`{"keys": ["a", "b"], "obj": {"x": 10, "y": "ten"}}`,
		`{"keys": ["c", "b", "zz"], "obj": {"x": 20}}`,
		`{"keys": [], "obj": {"x": 30, "y": "thirty"}}`,
		`{"keys": ["b"], "obj": {"y": "no x"}}`,
	}
	for round := range 3 {
		for i, raw := range inputs {
			in := ast.MustParseTerm(raw).Value
			want, err := topdownValue(ctx, td, in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := irvmValue(ctx, prog, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, input %d: irvm %s, topdown %s", round, i, show(got), show(want))
			}
		}
	}
	n := 0
	prog.consts.Range(func(k, _ any) bool {
		n++
		if _, ok := k.(ast.Object); !ok {
			t.Errorf("index key %T", k)
		}
		return true
	})
	if n != 5 {
		t.Errorf("%d objects indexed, want the table and its 4 members", n)
	}
}

// Indexing a constant reaches objects at any depth, in arrays and sets.
func TestIndexConstantDepth(t *testing.T) {
	p := &Program{}
	v := ast.MustParseTerm(`[{"a": {"b": [{"c": 1}]}}, {{"s": 1}}]`)
	p.indexConstant(v)
	var got []string
	p.consts.Range(func(k, _ any) bool {
		got = append(got, fmt.Sprint(k))
		return true
	})
	if len(got) != 4 {
		t.Fatalf("indexed %v, want 4 objects", got)
	}
}
