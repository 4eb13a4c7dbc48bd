package policy

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/peerpod/peerpod/agent/policy/internal/slab"
	"github.com/peerpod/peerpod/agent/policy/irvm"
)

// The policy input is the request shaped as the Kata agent shapes it (the
// serde encoding of its rust-protobuf types), so Kata's rules.rego reads it
// unchanged:
//   - field names are the proto names verbatim; a name that is a Rust keyword
//     gets a "_" suffix (Mount.type → "type_");
//   - every field is present: unset messages are null, empty lists [], false,
//     0 and "" are written out;
//   - enums are integers, 64-bit integers JSON numbers, bytes arrays of
//     numbers, maps objects (keys as strings);
//   - a oneof is one field named after the oneof: null when unset, else an
//     object {"<field name>": value};
//   - a proto3 optional scalar is null when unset.
// protojson does none of this, so the encoder walks protoreflect itself and
// builds OPA values directly (no JSON round trip).

// isRustKeyword reports whether rust-protobuf escapes name with a "_"
// suffix (a switch, not a map: nothing to build at package initialisation).
func isRustKeyword(name string) bool {
	switch name {
	case "as", "break", "const", "continue", "crate", "else",
		"enum", "extern", "false", "fn", "for", "if",
		"impl", "in", "let", "loop", "match", "mod",
		"move", "mut", "pub", "ref", "return", "self",
		"static", "struct", "super", "trait", "true",
		"type", "unsafe", "use", "where", "while",
		"async", "await", "dyn", "abstract", "become",
		"box", "do", "final", "macro", "override",
		"priv", "typeof", "unsized", "virtual", "yield",
		"try":
		return true
	}
	return false
}

// InputName is the policy input key of a proto field or oneof name.
func InputName(protoName string) string {
	if isRustKeyword(protoName) {
		return protoName + "_"
	}
	return protoName
}

// fieldPlan is how one input key is produced.
type fieldPlan struct {
	key   *ast.Term
	field protoreflect.FieldDescriptor // nil for a oneof
	oneof protoreflect.OneofDescriptor
	// nullable: an optional scalar (proto3 optional), null when unset.
	nullable bool
	// goKind and goIndex: how and from which Go struct field the
	// field is read directly (direct.go).
	goKind  goKind
	goIndex int
}

type messagePlan struct {
	// layout stands for the plan in irvm's slot caches (lazyMessage).
	layout irvm.Layout
	fields []fieldPlan
	index  map[string]int // input key → fields index
	// goType is the generated struct whose fields are read directly;
	// nil when every field goes through protoreflect.
	goType reflect.Type
}

// planCache maps a message descriptor to its plan.
var planCache sync.Map

// planFor returns the plan of m's message type.
func planFor(m protoreflect.Message) *messagePlan {
	md := m.Descriptor()
	if p, ok := planCache.Load(md); ok {
		return p.(*messagePlan)
	}
	p := &messagePlan{}
	seen := map[protoreflect.FullName]bool{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if !seen[od.FullName()] {
				seen[od.FullName()] = true
				p.fields = append(p.fields, fieldPlan{key: ast.StringTerm(InputName(string(od.Name()))), oneof: od})
			}
			continue
		}
		p.fields = append(p.fields, fieldPlan{
			key:      ast.StringTerm(InputName(string(fd.Name()))),
			field:    fd,
			nullable: fd.HasOptionalKeyword() && fd.Kind() != protoreflect.MessageKind,
		})
	}
	p.index = make(map[string]int, len(p.fields))
	for i, f := range p.fields {
		p.index[string(f.key.Value.(ast.String))] = i
	}
	if t := reflect.TypeOf(m.Interface()); t != nil && isGeneratedPtr(t) {
		directFields(p, t.Elem())
	}
	actual, _ := planCache.LoadOrStore(md, p)
	return actual.(*messagePlan)
}

// Input converts a request into the policy input value.
func Input(m protoreflect.Message) ast.Value {
	var e encoder
	return e.message(m).Value
}

