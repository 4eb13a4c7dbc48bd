package irvm

import (
	"slices"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/peerpod/peerpod/agent/policy/internal/slab"
)

// maxSizeHint bounds the room made for a set's elements from the sizes of
// earlier sets.
const maxSizeHint = 1024

// Lazy stands for a collection that irvm reads part by part: a dot or a
// scan asks it for members, and only where a whole value is needed (an
// operand of a comparison or a built-in, a result) does irvm ask for the
// value. Members may be lazy themselves (made with LazyTerm). A Lazy must
// describe exactly the value Materialize returns; an input built lazily
// spares the policy the cost of the parts it never reads.
type Lazy interface {
	// Member returns the member at key, or nil when there is none.
	Member(key *ast.Term) *ast.Term
	// Members calls f on every member in the value's iteration order
	// (index order for an array, key order for an object) until f
	// returns true.
	Members(f func(key, value *ast.Term) bool)
	// Materialize returns the whole value (not a lazy one). irvm asks
	// once per term (LazyTerm, LazyCell.Term) and keeps the answer, but
	// for its own builders, whose value an append or add can change.
	Materialize() ast.Value
	// Type is the value's type as ast.TypeName names it: "object",
	// "array" or "set".
	Type() string
}

// A Lazy that also has a Len() int method answers count() without being
// made whole, and an array scan reads it by index.

// Indexed is a Lazy array that gives its elements by index: a scan or a
// membership test reads it so, with no number key to make and parse.
type Indexed interface {
	Lazy
	Len() int
	// Elem returns the element at i, 0 <= i < Len().
	Elem(i int) *ast.Term
}

// LazyTerm returns a term standing for l. Outside irvm it behaves as the
// whole value (its methods make it whole).
func LazyTerm(l Lazy) *ast.Term { return new(LazyCell).Term(l) }

// LazyCell holds the term of one Lazy. A Lazy that embeds its cell and
// calls Term on it is made, with its term, in one allocation.
type LazyCell struct {
	term ast.Term
	v    lazyValue
}

// Term returns the term standing for l, which must not change after.
func (c *LazyCell) Term(l Lazy) *ast.Term {
	c.v = lazyValue{Lazy: l}
	c.v.slotted, _ = l.(Slotted)
	c.term.Value = &c.v
	return &c.term
}

// Slotted is a Lazy object with a fixed layout (a record: a message's
// fields): a dot with a constant key finds its member by slot. irvm keeps,
// per statement, the slot of the key in the first layout it meets there
// and asks Slot again only for another layout.
type Slotted interface {
	Lazy
	// Layout identifies the keys and their slots: values of one layout
	// have the same slot for the same key.
	Layout() *Layout
	// Slot returns key's slot in the layout, -1 when there is none.
	Slot(key *ast.Term) int
	// MemberAt returns the member in slot (as Member of its key does).
	MemberAt(slot int) *ast.Term
}

// Layout stands for one layout of Slotted values (a record type's): values
// of one layout give the same *Layout, compared by pointer.
type Layout struct {
	_ byte // not zero-sized: distinct Layouts have distinct addresses
}

// lazyValue makes a Lazy an ast.Value; whole is its whole value's term,
// once made, and slotted the Lazy when it is Slotted.
type lazyValue struct {
	Lazy
	slotted Slotted
	whole   *ast.Term
}

// slotCache is the slot of a dot's constant key in one layout.
type slotCache struct {
	layout *Layout
	slot   int
}

// dotSlot looks up in's constant key in s, by the slot in.slots holds when
// s has its layout.
func dotSlot(in *instr, s Slotted) *ast.Term {
	layout := s.Layout()
	slot := -1
	if c := in.slots.Load(); c != nil && c.layout == layout {
		slot = c.slot
	} else {
		slot = s.Slot(in.b.term)
		if c == nil {
			in.slots.Store(&slotCache{layout: layout, slot: slot})
		}
	}
	if slot < 0 {
		return nil
	}
	return s.MemberAt(slot)
}

// wholeTerm returns the term of v's whole value, made on first use.
func (v *lazyValue) wholeTerm() *ast.Term {
	if v.whole == nil {
		v.whole = ast.NewTerm(v.Materialize())
	}
	return v.whole
}

