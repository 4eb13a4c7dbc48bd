package policy

import (
	"reflect"
	"slices"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/peerpod/peerpod/agent/policy/irvm"
)

// A request as a lazy policy input (irvm.Lazy): a message's members are
// encoded when the policy first reads them, and a message or a list of
// messages is encoded whole only where the policy needs it whole. Each
// member is encoded by the same code as the whole input, so the two
// describe the same value.

// LazyInput returns the policy input of m, built as the policy reads it.
func LazyInput(m protoreflect.Message) ast.Value {
	return (&encoder{}).lazyMessage(m).Value
}

type lazyMessage struct {
	cell    irvm.LazyCell
	e       *encoder
	m       protoreflect.Message
	rv      reflect.Value // m's struct, when read directly
	plan    *messagePlan
	members []*ast.Term // by field plan index, nil until read
	whole   ast.Value
}

// lazyMessage returns the term of m as a lazyMessage. Lazy messages and
// their member tables come from slabs, like terms.
func (e *encoder) lazyMessage(m protoreflect.Message) *ast.Term {
	return e.lazyMessageOf(m, planFor(m))
}

// lazyMessageOf is lazyMessage with m's plan known.
func (e *encoder) lazyMessageOf(m protoreflect.Message, p *messagePlan) *ast.Term {
	return e.lazyMessageAt(m, p, e.goStruct(p, m))
}

// lazyPointer is lazyMessage of the generated message ptr points to (a
// field or list element read directly), its struct known from ptr; p is
// its plan, nil when not known yet. It returns the plan too.
func (e *encoder) lazyPointer(ptr reflect.Value, p *messagePlan) (*ast.Term, *messagePlan) {
	m := messageOf(ptr)
	if p == nil {
		p = planFor(m)
	}
	rv := reflect.Value{}
	if p.goType != nil && !e.protoreflectOnly && !ptr.IsNil() && ptr.Type().Elem() == p.goType {
		rv = ptr.Elem()
	}
	return e.lazyMessageAt(m, p, rv), p
}

// lazyMessageAt is lazyMessage with m's plan and struct (invalid when its
// fields go through protoreflect) known.
func (e *encoder) lazyMessageAt(m protoreflect.Message, p *messagePlan, rv reflect.Value) *ast.Term {
	l := e.msgs.Next()
	*l = lazyMessage{e: e, m: m, rv: rv, plan: p, members: e.ptrs.Take(len(p.fields))}
	return l.cell.Term(l)
}

func (l *lazyMessage) Member(key *ast.Term) *ast.Term {
	i := l.Slot(key)
	if i < 0 {
		return nil
	}
	return l.MemberAt(i)
}

// Layout is the message's plan: the slot of a member is its field plan's
// index (irvm.Slotted).
func (l *lazyMessage) Layout() *irvm.Layout { return &l.plan.layout }

// Slot returns the index of key's field plan, -1 when the message has no
// such input key.
func (l *lazyMessage) Slot(key *ast.Term) int {
	name, ok := key.Value.(ast.String)
	if !ok {
		return -1
	}
	i, ok := l.plan.index[string(name)]
	if !ok {
		return -1
	}
	return i
}

