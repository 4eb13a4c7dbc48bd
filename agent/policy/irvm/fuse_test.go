package irvm

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// Plans built by hand, with the copies the planner makes and uses of the
// copied locals it happens not to make: a copy is dropped only when
// nothing else reads what it copies.

func handPlan(strings []string, stmts ...ir.Stmt) *ir.Policy {
	static := &ir.Static{}
	for _, s := range strings {
		static.Strings = append(static.Strings, &ir.StringConst{Value: s})
	}
	return &ir.Policy{
		Static: static,
		Plans:  &ir.Plans{Plans: []*ir.Plan{{Name: "hand", Blocks: []*ir.Block{{Stmts: stmts}}}}},
		Funcs:  &ir.Funcs{},
	}
}

func sop(i int) ir.Operand      { return ir.Operand{Value: ir.StringIndex(i)} }
func loc(l ir.Local) ir.Operand { return ir.Operand{Value: l} }
func runHand(t *testing.T, pol *ir.Policy, input string) string {
	t.Helper()
	p, err := New(pol)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := p.Eval(context.Background(), ast.MustParseTerm(input).Value, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	return rs[0].String()
}

func TestCopiesFused(t *testing.T) {
	const (
		l2 ir.Local = iota + 2
		l3
		l4
		l5
		l6
		l7
		l8
		l9
	)
	for _, tc := range []struct {
		name  string
		pol   *ir.Policy
		input string
		want  string
	}{{
		name: "dot copied and read again",
		pol: handPlan([]string{"a", "x", "y"},
			&ir.DotStmt{Source: loc(ir.Input), Key: sop(0), Target: l2},
			&ir.AssignVarStmt{Source: loc(l2), Target: l3},
			&ir.MakeObjectStmt{Target: l4},
			&ir.ObjectInsertStmt{Key: sop(1), Value: loc(l2), Object: l4},
			&ir.ObjectInsertStmt{Key: sop(2), Value: loc(l3), Object: l4},
			&ir.ResultSetAddStmt{Value: l4}),
		input: `{"a": 7}`,
		want:  `{"x": 7, "y": 7}`,
	}, {
		name: "dot copied once",
		pol: handPlan([]string{"a", "x"},
			&ir.DotStmt{Source: loc(ir.Input), Key: sop(0), Target: l2},
			&ir.AssignVarStmt{Source: loc(l2), Target: l3},
			&ir.MakeObjectStmt{Target: l4},
			&ir.ObjectInsertStmt{Key: sop(1), Value: loc(l3), Object: l4},
			&ir.ResultSetAddStmt{Value: l4}),
		input: `{"a": 7}`,
		want:  `{"x": 7}`,
	}, {
		name: "scan key copied and read again",
		pol: handPlan([]string{"list"},
			&ir.DotStmt{Source: loc(ir.Input), Key: sop(0), Target: l2},
			&ir.MakeObjectStmt{Target: l3},
			&ir.ScanStmt{Source: l2, Key: l4, Value: l5, Block: &ir.Block{Stmts: []ir.Stmt{
				&ir.AssignVarStmt{Source: loc(l4), Target: l6},
				&ir.AssignVarStmt{Source: loc(l5), Target: l7},
				&ir.ObjectInsertStmt{Key: loc(l7), Value: loc(l4), Object: l3},
			}}},
			&ir.ResultSetAddStmt{Value: l3}),
		input: `{"list": ["p", "q"]}`,
		want:  `{"p": 0, "q": 1}`,
	}, {
		name: "scan key copied into the value's local",
		pol: handPlan([]string{"list"},
			&ir.DotStmt{Source: loc(ir.Input), Key: sop(0), Target: l2},
			&ir.MakeSetStmt{Target: l3},
			&ir.ScanStmt{Source: l2, Key: l4, Value: l5, Block: &ir.Block{Stmts: []ir.Stmt{
				&ir.AssignVarStmt{Source: loc(l4), Target: l5},
				&ir.SetAddStmt{Value: loc(l5), Set: l3},
			}}},
			&ir.ResultSetAddStmt{Value: l3}),
		input: `{"list": ["p", "q"]}`,
		want:  `{0, 1}`,
	}, {
		name: "scan copies",
		pol: handPlan([]string{"list"},
			&ir.DotStmt{Source: loc(ir.Input), Key: sop(0), Target: l2},
			&ir.MakeObjectStmt{Target: l3},
			&ir.ScanStmt{Source: l2, Key: l4, Value: l5, Block: &ir.Block{Stmts: []ir.Stmt{
				&ir.AssignVarStmt{Source: loc(l5), Target: l7},
				&ir.AssignVarStmt{Source: loc(l4), Target: l6},
				&ir.DotStmt{Source: loc(l7), Key: sop(0), Target: l8},
				&ir.AssignVarStmt{Source: loc(l8), Target: l9},
				&ir.ObjectInsertStmt{Key: loc(l9), Value: loc(l6), Object: l3},
			}}},
			&ir.ResultSetAddStmt{Value: l3}),
		input: `{"list": [{"list": "p"}, {"list": "q"}, {}]}`,
		want:  `{"p": 0, "q": 1}`,
	}} {
		if got := runHand(t, tc.pol, tc.input); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestCopiesDropped: the copies the fusion drops are gone from the
// compiled blocks.
func TestCopiesDropped(t *testing.T) {
	pol := handPlan([]string{"list"},
		&ir.DotStmt{Source: loc(ir.Input), Key: sop(0), Target: 2},
		&ir.AssignVarStmt{Source: loc(2), Target: 3},
		&ir.MakeObjectStmt{Target: 4},
		&ir.ScanStmt{Source: 3, Key: 5, Value: 6, Block: &ir.Block{Stmts: []ir.Stmt{
			&ir.AssignVarStmt{Source: loc(5), Target: 7},
			&ir.AssignVarStmt{Source: loc(6), Target: 8},
			&ir.ObjectInsertStmt{Key: loc(8), Value: loc(7), Object: 4},
		}}},
		&ir.ResultSetAddStmt{Value: 4})
	p, err := New(pol)
	if err != nil {
		t.Fatal(err)
	}
	top := p.blocks[0].instrs
	if len(top) != 4 {
		t.Fatalf("%d statements at the top, want 4 (the copy after the dot dropped)", len(top))
	}
	if body := top[2].blocks[0].instrs; len(body) != 1 {
		t.Errorf("%d statements in the scan, want 1 (both copies dropped)", len(body))
	}
	if got := runHand(t, pol, `{"list": ["p", "q"]}`); got != `{"p": 0, "q": 1}` {
		t.Errorf("result %s", got)
	}
}