func (v *lazyValue) Compare(o ast.Value) int           { return ast.Compare(v.wholeTerm().Value, o) }
func (v *lazyValue) Find(p ast.Ref) (ast.Value, error) { return v.wholeTerm().Value.Find(p) }
func (v *lazyValue) Hash() int                         { return v.wholeTerm().Value.Hash() }
func (v *lazyValue) IsGround() bool                    { return true }
func (v *lazyValue) String() string                    { return v.wholeTerm().Value.String() }
func (v *lazyValue) StringLength() int                 { return v.wholeTerm().Value.StringLength() }

// AsLazy returns the Lazy that v stands for, if it is one.
func AsLazy(v ast.Value) (Lazy, bool) {
	if lz, ok := v.(*lazyValue); ok {
		return lz.Lazy, true
	}
	return nil, false
}

// Whole returns v, made whole if it is lazy (for code other than irvm).
func Whole(v ast.Value) ast.Value {
	if lz, ok := v.(*lazyValue); ok {
		return lz.wholeTerm().Value
	}
	return v
}

// materialize returns t, made whole if it is lazy.
func materialize(t *ast.Term) *ast.Term {
	if t == nil {
		return nil
	}
	if lz, ok := t.Value.(*lazyValue); ok {
		return lz.wholeTerm()
	}
	return t
}

// arrayBuilder is an array that a MakeArrayStmt starts and its
// ArrayAppendStmts grow in place, as the Wasm target's arrays grow: a
// Lazy, so that appending costs no allocation of an ast.Array (and of the
// hashes it keeps) per element, and only a use that needs the whole array
// makes one. The elements live in the evaluation's slab of terms, growing
// there; the whole array gets its own copy, as it may outlive the
// evaluation (a result).
type arrayBuilder struct {
	cell  LazyCell
	elems []*ast.Term
	terms *slab.Slab[*ast.Term] // the evaluation's, where elems grow
}

// newArrayBuilder starts an array in b, from e's builders (evaluation.release).
func (e *evaluation) newArrayBuilder(capacity int) *ast.Term {
	b := e.arrays.Next()
	b.terms = &e.terms
	if capacity > 0 {
		b.elems = e.terms.Take(capacity)[:0]
	}
	return b.cell.Term(b)
}

// appendTo appends v to the array t if t is an arrayBuilder's.
func appendTo(t, v *ast.Term) bool {
	lz, ok := value(t).(*lazyValue)
	if !ok {
		return false
	}
	b, ok := lz.Lazy.(*arrayBuilder)
	if !ok {
		return false
	}
	if n := len(b.elems); n == cap(b.elems) {
		grown := b.terms.Take(max(2*n, 4))[:n]
		copy(grown, b.elems)
		b.elems = grown
	}
	b.elems = append(b.elems, v)
	lz.whole = nil // the array made before this append lacks v
	return true
}

func (b *arrayBuilder) Member(key *ast.Term) *ast.Term {
	n, ok := key.Value.(ast.Number)
	if !ok {
		return nil
	}
	i, ok := n.Int()
	if !ok || i < 0 || i >= len(b.elems) {
		return nil
	}
	return b.elems[i]
}

// Elem returns the element at i (Indexed).
func (b *arrayBuilder) Elem(i int) *ast.Term { return b.elems[i] }

func (b *arrayBuilder) Members(f func(k, v *ast.Term) bool) {
	for i, t := range b.elems {
		if f(ast.InternedTerm(i), t) {
			return
		}
	}
}

// Materialize returns the elements so far as an array of its own; later
// appends do not change it.
func (b *arrayBuilder) Materialize() ast.Value {
	return ast.NewArray(slices.Clone(b.elems)...)
}

func (b *arrayBuilder) Type() string { return "array" }
func (b *arrayBuilder) Len() int     { return len(b.elems) }

// StringSearcher is a Lazy array whose elements are all strings and that
// can tell whether it holds a string without making terms of its
// elements: "x in coll" with a string x asks it.
type StringSearcher interface {
	Lazy
	// ContainsString reports whether an element equals s.
	ContainsString(s string) bool
}

// lazyContains reports whether an array's or an object's value equals x
// (the Rego "x in coll" on arrays and objects).
func lazyContains(lz Lazy, x *ast.Term) bool {
	if ss, ok := lz.(StringSearcher); ok {
		if s, ok := x.Value.(ast.String); ok {
			return ss.ContainsString(string(s))
		}
	}
	if ix, ok := lz.(Indexed); ok && lz.Type() == "array" {
		for i := range ix.Len() {
			if x.Equal(materialize(ix.Elem(i))) {
				return true
			}
		}
		return false
	}
	if n, ok := lz.(interface{ Len() int }); ok && lz.Type() == "array" {
		for i := range n.Len() {
			if x.Equal(materialize(lz.Member(ast.InternedTerm(i)))) {
				return true
			}
		}
		return false
	}
	found := false
	lz.Members(func(_, v *ast.Term) bool {
		found = x.Equal(materialize(v))
		return found
	})
	return found
}

