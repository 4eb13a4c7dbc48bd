package irvm

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// A rule function's value is a function of its arguments, the input and
// the data; within one evaluation the input and data change only under a
// with, whose body gets its own memos. So a function called again in one
// evaluation with the same arguments returns what it returned before. A
// policy calls functions with the same arguments more than once (Kata's
// and peerpod's rules check a request's bounding, effective and permitted
// capabilities, usually the same list, with one function). irvm keeps the
// first few calls of each function with arguments per evaluation and
// answers a repeated call from them when its arguments are the same: the
// same term, strings, numbers of one value, booleans, null, or lazy
// values that say they are equal (Equaler). Arguments of other kinds are
// not compared (that could cost more than the call): the call runs.

// maxArgMemo is how many calls of one function an evaluation keeps.
const maxArgMemo = 4

// Equaler is a Lazy that can tell, without being made whole, whether it
// stands for the same value as another Lazy: a request's list of strings
// compared with another such list. known is false when it cannot tell.
type Equaler interface {
	Lazy
	EqualTo(other Lazy) (equal, known bool)
}

// argCall is one kept call: its arguments (beyond input and data) and
// its value (nil: undefined).
type argCall struct {
	args []*ast.Term
	val  *ast.Term
}

// remembered returns the value kept for a call of f whose frame is fl,
// and whether there is one.
func (e *evaluation) remembered(f *function, fl locals) (*ast.Term, bool) {
	for _, c := range e.calls[f.index] {
		same := true
		for i, p := range f.fn.Params[2:] {
			if !sameArg(c.args[i], fl[p]) {
				same = false
				break
			}
		}
		if same {
			return c.val, true
		}
	}
	return nil, false
}

// sameArg reports whether a and b are known to be the same value, without
// making lazy values whole; false when it cannot tell cheaply.
func sameArg(a, b *ast.Term) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	switch va := a.Value.(type) {
	case ast.String:
		vb, ok := b.Value.(ast.String)
		return ok && va == vb
	case ast.Number:
		// Equal in value, as topdown's cache of function calls finds
		// them: 1 and 1.0 are one argument there too.
		vb, ok := b.Value.(ast.Number)
		return ok && (va == vb || va.Compare(vb) == 0)
	case ast.Boolean:
		vb, ok := b.Value.(ast.Boolean)
		return ok && va == vb
	case ast.Null:
		_, ok := b.Value.(ast.Null)
		return ok
	case *lazyValue:
		vb, ok := b.Value.(*lazyValue)
		if !ok {
			return false
		}
		if eq, ok := va.Lazy.(Equaler); ok {
			equal, known := eq.EqualTo(vb.Lazy)
			return known && equal
		}
	}
	return false
}
