package policy

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/peerpod/peerpod/agent/policy/irvm"
)

// A rule's query is planned by OPA's planner and run by irvm, several
// times faster than topdown; a plan irvm cannot run exactly (dynamic
// calls, non-deterministic built-ins) falls back to topdown.

// plan returns rule name's query as an irvm program.
func (c *compiled) plan(ctx context.Context, name string) (*irvm.Program, error) {
	return irvm.Compile(ctx,
		rego.Query(c.ruleName(name)),
		rego.Compiler(c.compiler),
		rego.Store(c.store),
		rego.SetRegoVersion(c.version),
	)
}

// evalPlan runs a rule's program; the result is the rule's value as
// rego returns it (nil when undefined).
func (c *compiled) evalPlan(ctx context.Context, prog *irvm.Program, input ast.Value) (any, error) {
	rs, err := prog.Eval(ctx, input, c.data)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, nil
	}
	obj, ok := rs[0].(ast.Object)
	if !ok || obj.Len() != 1 {
		return nil, fmt.Errorf("plan result is %v, want one query variable", rs[0])
	}
	var v ast.Value
	obj.Foreach(func(_, t *ast.Term) { v = t.Value })
	return jsonOf(v)
}

// jsonOf is ast.JSON(v), without its closure and iterator per member for
// the shapes results have (objects with string keys, arrays, scalars);
// anything else goes to ast.JSON.
func jsonOf(v ast.Value) (any, error) {
	switch x := v.(type) {
	case ast.Null:
		return nil, nil
	case ast.Boolean:
		return bool(x), nil
	case ast.Number:
		return json.Number(x), nil
	case ast.String:
		return string(x), nil
	case *ast.Array:
		out := make([]any, x.Len())
		for i := range out {
			e, err := jsonOf(x.Elem(i).Value)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case ast.Object:
		out := make(map[string]any, x.Len())
		var err error
		stopped := x.Until(func(k, t *ast.Term) bool {
			s, ok := k.Value.(ast.String)
			if !ok {
				return true
			}
			var e any
			if e, err = jsonOf(t.Value); err != nil {
				return true
			}
			out[string(s)] = e
			return false
		})
		if err != nil {
			return nil, err
		}
		if !stopped {
			return out, nil
		}
	}
	return ast.JSON(irvm.Whole(v))
}
