// Package irvm evaluates a Rego query compiled by OPA's planner (its
// intermediate representation, package ir) directly on OPA's ast values.
//
// The planner turns rule bodies into straight-line statements over local
// variables, so evaluating them skips topdown's unification, bindings and
// backtracking. The semantics are those of OPA's Wasm compiler, the
// planner's reference consumer: every block is a level that a failing
// statement leaves (break 0) and that BreakStmt leaves n+1 of; a scan
// counts two levels (its loop and the block around it); a function or plan
// runs its blocks in order until one returns. Built-in functions are OPA's
// own topdown implementations. Rule functions without arguments are
// memoized for one evaluation, and those that read neither input nor data
// (a policy's constant policy_data, say) once for the program's life; a
// function called again with the same arguments in one evaluation answers
// from its first calls (argmemo.go).
//
// New compiles the statements once (compile.go): an opcode, resolved
// operands and call targets; a copy of a local nothing else reads is
// folded into the statement that sets it, or into the scan whose key or
// value it copies. Built-ins on strings run on Go strings (strings.go),
// and regex.match on a dfa made from the pattern's compiled program
// (dfa.go). Values may be lazy (lazy.go): a request
// encoded as it is read, and sets and arrays that statements build, made
// into OPA values only where a use needs the whole value. Sets of strings
// stay in irvm's own sorted form through the operations irvm implements
// (sets.go), and constants are read through views with Go-map members
// (constview.go). Evaluation states are reused, cleared, from one Eval to
// the next.
//
// New refuses plans it cannot run exactly (dynamic calls, non-deterministic
// or unknown built-ins); callers then fall back to topdown.
package irvm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrConflict is returned when a complete rule or function produces two
// different values, or an object gets two values for one key (OPA's
// eval_conflict_error).
var ErrConflict = errors.New("conflicting values")

// Program is one planned query, ready to evaluate. It is safe for
// concurrent use.
type Program struct {
	plan     *ir.Plan
	blocks   []*block // the plan's, compiled
	planSize int      // locals the plan uses
	funcs    map[string]*function
	nfuncs   int
	calls    map[*ir.CallStmt]callTarget
	strings  []*ast.Term // the string constants
	numbers  []*ast.Term // the same, as numbers, where they parse as one
	builtins map[string]topdown.BuiltinFunc
	// free holds evaluation states for reuse, cleared (evaluation.release).
	free sync.Pool
	// badOperand is set by compiling an operand of an unknown kind.
	badOperand error
	// ndots is the number of dots with a constant key (instr.dot).
	ndots int
	// regexes holds compiled patterns of regex.match calls, by pattern,
	// nregexes about how many (regexOf).
	regexes  sync.Map
	nregexes atomic.Int32
	// dfaStates counts the states of the patterns' dfas (dfa.go).
	dfaStates atomic.Int32
	// uses counts the reads and writes of each local of the function
	// being compiled (compile.go fusedCopy).
	uses map[ir.Local]localUse
}

// callTarget is what a CallStmt calls: a planned function or a built-in.
type callTarget struct {
	fn      *function
	builtin topdown.BuiltinFunc
	count   bool // the built-in is count
	member  bool // the built-in is internal.member_2 (x in coll)
	// fast names a built-in irvm runs itself on some operands (sets of
	// strings, arrays being built; eval.go call).
	fast fastBuiltin
}

type fastBuiltin uint8

const (
	fastNone fastBuiltin = iota
	fastMinus
	fastAnd
	fastOr
	fastConcat
	fastAnyPrefixMatch
	fastStartsWith
	fastEndsWith
	fastContains
	fastRegexMatch
	fastIsNull
)

// fastBuiltinOf names the built-ins irvm runs itself on some operands.
func fastBuiltinOf(name string) fastBuiltin {
	switch name {
	case "minus":
		return fastMinus
	case "and":
		return fastAnd
	case "or":
		return fastOr
	case "concat":
		return fastConcat
	case "strings.any_prefix_match":
		return fastAnyPrefixMatch
	case "startswith":
		return fastStartsWith
	case "endswith":
		return fastEndsWith
	case "contains":
		return fastContains
	case "regex.match":
		return fastRegexMatch
	case "is_null":
		return fastIsNull
	}
	return fastNone
}

