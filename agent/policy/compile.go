package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/print"

	"github.com/peerpod/peerpod/agent/policy/irvm"
)

// compiled is one policy, compiled once; queries are prepared once per rule.
type compiled struct {
	digest   string
	source   string
	version  ast.RegoVersion
	compiler *ast.Compiler
	store    storage.Store
	// rules are the rule names defined in package agent_policy.
	rules map[string]bool
	// consts are rules whose value is a constant boolean (a default that
	// nothing overrides, or an unconditional "X := true"): answered
	// without evaluation.
	consts       map[string]bool
	allowFailing bool

	queries map[string]*rego.PreparedEvalQuery // guarded by Engine.mu
	// programs are the rules' planned queries (nil: topdown evaluates the
	// rule); data is the data document they read (the policy state).
	programs map[string]*irvm.Program // guarded by Engine.mu
	data     ast.Value                // guarded by Engine.mu
	// pstate is the policy state (data.pstate) as a Go value; the store
	// lags behind it while storeStale (syncStore).
	pstate     any  // guarded by Engine.mu
	storeStale bool // guarded by Engine.mu
	// state is the state as data holds it, when data is a
	// stateDocument (nil before the first ops).
	state *jsonObject // guarded by Engine.mu

	printOnce     sync.Once
	printCompiler *ast.Compiler
	printErr      error
	printMu       sync.Mutex
	printQueries  map[string]*rego.PreparedEvalQuery
}

// packagePath is data.agent_policy (built, not parsed: nothing runs at
// package initialisation).
func packagePath() ast.Ref {
	return ast.Ref{ast.DefaultRootDocument, ast.StringTerm(Package)}
}

