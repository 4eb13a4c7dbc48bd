package irvm

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/peerpod/peerpod/agent/policy/internal/slab"
)

// evaluation is the state of one Eval.
type evaluation struct {
	p    *Program
	ctx  context.Context
	bctx topdown.BuiltinContext
	// memo holds the values of argument-less rule functions computed in
	// this evaluation (done says which), by function index.
	memo []*ast.Term
	done []bool
	// calls holds calls of functions with arguments in this
	// evaluation, by function index (argmemo.go).
	calls [][]argCall
	// dots holds what dots with a constant key found (dotObject).
	dots []objDot
	// The sets, arrays and objects being built: their builders live in
	// the evaluation (lazy values are made whole before they go into a
	// value or a result), so they are cleared and reused with it.
	sets    slab.Slab[setBuilder]
	arrays  slab.Slab[arrayBuilder]
	objects slab.Slab[objectBuilder]
	terms   slab.Slab[*ast.Term]
	results []*ast.Term
	steps   int
	// stack holds the frames of the functions running; args is scratch
	// space for a built-in's operands and out its result (built-ins do
	// not call back); iter is e.setOut, made once.
	stack []*ast.Term
	args  []*ast.Term
	out   *ast.Term
	iter  func(*ast.Term) error
}

// setOut is the iterator built-ins hand their result to.
func (e *evaluation) setOut(t *ast.Term) error {
	e.out = t
	return nil
}

// locals is one function's frame; nil is undefined. Terms, not values:
// object members, array elements and built-in operands are terms, so
// holding terms saves a wrapper allocation at every use.
type locals = []*ast.Term

// push returns a cleared frame of n locals on the stack.
func (e *evaluation) push(n int) locals {
	top := len(e.stack)
	if top+n > cap(e.stack) {
		// A new backing array: frames handed out before stay valid
		// on the old one.
		e.stack = make([]*ast.Term, top, max(2*(top+n), 256))
	}
	e.stack = e.stack[:top+n]
	fl := e.stack[top : top+n : top+n]
	clear(fl)
	return fl
}

// pop releases the top frame of n locals.
func (e *evaluation) pop(n int) { e.stack = e.stack[:len(e.stack)-n] }

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

// cancelEvery is about how many statements run between context checks.
const cancelEvery = 1 << 12

// operand returns o's value, made whole if it is Lazy.
func operandOf(l locals, o operand) *ast.Term {
	return materialize(raw(l, o))
}

