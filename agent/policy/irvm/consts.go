package irvm

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// Objects of a constant value (what a pure function returns: a policy's
// policy_data, say) are looked into again and again, by the same
// statements, in every evaluation: c.capabilities[x] for each capability,
// c.mounts[m.destination] for each mount. OPA's object lookup hashes the
// key string (xxhash) every time. irvm indexes each such object once, when
// the constant is computed, by its string keys in a Go map, and a dot into
// it finds the member there. A dot statement keeps the index of the last
// object it looked into, so finding the index costs a pointer comparison
// while the statement keeps looking into the same object.
//
// A constant's objects never change and are kept alive by the function
// that holds the constant, so an object's address names its content for
// the program's life. Objects of other values (the input, the policy
// state, objects built in an evaluation) are not indexed: their memory may
// serve another value later.

// objIndex is one constant object's members by string key.
type objIndex struct {
	obj  ast.Object
	keys map[string]*ast.Term
}

// indexConstant indexes the objects in t, a constant's value, at any
// depth.
func (p *Program) indexConstant(t *ast.Term) {
	switch v := t.Value.(type) {
	case ast.Object:
		if _, done := p.consts.Load(v); done {
			return
		}
		idx := &objIndex{obj: v, keys: make(map[string]*ast.Term, v.Len())}
		v.Foreach(func(k, val *ast.Term) {
			if s, ok := k.Value.(ast.String); ok {
				idx.keys[string(s)] = val
			}
			p.indexConstant(val)
		})
		p.consts.Store(v, idx)
	case *ast.Array:
		for i := range v.Len() {
			p.indexConstant(v.Elem(i))
		}
	case ast.Set:
		v.Foreach(p.indexConstant)
	}
}

// indexedDot looks key up in obj when obj is a constant's object and key
// a string; false otherwise (the caller then asks obj).
func (p *Program) indexedDot(in *instr, obj ast.Object, key *ast.Term) (*ast.Term, bool) {
	s, ok := key.Value.(ast.String)
	if !ok {
		return nil, false
	}
	idx := in.index.Load()
	if idx == nil || idx.obj != obj {
		v, ok := p.consts.Load(obj)
		if !ok {
			return nil, false
		}
		idx = v.(*objIndex)
		in.index.Store(idx)
	}
	return idx.keys[string(s)], true
}