// setBuilder is a set that a MakeSetStmt starts and its SetAddStmts grow,
// as the Wasm target's sets grow: the elements are collected, and while
// they are all strings the set stays in irvm's own form (sets.go), sorted
// and without repeats once an operation reads it. Made whole (an ast.Set
// at its full size, no rehashing as it grows) only where a use needs an
// ast.Set; adds after that go to that set.
type setBuilder struct {
	cell  LazyCell
	elems []*ast.Term
	// sorted: elems are sorted, distinct strings (strings()).
	sorted bool
	// mixed: an element is not a string, or an add went to set: elems
	// is not the set (any longer).
	mixed bool
	set   ast.Set
	// hint is the size the sets of its MakeSetStmt grow to, learnt from
	// the sets it made before: the room to make for the elements (nil
	// for a set irvm made as an operation's result).
	hint *atomic.Int32
}

func (e *evaluation) newSetBuilder(hint *atomic.Int32) *ast.Term {
	b := e.sets.Next()
	b.hint = hint
	if n := hint.Load(); n > 0 {
		// The room for the elements can live in the evaluation too.
		b.elems = e.terms.Take(int(n))[:0]
	}
	return b.cell.Term(b)
}

// addTo adds v to the set t if t is a setBuilder's.
func addTo(t, v *ast.Term) bool {
	lz, ok := value(t).(*lazyValue)
	if !ok {
		return false
	}
	b, ok := lz.Lazy.(*setBuilder)
	if !ok {
		return false
	}
	if b.set != nil {
		b.set.Add(v) // the set made whole: lz.whole is its term
		b.elems, b.sorted, b.mixed = nil, false, true
		return true
	}
	if b.sorted && len(b.elems) > 0 && isString(v) && compareStrings(b.elems[len(b.elems)-1], v) < 0 {
		b.elems = append(b.elems, v) // still sorted
		return true
	}
	b.elems = append(b.elems, v)
	b.sorted = false
	b.mixed = b.mixed || !isString(v)
	return true
}

// strings returns the elements, sorted and distinct, when they are all
// strings (and no add has gone to the whole set).
func (b *setBuilder) strings() ([]*ast.Term, bool) {
	if b.mixed {
		return nil, false
	}
	if !b.sorted {
		b.elems = sortStrings(b.elems)
		b.sorted = true
		b.learn(len(b.elems))
	}
	return b.elems, true
}

// learn raises the hint to n.
func (b *setBuilder) learn(n int) {
	if b.hint == nil {
		return
	}
	if n := int32(min(n, maxSizeHint)); n > b.hint.Load() {
		b.hint.Store(n)
	}
}

// Materialize makes the set, once.
func (b *setBuilder) Materialize() ast.Value {
	if b.set == nil {
		if elems, ok := b.strings(); ok {
			b.set = ast.NewSet(elems...)
		} else {
			b.learn(len(b.elems))
			b.set = ast.NewSet(b.elems...)
			b.elems = nil
		}
	}
	return b.set
}

func (b *setBuilder) Member(key *ast.Term) *ast.Term {
	if elems, ok := b.strings(); ok {
		if searchStrings(elems, key) {
			return key
		}
		return nil
	}
	if b.Materialize().(ast.Set).Contains(key) {
		return key
	}
	return nil
}

func (b *setBuilder) Members(f func(k, v *ast.Term) bool) {
	elems, ok := b.strings()
	if !ok {
		elems = b.Materialize().(ast.Set).Slice()
	}
	for _, k := range elems {
		if f(k, k) {
			return
		}
	}
}

func (b *setBuilder) Type() string { return "set" }

func (b *setBuilder) Len() int {
	if elems, ok := b.strings(); ok {
		return len(elems)
	}
	return b.Materialize().(ast.Set).Len()
}