// encoder builds one input value. Terms, strings, element lists and lazy
// messages come from slabs (package slab); null, false, true, "", [] and
// small integers are OPA's shared interned terms. OPA does not modify an
// input value, so sharing them is safe.
type encoder struct {
	terms    slab.Slab[ast.Term]
	strs     slab.Slab[ast.String] // see str
	ptrs     slab.Slab[*ast.Term]  // element lists and lazy members
	msgs     slab.Slab[lazyMessage]
	strLists slab.Slab[lazyStrings]
	strMaps  slab.Slab[lazyStringMap]
	lists    slab.Slab[lazyList]
	kvs      [][2]*ast.Term // scratch: the members of the objects being encoded
	// protoreflectOnly turns direct struct reads off (for the test
	// that compares the two ways).
	protoreflectOnly bool
}

func (e *encoder) term(v ast.Value) *ast.Term {
	t := e.terms.Next()
	t.Value = v
	return t
}

// reset makes e ready to encode another input, reusing its slabs: every
// value e encoded before is cleared, so none may be in use.
func (e *encoder) reset() {
	e.terms.Reset()
	e.strs.Reset()
	e.ptrs.Reset()
	e.msgs.Reset()
	e.strLists.Reset()
	e.strMaps.Reset()
	e.lists.Reset()
	clear(e.kvs[:cap(e.kvs)])
	e.kvs = e.kvs[:0]
	e.protoreflectOnly = false
}

// str returns a term for s. An ast.String held in an ast.Value is a
// pointer to a string header that Go allocates for each conversion (16
// bytes, one allocation per string of the input); str puts the headers in
// a slab instead and builds the interface value from its method table and
// the header's address, exactly as the conversion would. The slab's
// elements are written once, before their interface exists, and never
// again.
func (e *encoder) str(s string) *ast.Term {
	if s == "" {
		return ast.InternedEmptyString
	}
	h := e.strs.Next()
	*h = ast.String(s)
	var v ast.Value = ast.String("") // the method table of ast.String in ast.Value
	(*iface)(unsafe.Pointer(&v)).data = unsafe.Pointer(h)
	return e.term(v)
}

// iface is the layout of a non-empty interface value.
type iface struct {
	tab, data unsafe.Pointer
}

func (e *encoder) message(m protoreflect.Message) *ast.Term {
	p := planFor(m)
	rv := e.goStruct(p, m)
	start := len(e.kvs)
	for i := range p.fields {
		v := e.field(m, rv, &p.fields[i]) // may use e.kvs beyond start
		e.kvs = append(e.kvs, [2]*ast.Term{p.fields[i].key, v})
	}
	obj := ast.NewObject(e.kvs[start:]...)
	clear(e.kvs[start:])
	e.kvs = e.kvs[:start]
	return e.term(obj)
}

// field encodes one input key of m; rv is m's struct when its fields are
// read directly.
func (e *encoder) field(m protoreflect.Message, rv reflect.Value, f *fieldPlan) *ast.Term {
	if f.goKind != goNone && rv.IsValid() {
		return e.direct(rv.Field(f.goIndex), f)
	}
	switch {
	case f.oneof != nil:
		if fd := m.WhichOneof(f.oneof); fd != nil {
			return e.term(ast.NewObject(ast.Item(ast.StringTerm(InputName(string(fd.Name()))), e.singular(fd, m.Get(fd)))))
		}
		return ast.InternedNullTerm
	case f.field.IsMap():
		return e.mapping(f.field, m.Get(f.field).Map())
	case f.field.IsList():
		return e.list(f.field, m.Get(f.field).List())
	case f.field.Kind() == protoreflect.MessageKind || f.field.Kind() == protoreflect.GroupKind:
		if m.Has(f.field) {
			return e.message(m.Get(f.field).Message())
		}
		return ast.InternedNullTerm
	case f.nullable && !m.Has(f.field):
		return ast.InternedNullTerm
	default:
		return e.singular(f.field, m.Get(f.field))
	}
}