type function struct {
	fn     *ir.Func
	blocks []*block // fn's, compiled
	index  int      // in an evaluation's memo
	size   int      // locals it uses
	// pure: reads neither input nor data, calls only pure functions and
	// deterministic built-ins, has no with: its value never changes.
	pure bool
	// val is a pure function's value once known (computed under mu).
	mu  sync.Mutex
	val atomic.Pointer[constValue]
}

// constValue is a pure function's value (nil: undefined).
type constValue struct{ t *ast.Term }

// unsupported reports the built-ins that need evaluator state this package
// does not provide, or that relate one input to many outputs.
func unsupported(name string) bool {
	switch name {
	case "trace", "internal.print", "print", "opa.runtime", "walk", "internal.test_case":
		return true
	}
	return false
}

// New checks policy (with exactly one plan) and prepares it.
func New(policy *ir.Policy) (*Program, error) {
	if policy == nil || policy.Plans == nil || len(policy.Plans.Plans) != 1 {
		return nil, errors.New("irvm: want a policy with exactly one plan")
	}
	p := &Program{
		plan:     policy.Plans.Plans[0],
		funcs:    map[string]*function{},
		builtins: map[string]topdown.BuiltinFunc{},
	}
	if policy.Static != nil {
		for _, s := range policy.Static.Strings {
			p.strings = append(p.strings, ast.StringTerm(s.Value))
			var n *ast.Term
			if _, err := json.Number(s.Value).Float64(); err == nil {
				n = ast.NumberTerm(json.Number(s.Value))
			}
			p.numbers = append(p.numbers, n)
		}
		for _, b := range policy.Static.BuiltinFuncs {
			if unsupported(b.Name) {
				return nil, fmt.Errorf("irvm: built-in %s is not supported", b.Name)
			}
			if d, ok := ast.BuiltinMap[b.Name]; ok && d.Nondeterministic {
				return nil, fmt.Errorf("irvm: built-in %s is not deterministic", b.Name)
			}
			f := topdown.GetBuiltin(b.Name)
			if f == nil {
				return nil, fmt.Errorf("irvm: built-in %s has no implementation", b.Name)
			}
			p.builtins[b.Name] = f
		}
	}
	if policy.Funcs != nil {
		for i, f := range policy.Funcs.Funcs {
			p.funcs[f.Name] = &function{fn: f, index: i, size: frameSize(f.Blocks, append(f.Params, f.Return)...)}
		}
		p.nfuncs = len(policy.Funcs.Funcs)
	}
	p.planSize = frameSize(p.plan.Blocks, ir.Input, ir.Data)
	p.calls = map[*ir.CallStmt]callTarget{}
	var err error
	walkBlocks(p.plan.Blocks, func(s ir.Stmt) {
		if err != nil {
			return
		}
		err = p.check(s)
	})
	for _, f := range p.funcs {
		walkBlocks(f.fn.Blocks, func(s ir.Stmt) {
			if err != nil {
				return
			}
			err = p.check(s)
		})
	}
	if err != nil {
		return nil, err
	}
	p.markPure()
	p.uses = localUses(p.plan.Blocks, ir.Input, ir.Data)
	p.blocks = p.compileBlocks(p.plan.Blocks)
	for _, f := range p.funcs {
		p.uses = localUses(f.fn.Blocks, append(f.fn.Params, f.fn.Return)...)
		f.blocks = p.compileBlocks(f.fn.Blocks)
	}
	p.uses = nil
	if p.badOperand != nil {
		return nil, p.badOperand
	}
	return p, nil
}

// check refuses statements this package does not evaluate.
func (p *Program) check(s ir.Stmt) error {
	switch s := s.(type) {
	case *ir.CallDynamicStmt:
		return errors.New("irvm: dynamic calls are not supported")
	case *ir.CallStmt:
		if f, ok := p.funcs[s.Func]; ok {
			if len(s.Args) != len(f.fn.Params) {
				return fmt.Errorf("irvm: %s called with %d arguments, want %d", s.Func, len(s.Args), len(f.fn.Params))
			}
			p.calls[s] = callTarget{fn: f}
			return nil
		}
		b, ok := p.builtins[s.Func]
		if !ok {
			return fmt.Errorf("irvm: call of unknown function %s", s.Func)
		}
		p.calls[s] = callTarget{builtin: b, count: s.Func == "count", member: s.Func == "internal.member_2", fast: fastBuiltinOf(s.Func)}
	case *ir.MakeNumberRefStmt:
		if s.Index < 0 || s.Index >= len(p.numbers) || p.numbers[s.Index] == nil {
			return fmt.Errorf("irvm: number constant %d is not a number", s.Index)
		}
	}
	return nil
}