// objectBuilder is an object that a MakeObjectStmt starts and its
// ObjectInsertStmts fill. A small object with string keys (a rule's
// result, a JSON patch op) is kept as its keys and values in insertion
// order, in the builder itself: no map, no hashing, no allocation per
// member; an ast.Object is made only where a use needs it whole. Past
// maxSmallObject members, or at a key that is not a string, the members
// move to an ast.Object of the builder's own. A use that needs the object
// whole gets obj; an insert after that goes to a new object, so an object
// irvm has handed out as a value never changes. Dots keep what they found
// in such objects (dotObject).
type objectBuilder struct {
	cell LazyCell
	// The members while small: keys[:n] (strings, distinct), vals[:n].
	n    int
	keys [maxSmallObject]*ast.Term
	vals [maxSmallObject]*ast.Term
	// big: the members are in obj.
	big bool
	// obj is the whole object: a small one's once made, a big one's
	// always.
	obj    ast.Object
	handed bool // obj has been handed out by Materialize
}

// maxSmallObject is how many members an objectBuilder keeps itself.
const maxSmallObject = 8

// newObjectBuilder starts an empty object.
func (e *evaluation) newObjectBuilder() *ast.Term {
	b := e.objects.Next()
	return b.cell.Term(b)
}

// newObjectBuilderOf starts an object with obj's members; obj is the
// builder's own.
func (e *evaluation) newObjectBuilderOf(obj ast.Object) *ast.Term {
	b := e.objects.Next()
	b.big, b.obj = true, obj
	return b.cell.Term(b)
}

// objectBuilderOf returns t's objectBuilder and its lazy value, if t is
// an objectBuilder's.
func objectBuilderOf(t *ast.Term) (*objectBuilder, *lazyValue, bool) {
	lz, ok := value(t).(*lazyValue)
	if !ok {
		return nil, nil, false
	}
	b, ok := lz.Lazy.(*objectBuilder)
	return b, lz, ok
}

// insert sets the member at k to v; lz is the builder's lazy value.
func (b *objectBuilder) insert(lz *lazyValue, k, v *ast.Term) {
	if b.handed {
		// The object handed out does not change.
		if b.big {
			b.obj = b.obj.Copy()
		} else {
			b.obj = nil
		}
		b.handed = false
		lz.whole = nil
	}
	if !b.big {
		if s, ok := k.Value.(ast.String); ok {
			if i := b.find(string(s)); i >= 0 {
				b.vals[i] = v
				return
			}
			if b.n < maxSmallObject {
				b.keys[b.n], b.vals[b.n] = k, v
				b.n++
				return
			}
		}
		b.obj, b.big = b.whole(), true
		clear(b.keys[:b.n])
		clear(b.vals[:b.n])
		b.n = 0
	}
	b.obj.Insert(k, v)
}

// find is the index of a small object's member at key s, -1 if none.
func (b *objectBuilder) find(s string) int {
	for i := range b.n {
		if string(b.keys[i].Value.(ast.String)) == s {
			return i
		}
	}
	return -1
}

// whole makes a small object's members into an object.
func (b *objectBuilder) whole() ast.Object {
	items := make([][2]*ast.Term, b.n)
	for i := range items {
		items[i] = [2]*ast.Term{b.keys[i], b.vals[i]}
	}
	return ast.NewObject(items...)
}

// Materialize hands the object out: it does not change after.
func (b *objectBuilder) Materialize() ast.Value {
	if b.obj == nil {
		b.obj = b.whole()
	}
	b.handed = true
	return b.obj
}

// Member returns the member at key, nil if none.
func (b *objectBuilder) Member(key *ast.Term) *ast.Term {
	if b.big {
		return b.obj.Get(key)
	}
	s, ok := key.Value.(ast.String)
	if !ok {
		return nil // a small object's keys are strings
	}
	if i := b.find(string(s)); i >= 0 {
		return b.vals[i]
	}
	return nil
}

func (b *objectBuilder) Members(f func(k, v *ast.Term) bool) { b.Materialize().(ast.Object).Until(f) }

func (b *objectBuilder) Type() string { return "object" }

func (b *objectBuilder) Len() int {
	if b.big {
		return b.obj.Len()
	}
	return b.n
}

// objDot is what a dot with a constant key found in one object.
type objDot struct {
	obj ast.Object
	val *ast.Term
}

// dotObject looks up in's constant key in obj, keeping the answer for the
// rest of the evaluation: within one evaluation an object does not change
// once irvm hands it out (see objectBuilder), and a dot in a loop into a
// policy's constant data (c.capabilities for each capability) finds the
// same member in the same object every time.
func (e *evaluation) dotObject(in *instr, obj ast.Object) *ast.Term {
	c := &e.dots[in.dot]
	if c.obj != nil && c.obj == obj {
		return c.val
	}
	t := obj.Get(in.b.term)
	c.obj, c.val = obj, t
	return t
}