// parse parses policy as Rego v1, falling back to v0 syntax (older
// genpolicy output) when v1 does not parse it.
func parse(policy string) (*ast.Module, ast.RegoVersion, error) {
	m, errV1 := ast.ParseModuleWithOpts("policy.rego", policy, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if errV1 == nil {
		return m, ast.RegoV1, nil
	}
	m, errV0 := ast.ParseModuleWithOpts("policy.rego", policy, ast.ParserOptions{RegoVersion: ast.RegoV0})
	if errV0 == nil {
		return m, ast.RegoV0, nil
	}
	return nil, 0, fmt.Errorf("parse policy: %w", errV1)
}

func compileModule(policy string, prints bool) (*ast.Compiler, *ast.Module, ast.RegoVersion, error) {
	m, version, err := parse(policy)
	if err != nil {
		return nil, nil, 0, err
	}
	if want := packagePath(); !m.Package.Path.Equal(want) {
		return nil, nil, 0, fmt.Errorf("policy package is %s, want %s", m.Package.Path, want)
	}
	c := ast.NewCompiler().WithEnablePrintStatements(prints)
	c.Compile(map[string]*ast.Module{"policy.rego": m})
	if c.Failed() {
		return nil, nil, 0, fmt.Errorf("compile policy: %w", c.Errors)
	}
	return c, m, version, nil
}

// compile compiles policy and finds its constant rules.
func compile(ctx context.Context, policy string) (*compiled, error) {
	comp, mod, version, err := compileModule(policy, false)
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(map[string]any{"pstate": map[string]any{}}, inmem.OptRoundTripOnWrite(false))
	c := &compiled{
		digest:   digestHex(policy),
		source:   policy,
		version:  version,
		compiler: comp,
		store:    store,
		rules:    map[string]bool{},
		consts:   map[string]bool{},
		queries:  map[string]*rego.PreparedEvalQuery{},
		programs: map[string]*irvm.Program{},
		data:     ast.NewObject(ast.Item(ast.StringTerm("pstate"), ast.ObjectTerm())),
		pstate:   map[string]any{},
	}
	for _, r := range mod.Rules {
		ref := r.Head.Ref()
		if v, ok := ref[0].Value.(ast.Var); ok {
			c.rules[string(v)] = true
		}
	}
	for name := range c.rules {
		if v, ok := constantRule(comp, name); ok {
			c.consts[name] = v
		}
	}
	if c.rules[AllowFailingRule] {
		v, ok := c.consts[AllowFailingRule]
		if !ok {
			// Not a constant: evaluate it once, as Kata does at policy load.
			pq, err := c.query(ctx, AllowFailingRule)
			if err != nil {
				return nil, err
			}
			rs, err := pq.Eval(ctx, rego.EvalParsedInput(ast.NewObject()))
			if err != nil {
				return nil, fmt.Errorf("evaluate %s: %w", AllowFailingRule, err)
			}
			if len(rs) == 1 && len(rs[0].Expressions) == 1 {
				v, _ = rs[0].Expressions[0].Value.(bool)
			}
		}
		c.allowFailing = v
	}
	return c, nil
}

// constantRule reports whether data.agent_policy.<name> always has the same
// boolean value: all its definitions are one complete rule without
// arguments, else-branches or conditions and with a ground boolean value.
func constantRule(comp *ast.Compiler, name string) (value, ok bool) {
	rules := comp.GetRulesExact(packagePath().Append(ast.StringTerm(name)))
	if len(rules) != 1 {
		return false, false
	}
	r := rules[0]
	if len(r.Head.Args) != 0 || r.Else != nil || r.Head.Key != nil || r.Head.Value == nil {
		return false, false
	}
	b, isBool := r.Head.Value.Value.(ast.Boolean)
	if !isBool {
		return false, false
	}
	if len(r.Body) != 1 || !r.Body[0].IsGround() || r.Body[0].Negated || len(r.Body[0].With) != 0 {
		return false, false
	}
	t, isTerm := r.Body[0].Terms.(*ast.Term)
	if !isTerm || !t.Equal(ast.BooleanTerm(true)) {
		return false, false
	}
	return bool(b), true
}

func (c *compiled) ruleName(name string) string { return "data." + Package + "." + name }

// query returns the prepared query of rule name (caller holds Engine.mu,
// or c is not yet shared).
func (c *compiled) query(ctx context.Context, name string) (*rego.PreparedEvalQuery, error) {
	if pq, ok := c.queries[name]; ok {
		return pq, nil
	}
	pq, err := rego.New(
		rego.Query(c.ruleName(name)),
		rego.Compiler(c.compiler),
		rego.Store(c.store),
		rego.SetRegoVersion(c.version),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", c.ruleName(name), err)
	}
	c.queries[name] = &pq
	return &pq, nil
}

// decide evaluates rule name on input and applies the policy-state ops of
// an allowing result. The caller holds Engine.mu.
func (c *compiled) decide(ctx context.Context, name string, input ast.Value) (allowed bool, reason string) {
	if !c.rules[name] {
		return false, "the policy has no rule for this request"
	}
	allowed, reason = c.decideResult(ctx, name, input)
	if !allowed {
		// The denial's prints are evaluated by topdown, on the store.
		if err := c.syncStore(ctx); err != nil {
			reason += "; " + err.Error()
		}
	}
	return allowed, reason
}

func (c *compiled) decideResult(ctx context.Context, name string, input ast.Value) (allowed bool, reason string) {
	result, err := c.eval(ctx, name, input)
	if err != nil {
		return false, "evaluation failed: " + err.Error()
	}
	if result == nil {
		return false, "the rule is undefined for this request"
	}
	switch v := result.(type) {
	case bool:
		if !v {
			return false, "the rule is false for this request"
		}
		return true, ""
	case map[string]any:
		ok, isBool := v["allowed"].(bool)
		if !isBool {
			return false, "the rule's result has no boolean \"allowed\""
		}
		if !ok {
			return false, "the rule returned allowed=false for this request"
		}
		if ops, present := v["ops"]; present && ops != nil {
			if err := c.applyOps(ops); err != nil {
				return false, "apply policy state ops: " + err.Error()
			}
		}
		return true, ""
	default:
		return false, fmt.Sprintf("the rule's result is a %T, want a boolean or {allowed, ops}", v)
	}
}

// eval evaluates rule name on input, with its planned program when it has
// one, else with topdown; nil means undefined. The caller holds Engine.mu.
func (c *compiled) eval(ctx context.Context, name string, input ast.Value) (any, error) {
	prog, planned := c.programs[name]
	if !planned {
		var err error
		if prog, err = c.plan(ctx, name); err != nil {
			prog = nil // topdown from now on
		}
		c.programs[name] = prog
	}
	if prog != nil {
		return c.evalPlan(ctx, prog, input)
	}
	pq, err := c.query(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := c.syncStore(ctx); err != nil {
		return nil, err
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(irvm.Whole(input)))
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	return rs[0].Expressions[0].Value, nil
}

// prints evaluates rule name again with print() enabled and returns what
// it printed, for the denial message. It changes no state.
func (c *compiled) prints(ctx context.Context, name string, input ast.Value) string {
	if !c.rules[name] {
		return ""
	}
	c.printOnce.Do(func() {
		c.printCompiler, _, _, c.printErr = compileModule(c.source, true)
		c.printQueries = map[string]*rego.PreparedEvalQuery{}
	})
	if c.printErr != nil {
		return ""
	}
	c.printMu.Lock()
	defer c.printMu.Unlock()
	pq, ok := c.printQueries[name]
	if !ok {
		q, err := rego.New(
			rego.Query(c.ruleName(name)),
			rego.Compiler(c.printCompiler),
			rego.Store(c.store),
			rego.SetRegoVersion(c.version),
			rego.EnablePrintStatements(true),
		).PrepareForEval(ctx)
		if err != nil {
			return ""
		}
		pq = &q
		c.printQueries[name] = pq
	}
	var h printCollector
	if _, err := pq.Eval(ctx, rego.EvalParsedInput(irvm.Whole(input)), rego.EvalPrintHook(&h)); err != nil {
		h.lines = append(h.lines, "evaluation failed: "+err.Error())
	}
	return tail(strings.Join(h.lines, " "), maxPrints)
}

type printCollector struct{ lines []string }

func (p *printCollector) Print(_ print.Context, s string) error {
	p.lines = append(p.lines, s)
	return nil
}

var errOpsShape = errors.New("ops is not a list of JSON Patch operations")
