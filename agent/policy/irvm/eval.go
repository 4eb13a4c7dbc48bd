package irvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// evaluation is the state of one Eval.
type evaluation struct {
	p       *Program
	ctx     context.Context
	bctx    topdown.BuiltinContext
	memo    map[string]*ast.Term // argument-less rule functions, this evaluation
	results []*ast.Term
	steps   int
}

// locals is one function's variables; nil is undefined. Terms, not values:
// object members, array elements and built-in operands are terms, so
// holding terms saves a wrapper allocation at every use.
type locals []*ast.Term

func newLocals() *locals {
	l := make(locals, 0, 16)
	return &l
}

func (l *locals) get(i ir.Local) *ast.Term {
	if int(i) < len(*l) {
		return (*l)[i]
	}
	return nil
}

func (l *locals) set(i ir.Local, v *ast.Term) {
	for int(i) >= len(*l) {
		*l = append(*l, nil)
	}
	(*l)[i] = v
}

// signal is how a block ended.
type signal struct {
	kind sigKind
	n    uint32    // sigBreak: levels to leave beyond the block itself
	val  *ast.Term // sigReturn
}

type sigKind uint8

const (
	sigDone   sigKind = iota // ran to its end
	sigBreak                 // left (a failing statement is a break of 0)
	sigReturn                // a ReturnLocalStmt
)

var (
	done      = signal{}
	failed    = signal{kind: sigBreak}
	trueTerm  = ast.InternedTerm(true)
	falseTerm = ast.InternedTerm(false)
	nullTerm  = ast.InternedNullTerm
)

// cancelEvery is how many statements run between context checks.
const cancelEvery = 1 << 12

func (e *evaluation) operand(l *locals, o ir.Operand) *ast.Term {
	switch v := o.Value.(type) {
	case ir.Local:
		return l.get(v)
	case ir.StringIndex:
		return e.p.strings[v]
	case ir.Bool:
		if v {
			return trueTerm
		}
		return falseTerm
	}
	return nil
}

// value is t's value, nil for an undefined t.
func value(t *ast.Term) ast.Value {
	if t == nil {
		return nil
	}
	return t.Value
}

// outer turns the signal of a nested block into the signal of the block
// that holds it, given how many levels the nesting statement adds.
func outer(sig signal, levels uint32) (signal, bool) {
	switch sig.kind {
	case sigReturn:
		return sig, true
	case sigBreak:
		if sig.n >= levels {
			return signal{kind: sigBreak, n: sig.n - levels}, true
		}
	}
	return done, false
}

func (e *evaluation) block(l *locals, b *ir.Block) (signal, error) {
	for _, s := range b.Stmts {
		e.steps++
		if e.steps%cancelEvery == 0 {
			if err := e.ctx.Err(); err != nil {
				return done, err
			}
		}
		sig, err := e.stmt(l, s)
		if err != nil {
			return done, err
		}
		if sig.kind != sigDone {
			return sig, nil
		}
	}
	return done, nil
}

