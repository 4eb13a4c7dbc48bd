package irvm

import (
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// New turns the plan's blocks into blocks of instrs: a statement's kind is
// a small integer (a jump table, not a type switch), its operands are
// resolved (a constant's term, or a local's index) and a call's target is
// found once, not at every run.

// block is a compiled ir.Block.
type block struct{ instrs []instr }

// instr is one compiled statement: what every run reads, in 56 bytes (a
// function's instrs share few cache lines), and the rest behind a pointer.
type instr struct {
	op opcode
	// dot: a dot with a constant key, its slot in an evaluation's dots
	// (dotObject).
	dot int32
	// target is the statement's local, a and b its operands (see
	// compileStmt for which is which).
	target ir.Local
	a, b   operand
	*instrExt
}

// instrExt is what fewer statements need.
type instrExt struct {
	call   *callTarget
	args   []operand
	blocks []*block // nested blocks: a BlockStmt's; a scan's, not's or with's body
	s      ir.Stmt  // the statement, for what the fields above lack
	// slots: a dot with a constant key on Slotted values (dotSlot).
	slots atomic.Pointer[slotCache]
	// sizeHint: the size the sets a MakeSetStmt starts grow to.
	sizeHint atomic.Int32
	// regex: a regex.match call's pattern, compiled (regexOf).
	regex atomic.Pointer[compiledRegex]
	// scanKey, scanValue: the locals a scan sets for each element
	// (scanCopies).
	scanKey, scanValue ir.Local
}

// operand is a constant's term, or (term nil) a local.
type operand struct {
	term  *ast.Term
	local ir.Local
}

type opcode uint8

const (
	opNop opcode = iota
	opDot
	opAssignVar
	opAssignVarOnce
	opEqual
	opNotEqual
	opCall
	opBlock
	opBreak
	opScan
	opNot
	opWith
	opReturn
	opResetLocal
	opMakeNull
	opMakeNumberInt
	opAssignInt
	opMakeNumberRef
	opMakeArray
	opMakeObject
	opMakeSet
	opArrayAppend
	opObjectInsert
	opObjectInsertOnce
	opObjectMerge
	opSetAdd
	opLen
	opIsArray
	opIsObject
	opIsSet
	opIsDefined
	opIsUndefined
	opResultSetAdd
	opUnsupported
)

func (p *Program) compileBlocks(bs []*ir.Block) []*block {
	out := make([]*block, len(bs))
	for i, b := range bs {
		out[i] = p.compileBlock(b)
	}
	return out
}

func (p *Program) compileBlock(b *ir.Block) *block {
	cb := &block{instrs: make([]instr, 0, len(b.Stmts))}
	for i := 0; i < len(b.Stmts); i++ {
		cb.instrs = append(cb.instrs, instr{})
		in := &cb.instrs[len(cb.instrs)-1]
		p.compileStmt(in, b.Stmts[i])
		if i+1 < len(b.Stmts) {
			if t, ok := p.fusedCopy(b.Stmts[i], b.Stmts[i+1]); ok {
				in.target = t
				i++
			}
		}
	}
	return cb
}

// The planner writes most values to a local of their own and copies that
// into the local its users read (a dot into x, then y := x). When the
// statement after one that sets x is such a copy, and x is set and read
// nowhere else in the function, the statement sets y itself and the copy
// is dropped: it ran right after it (a block leaves at a failing
// statement, before the copy too), and nothing else sees x.

// localUse is how often a function's statements read and write a local.
type localUse struct{ reads, writes int }

// localUses counts the uses of the locals in blocks; fixed locals (the
// parameters, the return value, input and data) count as read and written
// from outside.
func localUses(blocks []*ir.Block, fixed ...ir.Local) map[ir.Local]localUse {
	uses := map[ir.Local]localUse{}
	for _, l := range fixed {
		uses[l] = localUse{reads: 1, writes: 1}
	}
	walkBlocks(blocks, func(s ir.Stmt) {
		stmtLocals(s, func(l ir.Local) {
			u := uses[l]
			u.reads++
			uses[l] = u
		}, func(l ir.Local) {
			u := uses[l]
			u.writes++
			uses[l] = u
		})
	})
	return uses
}

// fusedCopy returns the local that s should set instead of its own when
// next copies that one and nothing else uses it.
func (p *Program) fusedCopy(s, next ir.Stmt) (ir.Local, bool) {
	cp, ok := next.(*ir.AssignVarStmt)
	if !ok {
		return 0, false
	}
	src, ok := cp.Source.Value.(ir.Local)
	if !ok {
		return 0, false
	}
	var target ir.Local
	switch s := s.(type) {
	case *ir.DotStmt:
		target = s.Target
	case *ir.CallStmt:
		target = s.Result
	case *ir.LenStmt:
		target = s.Target
	case *ir.AssignVarStmt:
		target = s.Target
	default:
		return 0, false
	}
	if target != src || p.uses[src] != (localUse{reads: 1, writes: 1}) {
		return 0, false
	}
	return cp.Target, true
}

func (p *Program) operand(o ir.Operand) operand {
	switch v := o.Value.(type) {
	case ir.Local:
		return operand{local: v}
	case ir.StringIndex:
		return operand{term: p.strings[v]}
	case ir.Bool:
		if v {
			return operand{term: trueTerm}
		}
		return operand{term: falseTerm}
	}
	p.badOperand = fmt.Errorf("irvm: operand %T is not supported", o.Value)
	return operand{term: nullTerm}
}

func local(l ir.Local) operand { return operand{local: l} }

// compileStmt compiles s into in; New has checked s (p.check).
func (p *Program) compileStmt(in *instr, s ir.Stmt) {
	in.instrExt = &instrExt{s: s}
	switch s := s.(type) {
	case *ir.DotStmt:
		in.op, in.a, in.b, in.target = opDot, p.operand(s.Source), p.operand(s.Key), s.Target
		if in.b.term != nil {
			in.dot = int32(p.ndots)
			p.ndots++
		}
	case *ir.AssignVarStmt:
		in.op, in.a, in.target = opAssignVar, p.operand(s.Source), s.Target
	case *ir.AssignVarOnceStmt:
		in.op, in.a, in.target = opAssignVarOnce, p.operand(s.Source), s.Target
	case *ir.EqualStmt:
		in.op, in.a, in.b = opEqual, p.operand(s.A), p.operand(s.B)
	case *ir.NotEqualStmt:
		in.op, in.a, in.b = opNotEqual, p.operand(s.A), p.operand(s.B)
	case *ir.CallStmt:
		in.op, in.target = opCall, s.Result
		t := p.calls[s]
		in.call = &t
		for _, a := range s.Args {
			in.args = append(in.args, p.operand(a))
		}
	case *ir.BlockStmt:
		in.op, in.blocks = opBlock, p.compileBlocks(s.Blocks)
	case *ir.BreakStmt:
		in.op = opBreak
	case *ir.ScanStmt:
		body := p.scanCopies(in, s)
		in.op, in.a, in.blocks = opScan, local(s.Source), []*block{p.compileBlock(body)}
	case *ir.NotStmt:
		in.op, in.blocks = opNot, []*block{p.compileBlock(s.Block)}
	case *ir.WithStmt:
		in.op, in.a, in.target, in.blocks = opWith, p.operand(s.Value), s.Local, []*block{p.compileBlock(s.Block)}
	case *ir.ReturnLocalStmt:
		in.op, in.a = opReturn, local(s.Source)
	case *ir.ResetLocalStmt:
		in.op, in.target = opResetLocal, s.Target
	case *ir.MakeNullStmt:
		in.op, in.target = opMakeNull, s.Target
	case *ir.MakeNumberIntStmt:
		in.op, in.target, in.a = opMakeNumberInt, s.Target, operand{term: ast.InternedTerm(int(s.Value))}
	case *ir.AssignIntStmt:
		in.op, in.target, in.a = opAssignInt, s.Target, operand{term: ast.InternedTerm(int(s.Value))}
	case *ir.MakeNumberRefStmt:
		in.op, in.target, in.a = opMakeNumberRef, s.Target, operand{term: p.numbers[s.Index]}
	case *ir.MakeArrayStmt:
		in.op, in.target = opMakeArray, s.Target
	case *ir.MakeObjectStmt:
		in.op, in.target = opMakeObject, s.Target
	case *ir.MakeSetStmt:
		in.op, in.target = opMakeSet, s.Target
	case *ir.ArrayAppendStmt:
		in.op, in.a, in.target = opArrayAppend, p.operand(s.Value), s.Array
	case *ir.ObjectInsertStmt:
		in.op, in.a, in.b, in.target = opObjectInsert, p.operand(s.Key), p.operand(s.Value), s.Object
	case *ir.ObjectInsertOnceStmt:
		in.op, in.a, in.b, in.target = opObjectInsertOnce, p.operand(s.Key), p.operand(s.Value), s.Object
	case *ir.ObjectMergeStmt:
		in.op, in.a, in.b, in.target = opObjectMerge, local(s.A), local(s.B), s.Target
	case *ir.SetAddStmt:
		in.op, in.a, in.target = opSetAdd, p.operand(s.Value), s.Set
	case *ir.LenStmt:
		in.op, in.a, in.target = opLen, p.operand(s.Source), s.Target
	case *ir.IsArrayStmt:
		in.op, in.a = opIsArray, p.operand(s.Source)
	case *ir.IsObjectStmt:
		in.op, in.a = opIsObject, p.operand(s.Source)
	case *ir.IsSetStmt:
		in.op, in.a = opIsSet, p.operand(s.Source)
	case *ir.IsDefinedStmt:
		in.op, in.a = opIsDefined, local(s.Source)
	case *ir.IsUndefinedStmt:
		in.op, in.a = opIsUndefined, local(s.Source)
	case *ir.ResultSetAddStmt:
		in.op, in.a = opResultSetAdd, local(s.Value)
	case *ir.NopStmt:
		in.op = opNop
	default:
		in.op = opUnsupported
	}
}

// scanCopies sets the locals scan s writes each element's key and value
// to, and returns the body to compile. A scan's body usually starts by
// copying its key and value into other locals; when nothing else reads
// the scan's own, the scan sets those others and the copies are dropped.
func (p *Program) scanCopies(in *instr, s *ir.ScanStmt) *ir.Block {
	in.scanKey, in.scanValue = s.Key, s.Value
	stmts := s.Block.Stmts
	for range 2 {
		if len(stmts) == 0 {
			break
		}
		cp, ok := stmts[0].(*ir.AssignVarStmt)
		if !ok || cp.Target == s.Key || cp.Target == s.Value {
			break
		}
		src, ok := cp.Source.Value.(ir.Local)
		if !ok || p.uses[src] != (localUse{reads: 1, writes: 1}) {
			break
		}
		switch {
		case src == s.Key && in.scanKey == s.Key:
			in.scanKey = cp.Target
		case src == s.Value && in.scanValue == s.Value:
			in.scanValue = cp.Target
		default:
			return &ir.Block{Stmts: stmts}
		}
		stmts = stmts[1:]
	}
	return &ir.Block{Stmts: stmts}
}