// MemberAt returns the member of field plan i, encoding it on first use.
func (l *lazyMessage) MemberAt(i int) *ast.Term {
	if t := l.members[i]; t != nil {
		return t
	}
	f := &l.plan.fields[i]
	var t *ast.Term
	direct := l.rv.IsValid() && f.goKind != goNone
	switch {
	case direct && f.goKind != goMessages && f.goKind != goStrings && f.goKind != goStringMap && f.goKind != goMessage:
		// A scalar read from the struct: the most common member.
		t = l.e.direct(l.rv.Field(f.goIndex), f)
	case l.rv.IsValid() && f.goKind == goMessages:
		if v := l.rv.Field(f.goIndex); v.Len() > 0 {
			ll := l.e.lists.Next()
			*ll = lazyList{e: l.e, fd: f.field, n: v.Len(), rv: v}
			t = ll.cell.Term(ll)
		} else {
			t = ast.InternedEmptyArray
		}
	case l.rv.IsValid() && f.goKind == goStrings:
		if v := l.rv.Field(f.goIndex); v.Len() > 0 {
			ls := l.e.strLists.Next()
			*ls = lazyStrings{e: l.e, ss: stringSlice(v)}
			t = ls.cell.Term(ls)
		} else {
			t = ast.InternedEmptyArray
		}
	case l.rv.IsValid() && f.goKind == goStringMap:
		if m := l.rv.Field(f.goIndex).Interface().(map[string]string); len(m) > 0 {
			sm := l.e.strMaps.Next()
			*sm = lazyStringMap{e: l.e, m: m, rv: l.rv.Field(f.goIndex), f: f}
			t = sm.cell.Term(sm)
		} else {
			t = ast.InternedEmptyObject
		}
	case l.rv.IsValid() && f.goKind == goMessage:
		if v := l.rv.Field(f.goIndex); !v.IsNil() {
			t, _ = l.e.lazyPointer(v, nil)
		} else {
			t = ast.InternedNullTerm
		}
	case f.oneof == nil && f.field.IsList() && isMessage(f.field) && l.m.Get(f.field).List().Len() > 0:
		list := l.m.Get(f.field).List()
		ll := l.e.lists.Next()
		*ll = lazyList{e: l.e, fd: f.field, n: list.Len(), list: list}
		t = ll.cell.Term(ll)
	case f.oneof == nil && !f.field.IsList() && !f.field.IsMap() && isMessage(f.field) && l.m.Has(f.field):
		t = l.e.lazyMessage(l.m.Get(f.field).Message())
	default:
		t = l.e.field(l.m, l.rv, f)
	}
	l.members[i] = t
	return t
}

// Type is "object".
func (l *lazyMessage) Type() string { return "object" }

// Members makes the message whole: a policy iterating over a message's
// fields is rare.
func (l *lazyMessage) Members(f func(k, v *ast.Term) bool) {
	l.Materialize().(ast.Object).Until(f)
}

func (l *lazyMessage) Materialize() ast.Value {
	if l.whole == nil {
		l.whole = l.e.message(l.m).Value
	}
	return l.whole
}

// lazyList is a non-empty list of messages: the slice rv of a generated
// struct, or list.
type lazyList struct {
	cell  irvm.LazyCell
	e     *encoder
	plan  *messagePlan // the elements', once one is read
	fd    protoreflect.FieldDescriptor
	n     int
	rv    reflect.Value
	list  protoreflect.List
	elems []*ast.Term
	whole ast.Value
}

func (l *lazyList) message(i int) protoreflect.Message {
	if l.list != nil {
		return l.list.Get(i).Message()
	}
	return messageOf(l.rv.Index(i))
}

func (l *lazyList) elem(i int) *ast.Term {
	if l.elems == nil {
		l.elems = l.e.ptrs.Take(l.n)
	}
	if l.elems[i] == nil {
		if l.list != nil {
			m := l.list.Get(i).Message()
			if l.plan == nil {
				l.plan = planFor(m)
			}
			l.elems[i] = l.e.lazyMessageOf(m, l.plan)
		} else {
			l.elems[i], l.plan = l.e.lazyPointer(l.rv.Index(i), l.plan)
		}
	}
	return l.elems[i]
}

// Type is "array".
func (l *lazyList) Type() string { return "array" }

// Len is the list's length (count() of it).
func (l *lazyList) Len() int { return l.n }

func (l *lazyList) Member(key *ast.Term) *ast.Term {
	n, ok := key.Value.(ast.Number)
	if !ok {
		return nil
	}
	i, ok := n.Int()
	if !ok || i < 0 || i >= l.n {
		return nil
	}
	return l.elem(i)
}

// Elem returns the element at i (irvm.Indexed).
func (l *lazyList) Elem(i int) *ast.Term { return l.elem(i) }

func (l *lazyList) Members(f func(k, v *ast.Term) bool) {
	for i := range l.n {
		if f(ast.InternedTerm(i), l.elem(i)) {
			return
		}
	}
}