// direct encodes the Go struct field v, read as f.goKind says.
func (e *encoder) direct(v reflect.Value, f *fieldPlan) *ast.Term {
	switch f.goKind {
	case goString:
		return e.str(v.String())
	case goBool:
		return ast.InternedTerm(v.Bool())
	case goInt:
		return intTerm(v.Int())
	case goUint:
		if u := v.Uint(); u <= math.MaxInt64 {
			return intTerm(int64(u))
		}
		return ast.UIntNumberTerm(v.Uint())
	case goStrings:
		n := v.Len()
		if n == 0 {
			return ast.InternedEmptyArray
		}
		terms := e.ptrs.Take(n)
		for i := range terms {
			terms[i] = e.str(v.Index(i).String())
		}
		return e.term(ast.NewArray(terms...))
	case goMessage:
		if v.IsNil() {
			return ast.InternedNullTerm
		}
		return e.message(messageOf(v))
	case goMessages:
		n := v.Len()
		if n == 0 {
			return ast.InternedEmptyArray
		}
		terms := e.ptrs.Take(n)
		for i := range terms {
			terms[i] = e.message(messageOf(v.Index(i)))
		}
		return e.term(ast.NewArray(terms...))
	case goStringMap:
		m := v.Interface().(map[string]string)
		if len(m) == 0 {
			return ast.InternedEmptyObject
		}
		start := len(e.kvs)
		for k, s := range m {
			e.kvs = append(e.kvs, [2]*ast.Term{e.str(k), e.str(s)})
		}
		obj := ast.NewObject(e.kvs[start:]...)
		clear(e.kvs[start:])
		e.kvs = e.kvs[:start]
		return e.term(obj)
	}
	panic("policy: direct read of a field without a Go kind")
}

func (e *encoder) list(fd protoreflect.FieldDescriptor, l protoreflect.List) *ast.Term {
	n := l.Len()
	if n == 0 {
		return ast.InternedEmptyArray
	}
	terms := make([]*ast.Term, n)
	for i := range terms {
		terms[i] = e.singular(fd, l.Get(i))
	}
	return e.term(ast.NewArray(terms...))
}

func (e *encoder) mapping(fd protoreflect.FieldDescriptor, mp protoreflect.Map) *ast.Term {
	if mp.Len() == 0 {
		return ast.InternedEmptyObject
	}
	kvs := make([][2]*ast.Term, 0, mp.Len())
	vd := fd.MapValue()
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		kvs = append(kvs, [2]*ast.Term{e.str(k.String()), e.singular(vd, v)})
		return true
	})
	return e.term(ast.NewObject(kvs...))
}

func (e *encoder) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) *ast.Term {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return ast.InternedTerm(v.Bool())
	case protoreflect.EnumKind:
		return intTerm(int64(v.Enum()))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return intTerm(v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if u := v.Uint(); u <= math.MaxInt64 {
			return intTerm(int64(u))
		}
		return ast.UIntNumberTerm(v.Uint())
	case protoreflect.FloatKind:
		return ast.NumberTerm(json.Number(strconv.FormatFloat(v.Float(), 'g', -1, 32)))
	case protoreflect.DoubleKind:
		return ast.FloatNumberTerm(v.Float())
	case protoreflect.StringKind:
		return e.str(v.String())
	case protoreflect.BytesKind:
		b := v.Bytes()
		if len(b) == 0 {
			return ast.InternedEmptyArray
		}
		terms := make([]*ast.Term, len(b))
		for i, c := range b {
			terms[i] = ast.InternedTerm(int(c))
		}
		return e.term(ast.NewArray(terms...))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message())
	}
	return ast.InternedNullTerm
}

func intTerm(i int64) *ast.Term {
	if i >= -1 && i <= 512 {
		return ast.InternedTerm(int(i))
	}
	return ast.NumberTerm(json.Number(strconv.FormatInt(i, 10)))
}
