package policy

import (
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
	return irvm.LazyTerm(newLazyMessage(&encoder{}, m)).Value
}

type lazyMessage struct {
	e       *encoder
	m       protoreflect.Message
	plan    *messagePlan
	members []*ast.Term // by field plan index, nil until read
	whole   ast.Value
}

func newLazyMessage(e *encoder, m protoreflect.Message) *lazyMessage {
	p := planFor(m.Descriptor())
	return &lazyMessage{e: e, m: m, plan: p, members: make([]*ast.Term, len(p.fields))}
}

func (l *lazyMessage) Member(key *ast.Term) *ast.Term {
	name, ok := key.Value.(ast.String)
	if !ok {
		return nil
	}
	i, ok := l.plan.index[string(name)]
	if !ok {
		return nil
	}
	if t := l.members[i]; t != nil {
		return t
	}
	f := &l.plan.fields[i]
	var t *ast.Term
	switch {
	case f.oneof == nil && f.field.IsList() && isMessage(f.field) && l.m.Get(f.field).List().Len() > 0:
		t = irvm.LazyTerm(&lazyList{e: l.e, fd: f.field, list: l.m.Get(f.field).List()})
	case f.oneof == nil && !f.field.IsList() && !f.field.IsMap() && isMessage(f.field) && l.m.Has(f.field):
		t = irvm.LazyTerm(newLazyMessage(l.e, l.m.Get(f.field).Message()))
	default:
		t = l.e.field(l.m, f)
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

// lazyList is a non-empty list of messages.
type lazyList struct {
	e     *encoder
	fd    protoreflect.FieldDescriptor
	list  protoreflect.List
	elems []*ast.Term
	whole ast.Value
}

func (l *lazyList) elem(i int) *ast.Term {
	if l.elems == nil {
		l.elems = make([]*ast.Term, l.list.Len())
	}
	if l.elems[i] == nil {
		l.elems[i] = irvm.LazyTerm(newLazyMessage(l.e, l.list.Get(i).Message()))
	}
	return l.elems[i]
}

// Type is "array".
func (l *lazyList) Type() string { return "array" }

// Len is the list's length (count() of it).
func (l *lazyList) Len() int { return l.list.Len() }

func (l *lazyList) Member(key *ast.Term) *ast.Term {
	n, ok := key.Value.(ast.Number)
	if !ok {
		return nil
	}
	i, ok := n.Int()
	if !ok || i < 0 || i >= l.list.Len() {
		return nil
	}
	return l.elem(i)
}

func (l *lazyList) Members(f func(k, v *ast.Term) bool) {
	for i := range l.list.Len() {
		if f(ast.InternedTerm(i), l.elem(i)) {
			return
		}
	}
}

func (l *lazyList) Materialize() ast.Value {
	if l.whole == nil {
		l.whole = l.e.list(l.fd, l.list).Value
	}
	return l.whole
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}