// raw returns o's value as it is, perhaps Lazy: for the statements that
// only pass it on or look into it.
func raw(l locals, o operand) *ast.Term {
	if o.term != nil {
		return o.term
	}
	return l[o.local]
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

func (e *evaluation) block(l locals, b *block) (signal, error) {
	// Statements are counted a block at a time.
	if e.steps += len(b.instrs); e.steps >= cancelEvery {
		e.steps = 0
		if err := e.ctx.Err(); err != nil {
			return done, err
		}
	}
	for i := range b.instrs {
		in := &b.instrs[i]
		// The most frequent statements, without a call of stmt (and its
		// large frame).
		switch in.op {
		case opAssignVar:
			l[in.target] = raw(l, in.a)
			continue
		case opResetLocal:
			l[in.target] = nil
			continue
		case opIsDefined:
			if raw(l, in.a) == nil {
				return failed, nil
			}
			continue
		case opIsUndefined:
			if raw(l, in.a) != nil {
				return failed, nil
			}
			continue
		case opDot:
			t := e.dotStmt(l, in)
			if t == nil {
				return failed, nil
			}
			l[in.target] = t
			continue
		case opEqual:
			ra, rb := raw(l, in.a), raw(l, in.b)
			if ra == nil || rb == nil || lengthsDiffer(ra, rb) || !equal(materialize(ra), materialize(rb)) {
				return failed, nil
			}
			continue
		case opNotEqual:
			ra, rb := raw(l, in.a), raw(l, in.b)
			if ra == nil || rb == nil || !lengthsDiffer(ra, rb) && equal(materialize(ra), materialize(rb)) {
				return failed, nil
			}
			continue
		}
		sig, err := e.stmt(l, in)
		if err != nil {
			return done, err
		}
		if sig.kind != sigDone {
			return sig, nil
		}
	}
	return done, nil
}

// dotStmt is what a DotStmt finds, nil for nothing.
func (e *evaluation) dotStmt(l locals, in *instr) *ast.Term {
	src := raw(l, in.a)
	switch v := value(src).(type) {
	case *lazyValue:
		if v.slotted != nil && in.b.term != nil {
			return dotSlot(in, v.slotted)
		}
	case ast.Object:
		if in.b.term != nil {
			return e.dotObject(in, v)
		}
	}
	return dot(src, operandOf(l, in.b))
}

// stmt runs one statement (but those block runs itself); a signal other
// than done leaves the block.
func (e *evaluation) stmt(l locals, in *instr) (signal, error) {
	switch in.op {
	case opAssignVarOnce:
		// As it is (a set or array being built stays one): whole only to
		// compare with a value already there.
		t := raw(l, in.a)
		if cur := l[in.target]; cur != nil && ast.Compare(materialize(cur).Value, value(materialize(t))) != 0 {
			return done, fmt.Errorf("%s: complete rule has %w", where(in.s.(*ir.AssignVarOnceStmt).Location), ErrConflict)
		}
		l[in.target] = t
	case opCall:
		t, err := e.call(l, in)
		if err != nil {
			return done, err
		}
		if t == nil {
			return failed, nil
		}
		l[in.target] = t
	case opBlock:
		for _, b := range in.blocks {
			sig, err := e.block(l, b)
			if err != nil {
				return done, err
			}
			if out, leave := outer(sig, 1); leave {
				return out, nil
			}
		}
	case opBreak:
		return signal{kind: sigBreak, n: in.s.(*ir.BreakStmt).Index}, nil
	case opScan:
		return e.scan(l, in)
	case opNot:
		sig, err := e.block(l, in.blocks[0])
		if err != nil {
			return done, err
		}
		if sig.kind == sigDone {
			return failed, nil // the negated block is defined
		}
		if out, leave := outer(sig, 1); leave {
			return out, nil
		}
	case opWith:
		return e.with(l, in)
	case opReturn:
		return signal{kind: sigReturn, val: raw(l, in.a)}, nil
	case opMakeNull:
		l[in.target] = nullTerm
	case opMakeNumberInt, opAssignInt, opMakeNumberRef:
		l[in.target] = in.a.term
	case opMakeArray:
		l[in.target] = e.newArrayBuilder(int(in.s.(*ir.MakeArrayStmt).Capacity))
	case opMakeObject:
		l[in.target] = e.newObjectBuilder()
	case opMakeSet:
		l[in.target] = e.newSetBuilder(&in.sizeHint)
	case opArrayAppend:
		t := l[in.target]
		v := operandOf(l, in.a)
		if appendTo(t, v) {
			break
		}
		arr, ok := value(t).(*ast.Array)
		if !ok {
			return done, fmt.Errorf("%s: append to a %s", where(in.s.(*ir.ArrayAppendStmt).Location), typeName(t))
		}
		// In place, as the Wasm target appends.
		t.Value = arr.Append(v)
	case opObjectInsert:
		b, lz, err := e.insertInto(l, in, in.s.(*ir.ObjectInsertStmt).Location)
		if err != nil {
			return done, err
		}
		b.insert(lz, operandOf(l, in.a), operandOf(l, in.b))
	case opObjectInsertOnce:
		loc := in.s.(*ir.ObjectInsertOnceStmt).Location
		b, lz, err := e.insertInto(l, in, loc)
		if err != nil {
			return done, err
		}
		k, v := operandOf(l, in.a), operandOf(l, in.b)
		if cur := b.Member(k); cur != nil {
			if ast.Compare(cur.Value, value(v)) != 0 {
				return done, fmt.Errorf("%s: object key %v has %w", where(loc), k, ErrConflict)
			}
			return done, nil
		}
		b.insert(lz, k, v)
	case opObjectMerge:
		loc := in.s.(*ir.ObjectMergeStmt).Location
		ta, tb := operandOf(l, in.a), operandOf(l, in.b)
		a, aok := value(ta).(ast.Object)
		b, bok := value(tb).(ast.Object)
		if !aok || !bok {
			return done, fmt.Errorf("%s: merge of a %s and a %s: %w", where(loc), typeName(ta), typeName(tb), ErrConflict)
		}
		m, ok := a.Merge(b)
		if !ok {
			return done, fmt.Errorf("%s: merge: %w", where(loc), ErrConflict)
		}
		l[in.target] = ast.NewTerm(m)
	case opSetAdd:
		t := l[in.target]
		v := operandOf(l, in.a)
		if addTo(t, v) {
			break
		}
		set, ok := value(t).(ast.Set)
		if !ok {
			return done, fmt.Errorf("%s: add to a %s", where(in.s.(*ir.SetAddStmt).Location), typeName(t))
		}
		set.Add(v)
	case opLen:
		// A lazy collection that knows its length is not made whole.
		if lz, ok := value(raw(l, in.a)).(*lazyValue); ok {
			if n, ok := lz.Lazy.(interface{ Len() int }); ok {
				l[in.target] = ast.InternedTerm(n.Len())
				break
			}
		}
		n, ok := length(value(operandOf(l, in.a)))
		if !ok {
			return failed, nil
		}
		l[in.target] = ast.InternedTerm(n)
	case opIsArray:
		if typeOf(raw(l, in.a)) != "array" {
			return failed, nil
		}
	case opIsObject:
		if typeOf(raw(l, in.a)) != "object" {
			return failed, nil
		}
	case opIsSet:
		if typeOf(raw(l, in.a)) != "set" {
			return failed, nil
		}
	case opResultSetAdd:
		e.results = append(e.results, materialize(raw(l, in.a)))
	case opNop:
	default:
		return done, fmt.Errorf("irvm: statement %T is not supported", in.s)
	}
	return done, nil
}

// insertInto returns the object an insert statement fills: an
// objectBuilder's; any other object is first replaced in its local by a
// builder of a copy, as objects irvm has handed out do not change.
func (e *evaluation) insertInto(l locals, in *instr, loc ir.Location) (*objectBuilder, *lazyValue, error) {
	t := l[in.target]
	if b, lz, ok := objectBuilderOf(t); ok {
		return b, lz, nil
	}
	obj, ok := value(materialize(t)).(ast.Object)
	if !ok {
		return nil, nil, fmt.Errorf("%s: insert into a %s", where(loc), typeName(t))
	}
	t = e.newObjectBuilderOf(obj.Copy())
	l[in.target] = t
	b, lz, _ := objectBuilderOf(t)
	return b, lz, nil
}

// scan runs the body once per element; the body is the loop level (a
// break of 0 continues with the next element) and the scan adds a second
// level around it (a break of 1 ends the scan).
func (e *evaluation) scan(l locals, in *instr) (signal, error) {
	var (
		out  = done
		stop bool
		err  error
	)
	s := scanOf(in)
	src := value(raw(l, in.a))
	if lz, ok := src.(*lazyValue); ok {
		if b, isSet := lz.Lazy.(*setBuilder); isSet {
			elems, ok := b.strings()
			if !ok {
				elems = lz.wholeTerm().Value.(ast.Set).Slice()
			}
			for _, k := range elems {
				if out, stop, err = e.scanBody(l, s, k, k); stop {
					break
				}
			}
			return out, err
		}
	}
	switch src := src.(type) {
	case *lazyValue:
		if ix, ok := src.Lazy.(Indexed); ok && src.Type() == "array" {
			for i := 0; i < ix.Len() && !stop; i++ {
				out, stop, err = e.scanBody(l, s, ast.InternedTerm(i), ix.Elem(i))
			}
			break
		}
		if n, ok := src.Lazy.(interface{ Len() int }); ok && src.Type() == "array" {
			for i := 0; i < n.Len() && !stop; i++ {
				k := ast.InternedTerm(i)
				out, stop, err = e.scanBody(l, s, k, src.Member(k))
			}
			break
		}
		out, err = e.scanMembers(l, s, src.Lazy)
	case *ast.Array:
		for i := 0; i < src.Len() && !stop; i++ {
			out, stop, err = e.scanBody(l, s, ast.InternedTerm(i), src.Elem(i))
		}
	case ast.Object:
		for _, k := range src.Keys() {
			if out, stop, err = e.scanBody(l, s, k, src.Get(k)); stop {
				break
			}
		}
	case ast.Set:
		for _, k := range src.Slice() {
			if out, stop, err = e.scanBody(l, s, k, k); stop {
				break
			}
		}
	}
	return out, err
}

// scanOf is what a scan's body needs of it.
func scanOf(in *instr) scanInstr {
	return scanInstr{key: in.scanKey, value: in.scanValue, body: in.blocks[0]}
}

type scanInstr struct {
	key, value ir.Local
	body       *block
}

// scanMembers scans a lazy collection through its Members (apart from
// scan, whose variables the callback would move to the heap).
func (e *evaluation) scanMembers(l locals, s scanInstr, lz Lazy) (signal, error) {
	var (
		out = done
		err error
	)
	lz.Members(func(k, v *ast.Term) bool {
		var stop bool
		out, stop, err = e.scanBody(l, s, k, v)
		return stop
	})
	return out, err
}

// scanBody runs a scan's body for one element; stop says the scan ends
// (with the signal returned).
func (e *evaluation) scanBody(l locals, s scanInstr, k, v *ast.Term) (signal, bool, error) {
	l[s.key] = k
	l[s.value] = v
	sig, err := e.block(l, s.body)
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

// with runs the body with a local (or a path in it) replaced, and restores
// it; memoized rule values are not shared across the replacement.
func (e *evaluation) with(l locals, in *instr) (signal, error) {
	s := in.s.(*ir.WithStmt)
	saved := l[s.Local]
	t := operandOf(l, in.a)
	if len(s.Path) > 0 {
		path := make([]*ast.Term, len(s.Path))
		for i, idx := range s.Path {
			path[i] = e.p.strings[idx]
		}
		t = upsert(materialize(saved), path, t)
	}
	l[s.Local] = t
	memo, done, calls := e.memo, e.done, e.calls
	e.memo, e.done, e.calls = make([]*ast.Term, e.p.nfuncs), make([]bool, e.p.nfuncs), make([][]argCall, e.p.nfuncs)
	sig, err := e.block(l, in.blocks[0])
	e.memo, e.done, e.calls = memo, done, calls
	l[s.Local] = saved
	if err != nil {
		return signal{}, err
	}
	if sig.kind == sigDone {
		return signal{}, nil
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
func (e *evaluation) call(l locals, in *instr) (*ast.Term, error) {
	target := in.call
	if target.fn != nil {
		return e.callFunc(l, target.fn, in)
	}
	if target.count && len(in.args) == 1 {
		// count of a lazy collection that knows its length: not made whole.
		if lz, ok := value(raw(l, in.args[0])).(*lazyValue); ok {
			if n, ok := lz.Lazy.(interface{ Len() int }); ok {
				return ast.InternedTerm(n.Len()), nil
			}
		}
	}
	if target.member && len(in.args) == 2 {
		// x in a lazy array or object: its members compared one by one,
		// as the built-in compares them, without making it whole; x in
		// a set of strings: found by binary search.
		coll := raw(l, in.args[1])
		if elems, ok := stringsOf(coll); ok {
			x := operandOf(l, in.args[0])
			if x == nil {
				return nil, nil
			}
			return ast.InternedTerm(searchStrings(elems, x)), nil
		}
		if lz, ok := value(coll).(*lazyValue); ok && lz.Type() != "set" {
			x := operandOf(l, in.args[0])
			if x == nil {
				return nil, nil
			}
			return ast.InternedTerm(lazyContains(lz.Lazy, x)), nil
		}
	}
	switch target.fast {
	case fastMinus, fastAnd, fastOr:
		if len(in.args) == 2 {
			if t, ok := e.stringSetOp(setOpOf(target.fast), raw(l, in.args[0]), raw(l, in.args[1])); ok {
				return t, nil
			}
		}
		if target.fast == fastMinus && len(in.args) == 2 {
			// a - b of two sets: the built-in first compares them,
			// sorting both; the difference alone is the same set.
			a, b := operandOf(l, in.args[0]), operandOf(l, in.args[1])
			if sa, ok := value(a).(ast.Set); ok {
				if sb, ok := value(b).(ast.Set); ok {
					return ast.NewTerm(setDiff(sa, sb)), nil
				}
			}
		}
	case fastConcat:
		if len(in.args) == 2 {
			if t, ok := concatStrings(raw(l, in.args[0]), raw(l, in.args[1])); ok {
				return t, nil
			}
		}
	case fastAnyPrefixMatch:
		if len(in.args) == 2 {
			if t, ok := anyPrefixMatch(raw(l, in.args[0]), raw(l, in.args[1])); ok {
				return t, nil
			}
		}
	case fastStartsWith, fastEndsWith, fastContains, fastRegexMatch, fastIsNull:
		if t, ok := e.p.stringBuiltin(l, in); ok {
			return t, nil
		}
	}
	args := e.args[:0]
	for _, a := range in.args {
		t := operandOf(l, a)
		if t == nil {
			return nil, nil
		}
		args = append(args, t)
	}
	e.args = args
	e.out = nil
	err := target.builtin(e.bctx, args, e.iter)
	out := e.out
	e.out = nil
	clear(args)
	if err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			s := in.s.(*ir.CallStmt)
			return nil, fmt.Errorf("%s: %s: %w", where(s.Location), s.Func, err)
		}
		return nil, nil // as topdown without strict built-in errors: undefined
	}
	return out, nil
}

func (e *evaluation) callFunc(l locals, f *function, in *instr) (*ast.Term, error) {
	if f.pure {
		return e.constant(f)
	}
	memoize := len(in.args) == 2
	if memoize && e.done[f.index] {
		return e.memo[f.index], nil
	}
	fl := e.push(f.size)
	for i, p := range f.fn.Params {
		fl[p] = raw(l, in.args[i])
	}
	var args []*ast.Term // the call's arguments, to remember (argmemo.go)
	if !memoize {
		if t, ok := e.remembered(f, fl); ok {
			e.pop(f.size)
			return t, nil
		}
		if len(e.calls[f.index]) < maxArgMemo {
			args = e.terms.Take(len(f.fn.Params) - 2)
			for i, p := range f.fn.Params[2:] {
				args[i] = fl[p]
			}
		}
	}
	t, err := e.run(f, fl)
	e.pop(f.size)
	if err != nil {
		return nil, err
	}
	if memoize {
		e.memo[f.index], e.done[f.index] = t, true
	}
	if args != nil {
		e.calls[f.index] = append(e.calls[f.index], argCall{args: args, val: t})
	}
	return t, nil
}

// constant returns a pure function's value, computing it on first use (in
// an evaluation of its own, so one caller's cancellation is not cached).
func (e *evaluation) constant(f *function) (*ast.Term, error) {
	if c := f.val.Load(); c != nil {
		return c.t, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.val.Load(); c != nil {
		return c.t, nil
	}
	sub := &evaluation{p: e.p, ctx: context.WithoutCancel(e.ctx), bctx: e.bctx,
		memo: make([]*ast.Term, e.p.nfuncs), done: make([]bool, e.p.nfuncs), dots: make([]objDot, e.p.ndots),
		calls: make([][]argCall, e.p.nfuncs)}
	sub.iter = sub.setOut
	t, err := sub.run(f, sub.push(f.size))
	if err != nil {
		return nil, err
	}
	// Whole: a lazy value (an array being built) fills its caches as it
	// is read, and this one is read by concurrent evaluations.
	// In irvm's own form for constants (constview.go): dots into it find
	// their member in a Go map.
	t = constView(materialize(t))
	f.val.Store(&constValue{t})
	return t, nil
}

// run runs a function's blocks in its frame fl.
func (e *evaluation) run(f *function, fl locals) (*ast.Term, error) {
	for _, b := range f.blocks {
		sig, err := e.block(fl, b)
		if err != nil {
			return nil, err
		}
		if sig.kind == sigReturn {
			return sig.val, nil
		}
	}
	return fl[f.fn.Return], nil
}

// dot looks key up in v: an object member, an array element, or the key
// itself when a set holds it; nil when absent or v is not a collection.
func dot(v, key *ast.Term) *ast.Term {
	if v == nil || key == nil {
		return nil
	}
	switch c := v.Value.(type) {
	case *lazyValue:
		return c.Member(key)
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

// equal reports whether two whole values are equal, as ast.Compare finds
// them; strings and booleans are compared directly, and numbers written
// alike are equal without being parsed.
func equal(a, b *ast.Term) bool {
	if a == b {
		return true
	}
	switch va := a.Value.(type) {
	case ast.String:
		vb, ok := b.Value.(ast.String)
		return ok && va == vb
	case ast.Boolean:
		vb, ok := b.Value.(ast.Boolean)
		return ok && va == vb
	case ast.Number:
		if vb, ok := b.Value.(ast.Number); ok && va == vb {
			return true
		}
	}
	return ast.Compare(a.Value, b.Value) == 0
}

// lengthsDiffer reports whether a and b are arrays of different lengths
// (so unequal) known without making a lazy one whole: a request's list,
// an array being built.
func lengthsDiffer(a, b *ast.Term) bool {
	_, lazyA := a.Value.(*lazyValue)
	_, lazyB := b.Value.(*lazyValue)
	if !lazyA && !lazyB {
		return false
	}
	na, ok := arrayLen(a)
	if !ok {
		return false
	}
	nb, ok := arrayLen(b)
	return ok && na != nb
}

// arrayLen is the length of an array, lazy or whole.
func arrayLen(t *ast.Term) (int, bool) {
	switch v := t.Value.(type) {
	case *lazyValue:
		if n, ok := v.Lazy.(interface{ Len() int }); ok && v.Type() == "array" {
			return n.Len(), true
		}
	case *ast.Array:
		return v.Len(), true
	}
	return 0, false
}

// typeOf is t's type name ("" when undefined), without making a lazy
// value whole.
func typeOf(t *ast.Term) string {
	switch v := value(t).(type) {
	case nil:
		return ""
	case *lazyValue:
		return v.Type()
	default:
		return ast.ValueName(v)
	}
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

// setDiff is the set of a's elements that b lacks.
func setDiff(a, b ast.Set) ast.Set {
	var keep []*ast.Term
	a.Foreach(func(t *ast.Term) {
		if !b.Contains(t) {
			keep = append(keep, t)
		}
	})
	return ast.NewSet(keep...)
}
