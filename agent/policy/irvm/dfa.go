package irvm

import (
	"encoding/binary"
	"regexp/syntax"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// regex.match answers whether a pattern matches anywhere in a string: a
// question about a regular language, whose answer does not depend on the
// engine that finds it. Go's regexp answers it for most patterns with its
// backtracker, which for a pattern of some hundred instructions (a
// policy's rule for many lines at once) costs tens of nanoseconds a byte.
// A dfa answers it from the same compiled program (syntax.Prog, made from
// the pattern exactly as regexp.Compile makes it) by following all of the
// program's threads at once, one state per set of threads, the states and
// their transitions made as the input first needs them and kept for the
// next match: a table lookup a byte once warm.
//
// The states keep no position, so the only assertions a dfa takes are the
// ones of the text's start and end (^ and $ without the m flag, \A, \z);
// patterns with others (\b, \B, ^ and $ in multi-line mode) are matched by
// regexp, as are inputs that would need more than maxDFAStates states.

// maxDFAStates bounds the states one pattern's dfa keeps (a state is
// about 1 KB; a policy's pattern for the runtime's variables needs 84),
// maxProgramDFAStates those of all the patterns of one program, and
// maxOtherRunes the transitions on runes beyond ASCII one state keeps.
const (
	maxDFAStates        = 512
	maxProgramDFAStates = 8192
	maxOtherRunes       = 64
)

// dfa matches one program; it is safe for concurrent use.
type dfa struct {
	prog *syntax.Prog
	// start is the state before the first rune (the text's start
	// assertion holds there); mid is the closure of the program's start
	// later on, which every state after a rune includes (a match may
	// start at any position).
	start  *dfaState
	mid    []uint32
	mu     sync.Mutex           // guards states and dfaState.other
	states map[string]*dfaState // by their threads
	// budget counts the states of all the program's dfas.
	budget *atomic.Int32
}

// dfaState is a set of threads: the program counters of instructions that
// consume a rune, of the match, or of end-of-text assertions waiting for
// the end.
type dfaState struct {
	pcs []uint32
	// match: a thread has matched; the input matches whatever follows.
	match bool
	// atEnd: the input matches if it ends here.
	atEnd bool
	// next holds the state after each ASCII rune, nil until needed;
	// other the states after other runes (guarded by dfa.mu).
	next  [utf8.RuneSelf]atomic.Pointer[dfaState]
	other map[rune]*dfaState
}

// newDFA returns a dfa for pattern, or nil when the pattern does not
// compile or has assertions a dfa does not take; budget counts the states
// of the program's dfas.
func newDFA(pattern string, budget *atomic.Int32) *dfa {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil
	}
	for _, in := range prog.Inst {
		if in.Op == syntax.InstEmptyWidth && syntax.EmptyOp(in.Arg)&^(syntax.EmptyBeginText|syntax.EmptyEndText) != 0 {
			return nil
		}
	}
	d := &dfa{prog: prog, states: map[string]*dfaState{}, budget: budget}
	d.mid = d.closure(nil, []uint32{uint32(prog.Start)}, 0)
	start := d.closure(nil, []uint32{uint32(prog.Start)}, syntax.EmptyBeginText)
	d.start = d.newState(start, syntax.EmptyBeginText)
	return d
}

// closure adds to set (sorted, distinct) the threads that the instructions
// at pcs lead to without consuming a rune, where the assertions in flags
// hold; an assertion that would hold at the end of the text is kept as a
// thread waiting for the end, any other that does not hold is dropped.
func (d *dfa) closure(set []uint32, pcs []uint32, flags syntax.EmptyOp) []uint32 {
	seen := make(map[uint32]bool, 16)
	for _, pc := range set {
		seen[pc] = true
	}
	stack := slices.Clone(pcs)
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pc] {
			continue
		}
		seen[pc] = true
		in := &d.prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.Arg, in.Out)
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, in.Out)
		case syntax.InstEmptyWidth:
			op := syntax.EmptyOp(in.Arg)
			switch {
			case op&^flags == 0:
				stack = append(stack, in.Out)
			case op&^(flags|syntax.EmptyEndText) == 0:
				set = append(set, pc) // holds if the text ends here
			}
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL, syntax.InstMatch:
			set = append(set, pc)
		}
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// newState makes the state of threads pcs (flags: the assertions that held
// where they were found, for what holds at the end).
func (d *dfa) newState(pcs []uint32, flags syntax.EmptyOp) *dfaState {
	s := &dfaState{pcs: pcs}
	var waiting []uint32
	for _, pc := range pcs {
		switch in := &d.prog.Inst[pc]; in.Op {
		case syntax.InstMatch:
			s.match = true
		case syntax.InstEmptyWidth:
			waiting = append(waiting, in.Out)
		}
	}
	s.atEnd = s.match
	if !s.atEnd && len(waiting) > 0 {
		for _, pc := range d.closure(nil, waiting, flags|syntax.EmptyEndText) {
			if d.prog.Inst[pc].Op == syntax.InstMatch {
				s.atEnd = true
				break
			}
		}
	}
	return s
}

// step returns the state after rune r from s; nil when the dfa has as many
// states as it may keep.
func (d *dfa) step(s *dfaState, r rune) *dfaState {
	if r >= utf8.RuneSelf {
		d.mu.Lock()
		t, ok := s.other[r]
		d.mu.Unlock()
		if ok {
			return t
		}
	}
	var moved []uint32
	for _, pc := range s.pcs {
		in := &d.prog.Inst[pc]
		var ok bool
		switch in.Op {
		case syntax.InstRune:
			ok = in.MatchRune(r)
		case syntax.InstRune1:
			ok = r == in.Rune[0]
		case syntax.InstRuneAny:
			ok = true
		case syntax.InstRuneAnyNotNL:
			ok = r != '\n'
		}
		if ok {
			moved = append(moved, in.Out)
		}
	}
	set := d.closure(slices.Clone(d.mid), moved, 0)
	key := stateKey(set)
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.states[key]
	if !ok {
		if len(d.states) >= maxDFAStates {
			return nil
		}
		if d.budget.Add(1) > maxProgramDFAStates {
			d.budget.Add(-1)
			return nil
		}
		t = d.newState(set, 0)
		d.states[key] = t
	}
	if r >= utf8.RuneSelf && len(s.other) < maxOtherRunes {
		if s.other == nil {
			s.other = map[rune]*dfaState{}
		}
		s.other[r] = t
	}
	return t
}

func stateKey(pcs []uint32) string {
	b := make([]byte, 0, 4*len(pcs))
	for _, pc := range pcs {
		b = binary.LittleEndian.AppendUint32(b, pc)
	}
	return string(b)
}

// match reports whether the pattern matches somewhere in text; ok is false
// when the dfa would need more states than it may keep.
func (d *dfa) match(text string) (matched, ok bool) {
	s := d.start
	for i := 0; i < len(text); {
		if s.match {
			return true, true
		}
		var t *dfaState
		if c := text[i]; c < utf8.RuneSelf {
			if t = s.next[c].Load(); t == nil {
				if t = d.step(s, rune(c)); t == nil {
					return false, false
				}
				s.next[c].Store(t)
			}
			i++
		} else {
			r, w := utf8.DecodeRuneInString(text[i:])
			if t = d.step(s, r); t == nil {
				return false, false
			}
			i += w
		}
		s = t
	}
	return s.atEnd, true
}