// stmt runs one statement; a signal other than done leaves the block.
func (e *evaluation) stmt(l *locals, s ir.Stmt) (signal, error) {
	switch s := s.(type) {
	case *ir.DotStmt:
		t := dot(e.operand(l, s.Source), e.operand(l, s.Key))
		if t == nil {
			return failed, nil
		}
		l.set(s.Target, t)
	case *ir.AssignVarStmt:
		l.set(s.Target, e.operand(l, s.Source))
	case *ir.AssignVarOnceStmt:
		t := e.operand(l, s.Source)
		if cur := l.get(s.Target); cur != nil && ast.Compare(cur.Value, value(t)) != 0 {
			return done, fmt.Errorf("%s: complete rule has %w", where(s.Location), ErrConflict)
		}
		l.set(s.Target, t)
	case *ir.EqualStmt:
		a, b := e.operand(l, s.A), e.operand(l, s.B)
		if a == nil || b == nil || (a != b && ast.Compare(a.Value, b.Value) != 0) {
			return failed, nil
		}
	case *ir.NotEqualStmt:
		a, b := e.operand(l, s.A), e.operand(l, s.B)
		if a == nil || b == nil || a == b || ast.Compare(a.Value, b.Value) == 0 {
			return failed, nil
		}
	case *ir.CallStmt:
		t, err := e.call(l, s)
		if err != nil {
			return done, err
		}
		if t == nil {
			return failed, nil
		}
		l.set(s.Result, t)
	case *ir.BlockStmt:
		for _, b := range s.Blocks {
			sig, err := e.block(l, b)
			if err != nil {
				return done, err
			}
			if out, leave := outer(sig, 1); leave {
				return out, nil
			}
		}
	case *ir.BreakStmt:
		return signal{kind: sigBreak, n: s.Index}, nil
	case *ir.ScanStmt:
		return e.scan(l, s)
	case *ir.NotStmt:
		sig, err := e.block(l, s.Block)
		if err != nil {
			return done, err
		}
		if sig.kind == sigDone {
			return failed, nil // the negated block is defined
		}
		if out, leave := outer(sig, 1); leave {
			return out, nil
		}
	case *ir.WithStmt:
		return e.with(l, s)
	case *ir.ReturnLocalStmt:
		return signal{kind: sigReturn, val: l.get(s.Source)}, nil
	case *ir.ResetLocalStmt:
		l.set(s.Target, nil)
	case *ir.MakeNullStmt:
		l.set(s.Target, nullTerm)
	case *ir.MakeNumberIntStmt:
		l.set(s.Target, ast.InternedTerm(int(s.Value)))
	case *ir.AssignIntStmt:
		l.set(s.Target, ast.InternedTerm(int(s.Value)))
	case *ir.MakeNumberRefStmt:
		l.set(s.Target, e.p.numbers[s.Index])
	case *ir.MakeArrayStmt:
		l.set(s.Target, ast.NewTerm(ast.NewArrayWithCapacity(int(s.Capacity))))
	case *ir.MakeObjectStmt:
		l.set(s.Target, ast.NewTerm(ast.NewObject()))
	case *ir.MakeSetStmt:
		l.set(s.Target, ast.NewTerm(ast.NewSet()))
	case *ir.ArrayAppendStmt:
		t := l.get(s.Array)
		arr, ok := value(t).(*ast.Array)
		if !ok {
			return done, fmt.Errorf("%s: append to a %s", where(s.Location), typeName(t))
		}
		l.set(s.Array, ast.NewTerm(arr.Append(e.operand(l, s.Value))))
	case *ir.ObjectInsertStmt:
		t := l.get(s.Object)
		obj, ok := value(t).(ast.Object)
		if !ok {
			return done, fmt.Errorf("%s: insert into a %s", where(s.Location), typeName(t))
		}
		obj.Insert(e.operand(l, s.Key), e.operand(l, s.Value))
	case *ir.ObjectInsertOnceStmt:
		t := l.get(s.Object)
		obj, ok := value(t).(ast.Object)
		if !ok {
			return done, fmt.Errorf("%s: insert into a %s", where(s.Location), typeName(t))
		}
		k, v := e.operand(l, s.Key), e.operand(l, s.Value)
		if cur := obj.Get(k); cur != nil {
			if ast.Compare(cur.Value, value(v)) != 0 {
				return done, fmt.Errorf("%s: object key %v has %w", where(s.Location), k, ErrConflict)
			}
			return done, nil
		}
		obj.Insert(k, v)
	case *ir.ObjectMergeStmt:
		ta, tb := l.get(s.A), l.get(s.B)
		a, aok := value(ta).(ast.Object)
		b, bok := value(tb).(ast.Object)
		if !aok || !bok {
			return done, fmt.Errorf("%s: merge of a %s and a %s: %w", where(s.Location), typeName(ta), typeName(tb), ErrConflict)
		}
		m, ok := a.Merge(b)
		if !ok {
			return done, fmt.Errorf("%s: merge: %w", where(s.Location), ErrConflict)
		}
		l.set(s.Target, ast.NewTerm(m))
	case *ir.SetAddStmt:
		t := l.get(s.Set)
		set, ok := value(t).(ast.Set)
		if !ok {
			return done, fmt.Errorf("%s: add to a %s", where(s.Location), typeName(t))
		}
		set.Add(e.operand(l, s.Value))
	case *ir.LenStmt:
		n, ok := length(value(e.operand(l, s.Source)))
		if !ok {
			return failed, nil
		}
		l.set(s.Target, ast.InternedTerm(n))
	case *ir.IsArrayStmt:
		if _, ok := value(e.operand(l, s.Source)).(*ast.Array); !ok {
			return failed, nil
		}
	case *ir.IsObjectStmt:
		if _, ok := value(e.operand(l, s.Source)).(ast.Object); !ok {
			return failed, nil
		}
	case *ir.IsSetStmt:
		if _, ok := value(e.operand(l, s.Source)).(ast.Set); !ok {
			return failed, nil
		}
	case *ir.IsDefinedStmt:
		if l.get(s.Source) == nil {
			return failed, nil
		}
	case *ir.IsUndefinedStmt:
		if l.get(s.Source) != nil {
			return failed, nil
		}
	case *ir.ResultSetAddStmt:
		e.results = append(e.results, l.get(s.Value))
	case *ir.NopStmt:
	default:
		return done, fmt.Errorf("irvm: statement %T is not supported", s)
	}
	return done, nil
}

