package policy

import (
	"reflect"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Reading a field through protoreflect converts it to a protoreflect.Value:
// every string costs an allocation (reflect's Convert of an addressable
// value) and every list a wrapper. The agent's requests are generated Go
// structs, so the encoder reads the common kinds of field (strings, bools,
// integers and enums, string lists, messages and message lists, string
// maps) straight from the struct with Go reflection, which allocates
// nothing; other fields (other maps, oneofs, optional scalars, floats,
// bytes, other lists) and messages that are not generated structs go
// through protoreflect. Both paths give the same value
// (TestDirectMatchesProtoreflect).

// goKind is how a field is read from its Go struct field; goNone is
// through protoreflect.
type goKind uint8

const (
	goNone      goKind = iota
	goString           // string
	goBool             // bool
	goInt              // int32, int64 or an enum (a named int32)
	goUint             // uint32 or uint64
	goStrings          // []string
	goMessage          // *T, a generated message
	goMessages         // []*T of generated messages
	goStringMap        // map[string]string
)

// directFields sets goKind and goIndex of p's fields from the Go struct
// type st of the messages p describes (a generated message's struct).
func directFields(p *messagePlan, st reflect.Type) {
	byName := map[string]int{}
	for i := range st.NumField() {
		sf := st.Field(i)
		tag, ok := sf.Tag.Lookup("protobuf")
		if !ok || !sf.IsExported() {
			continue
		}
		// "bytes,4,rep,name=options,proto3": number second, name= later.
		parts := strings.Split(tag, ",")
		if len(parts) < 2 {
			continue
		}
		for _, part := range parts[2:] {
			if name, ok := strings.CutPrefix(part, "name="); ok {
				byName[name+"#"+parts[1]] = i
			}
		}
	}
	for i := range p.fields {
		f := &p.fields[i]
		if f.oneof != nil || f.nullable {
			continue
		}
		idx, ok := byName[string(f.field.Name())+"#"+strconv.Itoa(int(f.field.Number()))]
		if !ok {
			continue
		}
		if k := kindOf(f.field, st.Field(idx).Type); k != goNone {
			f.goKind, f.goIndex = k, idx
		}
	}
	p.goType = st
}

// kindOf is how a field of proto kind fd is read from a Go field of type
// t, goNone when t is not the type generated code uses for it.
func kindOf(fd protoreflect.FieldDescriptor, t reflect.Type) goKind {
	if fd.IsMap() {
		if fd.MapKey().Kind() == protoreflect.StringKind && fd.MapValue().Kind() == protoreflect.StringKind &&
			t == reflect.TypeFor[map[string]string]() {
			return goStringMap
		}
		return goNone
	}
	if fd.IsList() {
		if t.Kind() != reflect.Slice {
			return goNone
		}
		switch et := t.Elem(); {
		case fd.Kind() == protoreflect.StringKind && et.Kind() == reflect.String:
			return goStrings
		case fd.Kind() == protoreflect.MessageKind && isGeneratedPtr(et):
			return goMessages
		}
		return goNone
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		if t.Kind() == reflect.String {
			return goString
		}
	case protoreflect.BoolKind:
		if t.Kind() == reflect.Bool {
			return goBool
		}
	case protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if t.Kind() == reflect.Int32 {
			return goInt
		}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if t.Kind() == reflect.Int64 {
			return goInt
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if t.Kind() == reflect.Uint32 {
			return goUint
		}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if t.Kind() == reflect.Uint64 {
			return goUint
		}
	case protoreflect.MessageKind:
		if isGeneratedPtr(t) {
			return goMessage
		}
	}
	return goNone
}

var protoMessageType = reflect.TypeFor[protoreflect.ProtoMessage]()

// isGeneratedPtr reports whether t is a pointer to a struct that is a
// protoreflect.ProtoMessage (a generated message).
func isGeneratedPtr(t reflect.Type) bool {
	return t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && t.Implements(protoMessageType)
}

// goStruct returns the struct m is, when p reads its fields directly
// (an invalid Value otherwise).
func (e *encoder) goStruct(p *messagePlan, m protoreflect.Message) reflect.Value {
	if p.goType == nil || e.protoreflectOnly {
		return reflect.Value{}
	}
	rv := reflect.ValueOf(m.Interface())
	if rv.Kind() != reflect.Pointer || rv.Type().Elem() != p.goType || rv.IsNil() {
		return reflect.Value{}
	}
	return rv.Elem()
}

// messageOf is the protoreflect view of a generated message pointer.
func messageOf(ptr reflect.Value) protoreflect.Message {
	return ptr.Interface().(protoreflect.ProtoMessage).ProtoReflect()
}