func (l *lazyList) Materialize() ast.Value {
	if l.whole == nil {
		terms := make([]*ast.Term, l.n)
		for i := range terms {
			terms[i] = l.e.message(l.message(i))
		}
		l.whole = ast.NewArray(terms...)
	}
	return l.whole
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

// lazyStrings is a non-empty []string field of a generated struct, its
// elements encoded as the policy reads them: a policy that scans a list
// or looks for one string in it does not need the whole array.
type lazyStrings struct {
	cell  irvm.LazyCell
	e     *encoder
	ss    []string
	elems []*ast.Term
}

// stringSlice returns the []string that v (a []string field, read
// directly) holds: the field itself when v is addressable, as it is in a
// struct reached through its pointer, else a copy.
func stringSlice(v reflect.Value) []string {
	if v.CanAddr() {
		// The field's type is []string or a slice of a string kind
		// (kindOf), laid out alike.
		return *(*[]string)(unsafe.Pointer(v.UnsafeAddr()))
	}
	ss := make([]string, v.Len())
	for i := range ss {
		ss[i] = v.Index(i).String()
	}
	return ss
}

func (l *lazyStrings) elem(i int) *ast.Term {
	if l.elems == nil {
		l.elems = l.e.ptrs.Take(len(l.ss))
	}
	if l.elems[i] == nil {
		l.elems[i] = l.e.str(l.ss[i])
	}
	return l.elems[i]
}

// Type is "array".
func (l *lazyStrings) Type() string { return "array" }

// Len is the list's length.
func (l *lazyStrings) Len() int { return len(l.ss) }

func (l *lazyStrings) Member(key *ast.Term) *ast.Term {
	n, ok := key.Value.(ast.Number)
	if !ok {
		return nil
	}
	i, ok := n.Int()
	if !ok || i < 0 || i >= len(l.ss) {
		return nil
	}
	return l.elem(i)
}

// Elem returns the element at i (irvm.Indexed).
func (l *lazyStrings) Elem(i int) *ast.Term { return l.elem(i) }

func (l *lazyStrings) Members(f func(k, v *ast.Term) bool) {
	for i := range l.ss {
		if f(ast.InternedTerm(i), l.elem(i)) {
			return
		}
	}
}

// ContainsString reports whether an element is s, without encoding the
// elements (irvm.StringSearcher).
func (l *lazyStrings) ContainsString(s string) bool {
	return slices.Contains(l.ss, s)
}

// EqualTo reports whether other is a list of the same strings
// (irvm.Equaler): a rule function called on two such lists need not run
// twice.
func (l *lazyStrings) EqualTo(other irvm.Lazy) (equal, known bool) {
	o, ok := other.(*lazyStrings)
	if !ok {
		return false, false
	}
	return slices.Equal(l.ss, o.ss), true
}

func (l *lazyStrings) Materialize() ast.Value {
	for i := range l.ss {
		l.elem(i)
	}
	return ast.NewArray(l.elems...)
}

// lazyStringMap is a non-empty map<string, string> field of a generated
// struct (a container's annotations): a member is found in the Go map and
// encoded when the policy reads it; the object is made only for a policy
// that needs it whole.
type lazyStringMap struct {
	cell  irvm.LazyCell
	e     *encoder
	m     map[string]string
	rv    reflect.Value // the field, for the whole object
	f     *fieldPlan
	whole ast.Value
}

// Member returns the value at a string key.
func (l *lazyStringMap) Member(key *ast.Term) *ast.Term {
	k, ok := key.Value.(ast.String)
	if !ok {
		return nil
	}
	v, ok := l.m[string(k)]
	if !ok {
		return nil
	}
	return l.e.str(v)
}

// Members makes the object whole (it iterates in key order).
func (l *lazyStringMap) Members(f func(k, v *ast.Term) bool) {
	l.Materialize().(ast.Object).Until(f)
}

// Materialize returns the whole object, encoded as the whole input
// encodes it.
func (l *lazyStringMap) Materialize() ast.Value {
	if l.whole == nil {
		l.whole = l.e.direct(l.rv, l.f).Value
	}
	return l.whole
}

// Type is "object".
func (l *lazyStringMap) Type() string { return "object" }

// Len is the number of entries.
func (l *lazyStringMap) Len() int { return len(l.m) }