// scan runs the body once per element; the body is the loop level (a
// break of 0 continues with the next element) and the scan adds a second
// level around it (a break of 1 ends the scan).
func (e *evaluation) scan(l *locals, s *ir.ScanStmt) (signal, error) {
	body := func(k, v *ast.Term) (signal, bool, error) {
		l.set(s.Key, k)
		l.set(s.Value, v)
		sig, err := e.block(l, s.Block)
		if err != nil {
			return done, true, err
		}
		switch {
		case sig.kind == sigReturn:
			return sig, true, nil
		case sig.kind == sigBreak && sig.n == 1:
			return done, true, nil
		case sig.kind == sigBreak && sig.n >= 2:
			return signal{kind: sigBreak, n: sig.n - 2}, true, nil
		}
		return done, false, nil
	}
	var (
		out  = done
		stop bool
		err  error
	)
	switch src := value(l.get(s.Source)).(type) {
	case *ast.Array:
		for i := 0; i < src.Len() && !stop; i++ {
			out, stop, err = body(ast.InternedTerm(i), src.Elem(i))
		}
	case ast.Object:
		for _, k := range src.Keys() {
			if out, stop, err = body(k, src.Get(k)); stop {
				break
			}
		}
	case ast.Set:
		for _, k := range src.Slice() {
			if out, stop, err = body(k, k); stop {
				break
			}
		}
	}
	return out, err
}

// with runs the body with a local (or a path in it) replaced, and restores
// it; memoized rule values are not shared across the replacement.
func (e *evaluation) with(l *locals, s *ir.WithStmt) (signal, error) {
	saved := l.get(s.Local)
	t := e.operand(l, s.Value)
	if len(s.Path) > 0 {
		path := make([]*ast.Term, len(s.Path))
		for i, idx := range s.Path {
			path[i] = e.p.strings[idx]
		}
		t = upsert(saved, path, t)
	}
	l.set(s.Local, t)
	memo := e.memo
	e.memo = map[string]*ast.Term{}
	sig, err := e.block(l, s.Block)
	e.memo = memo
	l.set(s.Local, saved)
	if err != nil {
		return done, err
	}
	if sig.kind == sigDone {
		return done, nil
	}
	if sig.kind == sigBreak && sig.n == 0 {
		return failed, nil // the body is undefined
	}
	out, _ := outer(sig, 1)
	return out, nil
}