// markPure finds the functions whose value is a constant.
func (p *Program) markPure() {
	state := map[string]int{} // 0 unknown, 1 visiting, 2 pure, 3 impure
	var visit func(name string) bool
	visit = func(name string) bool {
		switch state[name] {
		case 1, 3:
			return false
		case 2:
			return true
		}
		f := p.funcs[name]
		if f == nil {
			return false
		}
		state[name] = 1
		pure := len(f.fn.Params) == 2
		walkBlocks(f.fn.Blocks, func(s ir.Stmt) {
			if !pure {
				return
			}
			switch s := s.(type) {
			case *ir.CallStmt:
				if _, isFunc := p.funcs[s.Func]; isFunc {
					pure = visit(s.Func)
					for _, a := range s.Args[2:] {
						pure = pure && !readsRoot(a)
					}
					return
				}
				for _, a := range s.Args {
					pure = pure && !readsRoot(a)
				}
			case *ir.WithStmt:
				pure = false
			default:
				pure = !stmtReadsRoot(s)
			}
		})
		if pure {
			state[name] = 2
		} else {
			state[name] = 3
		}
		f.pure = pure
		return pure
	}
	for name := range p.funcs {
		visit(name)
	}
}

func readsRoot(o ir.Operand) bool {
	l, ok := o.Value.(ir.Local)
	return ok && (l == ir.Input || l == ir.Data)
}

func isRoot(l ir.Local) bool { return l == ir.Input || l == ir.Data }

// stmtReadsRoot reports whether s reads the input or data local.
func stmtReadsRoot(s ir.Stmt) bool {
	root := false
	stmtLocals(s, func(l ir.Local) { root = root || isRoot(l) }, func(ir.Local) {})
	return root
}

// stmtLocals calls read for every local s reads (operands, scanned or
// modified collections) and write for every local it sets. Nested blocks
// are not entered.
func stmtLocals(s ir.Stmt, read, write func(ir.Local)) {
	op := func(os ...ir.Operand) {
		for _, o := range os {
			if l, ok := o.Value.(ir.Local); ok {
				read(l)
			}
		}
	}
	switch s := s.(type) {
	case *ir.ReturnLocalStmt:
		read(s.Source)
	case *ir.CallStmt:
		op(s.Args...)
		write(s.Result)
	case *ir.DotStmt:
		op(s.Source, s.Key)
		write(s.Target)
	case *ir.LenStmt:
		op(s.Source)
		write(s.Target)
	case *ir.ScanStmt:
		read(s.Source)
		write(s.Key)
		write(s.Value)
	case *ir.AssignVarStmt:
		op(s.Source)
		write(s.Target)
	case *ir.AssignVarOnceStmt:
		op(s.Source)
		write(s.Target)
	case *ir.EqualStmt:
		op(s.A, s.B)
	case *ir.NotEqualStmt:
		op(s.A, s.B)
	case *ir.IsArrayStmt:
		op(s.Source)
	case *ir.IsObjectStmt:
		op(s.Source)
	case *ir.IsSetStmt:
		op(s.Source)
	case *ir.IsDefinedStmt:
		read(s.Source)
	case *ir.IsUndefinedStmt:
		read(s.Source)
	case *ir.ArrayAppendStmt:
		op(s.Value)
		read(s.Array)
	case *ir.ObjectInsertStmt:
		op(s.Key, s.Value)
		read(s.Object)
	case *ir.ObjectInsertOnceStmt:
		op(s.Key, s.Value)
		read(s.Object)
	case *ir.ObjectMergeStmt:
		read(s.A)
		read(s.B)
		write(s.Target)
	case *ir.SetAddStmt:
		op(s.Value)
		read(s.Set)
	case *ir.WithStmt:
		op(s.Value)
		read(s.Local)
	case *ir.ResultSetAddStmt:
		read(s.Value)
	case *ir.AssignIntStmt:
		write(s.Target)
	case *ir.ResetLocalStmt:
		write(s.Target)
	case *ir.MakeNullStmt:
		write(s.Target)
	case *ir.MakeNumberIntStmt:
		write(s.Target)
	case *ir.MakeNumberRefStmt:
		write(s.Target)
	case *ir.MakeArrayStmt:
		write(s.Target)
	case *ir.MakeObjectStmt:
		write(s.Target)
	case *ir.MakeSetStmt:
		write(s.Target)
	}
}

