package irvm

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A constant value (what a pure function returns: a policy's policy_data,
// say) is looked into again and again, by the same statements, in every
// evaluation: c.capabilities[x] for each capability, c.mounts[m.destination]
// for each mount. OPA's object lookup hashes the key string (xxhash) every
// time. irvm keeps constants in its own form instead: each object and
// array of the value, at any depth, is a Lazy whose members are found in a
// Go map by string key (objects) or by index (arrays), and whose whole
// value is the original OPA value, set when the view is made. A use that
// needs an OPA value (a built-in, a comparison, a result) gets that
// original. A view never changes after it is made, so concurrent
// evaluations share it. Sets stay OPA sets (sets.go reads sets of strings
// in their sorted order).

// constObject is an object of a constant value.
type constObject struct {
	cell LazyCell
	obj  ast.Object
	// members are all of them in OPA's key order, with the original
	// value (for keys of other types).
	members []constMember
	// shape is shared by the objects of the constant with the same keys
	// in the same order: a member's index (slot) in one is its index in
	// all of them.
	shape *constShape
}

// constShape is the keys of objects of one shape: the index of each
// string key among the members.
type constShape struct {
	layout Layout
	keys   map[string]int
}

type constMember struct {
	key, orig, view *ast.Term
}

// constArray is an array of a constant value.
type constArray struct {
	cell  LazyCell
	arr   *ast.Array
	elems []*ast.Term // views
}

// constView returns t (a whole value) in irvm's form for constants: a view
// for an object or an array, t itself for anything else.
func constView(t *ast.Term) *ast.Term {
	return viewOf(t, map[string]*constShape{})
}

// viewOf is constView; shapes are the object shapes made so far, by their
// keys (shapeKey).
func viewOf(t *ast.Term, shapes map[string]*constShape) *ast.Term {
	if t == nil {
		return nil
	}
	var view *ast.Term
	switch v := t.Value.(type) {
	case ast.Object:
		c := &constObject{obj: v, members: make([]constMember, 0, v.Len())}
		v.Foreach(func(k, val *ast.Term) {
			c.members = append(c.members, constMember{key: k, orig: val, view: viewOf(val, shapes)})
		})
		c.shape = shapeOf(c.members, shapes)
		view = c.cell.Term(c)
	case *ast.Array:
		c := &constArray{arr: v, elems: make([]*ast.Term, v.Len())}
		for i := range c.elems {
			c.elems[i] = viewOf(v.Elem(i), shapes)
		}
		view = c.cell.Term(c)
	default:
		return t
	}
	// The whole value is the original, known from the start: nothing is
	// written to the view when an evaluation needs it whole.
	view.Value.(*lazyValue).whole = t
	return view
}

// shapeOf returns the shape of an object with members, shared with the
// objects of the same keys made before.
func shapeOf(members []constMember, shapes map[string]*constShape) *constShape {
	var b strings.Builder
	for _, m := range members {
		b.WriteString(m.key.String()) // Rego's text: a string quoted, so no two keys alike
		b.WriteByte(0)
	}
	if sh, ok := shapes[b.String()]; ok {
		return sh
	}
	sh := &constShape{keys: make(map[string]int, len(members))}
	for i, m := range members {
		if s, ok := m.key.Value.(ast.String); ok {
			sh.keys[string(s)] = i
		}
	}
	shapes[b.String()] = sh
	return sh
}

// Member returns the member at key.
func (c *constObject) Member(key *ast.Term) *ast.Term {
	if i := c.Slot(key); i >= 0 {
		return c.members[i].view
	}
	return nil
}

// Layout is the object's shape: a dot with a constant key keeps the slot
// it found in an object of that shape (irvm.Slotted), and the objects of
// a constant's list (policy_data's mounts, say) mostly share one.
func (c *constObject) Layout() *Layout { return &c.shape.layout }

// Slot is the index of key's member, -1 when there is none: a string key
// is found in the map, any other as the object finds it.
func (c *constObject) Slot(key *ast.Term) int {
	if s, ok := key.Value.(ast.String); ok {
		if i, ok := c.shape.keys[string(s)]; ok {
			return i
		}
		return -1
	}
	orig := c.obj.Get(key)
	if orig == nil {
		return -1
	}
	for i, m := range c.members {
		if m.orig == orig {
			return i
		}
	}
	return -1
}

// MemberAt returns the member in slot i.
func (c *constObject) MemberAt(i int) *ast.Term { return c.members[i].view }

func (c *constObject) Members(f func(k, v *ast.Term) bool) {
	for _, m := range c.members {
		if f(m.key, m.view) {
			return
		}
	}
}

// Materialize is not called: the whole value is set when the view is
// made (constView).
func (c *constObject) Materialize() ast.Value { return c.obj }
func (c *constObject) Type() string           { return "object" }
func (c *constObject) Len() int               { return len(c.members) }

func (c *constArray) Member(key *ast.Term) *ast.Term {
	n, ok := key.Value.(ast.Number)
	if !ok {
		return nil
	}
	i, ok := n.Int()
	if !ok || i < 0 || i >= len(c.elems) {
		return nil
	}
	return c.elems[i]
}

// Elem returns the element at i (Indexed).
func (c *constArray) Elem(i int) *ast.Term { return c.elems[i] }

func (c *constArray) Members(f func(k, v *ast.Term) bool) {
	for i, t := range c.elems {
		if f(ast.InternedTerm(i), t) {
			return
		}
	}
}

// Materialize is not called (see constObject.Materialize).
func (c *constArray) Materialize() ast.Value { return c.arr }
func (c *constArray) Type() string           { return "array" }
func (c *constArray) Len() int               { return len(c.elems) }