// upsert returns a copy of doc with value at path, making objects on the way.
func upsert(doc *ast.Term, path []*ast.Term, val *ast.Term) *ast.Term {
	if len(path) == 0 {
		return val
	}
	obj, ok := value(doc).(ast.Object)
	if !ok {
		obj = ast.NewObject()
	} else {
		obj = obj.Copy()
	}
	obj.Insert(path[0], upsert(obj.Get(path[0]), path[1:], val))
	return ast.NewTerm(obj)
}

// call runs a planned function or a built-in; nil means undefined.
func (e *evaluation) call(l *locals, s *ir.CallStmt) (*ast.Term, error) {
	if f, ok := e.p.funcs[s.Func]; ok {
		return e.callFunc(l, f, s)
	}
	var buf [4]*ast.Term
	args := buf[:0]
	for _, a := range s.Args {
		t := e.operand(l, a)
		if t == nil {
			return nil, nil
		}
		args = append(args, t)
	}
	var out *ast.Term
	err := e.p.builtins[s.Func](e.bctx, args, func(t *ast.Term) error {
		out = t
		return nil
	})
	if err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			return nil, fmt.Errorf("%s: %s: %w", where(s.Location), s.Func, err)
		}
		return nil, nil // as topdown without strict built-in errors: undefined
	}
	return out, nil
}

func (e *evaluation) callFunc(l *locals, f *function, s *ir.CallStmt) (*ast.Term, error) {
	if f.pure {
		return e.constant(f)
	}
	memoize := len(s.Args) == 2
	if memoize {
		if t, ok := e.memo[s.Func]; ok {
			return t, nil
		}
	}
	fl := newLocals()
	if len(s.Args) != len(f.fn.Params) {
		return nil, fmt.Errorf("irvm: %s called with %d arguments, want %d", f.fn.Name, len(s.Args), len(f.fn.Params))
	}
	for i, p := range f.fn.Params {
		fl.set(p, e.operand(l, s.Args[i]))
	}
	t, err := e.run(f, fl)
	if err != nil {
		return nil, err
	}
	if memoize {
		e.memo[s.Func] = t
	}
	return t, nil
}

// constant returns a pure function's value, computing it on first use (in
// an evaluation of its own, so one caller's cancellation is not cached).
func (e *evaluation) constant(f *function) (*ast.Term, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.known {
		return f.val, nil
	}
	sub := &evaluation{p: e.p, ctx: context.WithoutCancel(e.ctx), bctx: e.bctx, memo: map[string]*ast.Term{}}
	t, err := sub.run(f, newLocals())
	if err != nil {
		return nil, err
	}
	f.val, f.known = t, true
	return t, nil
}

// run runs a function's blocks with its parameters set in fl.
func (e *evaluation) run(f *function, fl *locals) (*ast.Term, error) {
	for _, b := range f.fn.Blocks {
		sig, err := e.block(fl, b)
		if err != nil {
			return nil, err
		}
		if sig.kind == sigReturn {
			return sig.val, nil
		}
	}
	return fl.get(f.fn.Return), nil
}

// dot looks key up in v: an object member, an array element, or the key
// itself when a set holds it; nil when absent or v is not a collection.
func dot(v, key *ast.Term) *ast.Term {
	if v == nil || key == nil {
		return nil
	}
	switch c := v.Value.(type) {
	case ast.Object:
		return c.Get(key)
	case *ast.Array:
		n, ok := key.Value.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= c.Len() {
			return nil
		}
		return c.Elem(i)
	case ast.Set:
		if c.Contains(key) {
			return key
		}
	}
	return nil
}

func length(v ast.Value) (int, bool) {
	switch c := v.(type) {
	case ast.Object:
		return c.Len(), true
	case *ast.Array:
		return c.Len(), true
	case ast.Set:
		return c.Len(), true
	case ast.String:
		return len([]rune(string(c))), true
	}
	return 0, false
}

func typeName(t *ast.Term) string {
	if t == nil {
		return "undefined value"
	}
	return ast.ValueName(t.Value)
}

func where(loc ir.Location) string {
	if len(loc.Text) > 0 {
		return fmt.Sprintf("line %d (%s)", loc.Row, loc.Text)
	}
	return fmt.Sprintf("line %d", loc.Row)
}