// frameSize is one more than the highest local that blocks (or extra) use.
func frameSize(blocks []*ir.Block, extra ...ir.Local) int {
	n := ir.Local(0)
	see := func(l ir.Local) { n = max(n, l) }
	for _, l := range extra {
		see(l)
	}
	walkBlocks(blocks, func(s ir.Stmt) { stmtLocals(s, see, see) })
	return int(n) + 1
}

// walkBlocks calls f for every statement in blocks, nested ones included.
func walkBlocks(blocks []*ir.Block, f func(ir.Stmt)) {
	for _, b := range blocks {
		for _, s := range b.Stmts {
			f(s)
			switch s := s.(type) {
			case *ir.BlockStmt:
				walkBlocks(s.Blocks, f)
			case *ir.ScanStmt:
				walkBlocks([]*ir.Block{s.Block}, f)
			case *ir.NotStmt:
				walkBlocks([]*ir.Block{s.Block}, f)
			case *ir.WithStmt:
				walkBlocks([]*ir.Block{s.Block}, f)
			}
		}
	}
}

// Eval evaluates the plan with input and data (either may be nil: absent)
// and returns its result set: one value per result, each an object of the
// query's variables.
func (p *Program) Eval(ctx context.Context, input, data ast.Value) ([]ast.Value, error) {
	e := p.acquire(ctx)
	defer e.release()
	fl := e.push(p.planSize)
	if input != nil {
		fl[ir.Input] = ast.NewTerm(input)
	}
	if data != nil {
		fl[ir.Data] = ast.NewTerm(data)
	}
	for _, b := range p.blocks {
		sig, err := e.block(fl, b)
		if err != nil {
			return nil, err
		}
		if sig.kind == sigReturn {
			break
		}
	}
	out := make([]ast.Value, len(e.results))
	for i, t := range e.results {
		out[i] = value(t)
	}
	return out, nil
}

// acquire returns an evaluation state for one Eval: a released one when
// there is one (its memo, results and stack cleared), else a new one.
func (p *Program) acquire(ctx context.Context) *evaluation {
	e, _ := p.free.Get().(*evaluation)
	if e == nil {
		e = &evaluation{
			p:     p,
			memo:  make([]*ast.Term, p.nfuncs),
			calls: make([][]argCall, p.nfuncs),
			done:  make([]bool, p.nfuncs),
			dots:  make([]objDot, p.ndots),
		}
		e.iter = e.setOut
	}
	e.ctx = ctx
	e.bctx = topdown.BuiltinContext{Context: ctx, Seed: rand.Reader}
	return e
}

// release clears e of everything one evaluation left in it (so that no
// value, memoized or not, reaches the next one, and none is kept alive)
// and puts it up for reuse.
func (e *evaluation) release() {
	clear(e.memo)
	clear(e.done)
	for i := range e.calls {
		clear(e.calls[i])
		e.calls[i] = e.calls[i][:0]
	}
	clear(e.dots)
	e.sets.Reset()
	e.arrays.Reset()
	e.objects.Reset()
	e.terms.Reset()
	clear(e.results)
	e.results = e.results[:0]
	clear(e.stack[:cap(e.stack)])
	e.stack = e.stack[:0]
	clear(e.args[:cap(e.args)])
	e.args = e.args[:0]
	e.out = nil
	e.steps = 0
	e.ctx = nil
	e.bctx = topdown.BuiltinContext{}
	e.p.free.Put(e)
}
