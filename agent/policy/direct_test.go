package policy

import (
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/peerpod/peerpod/agent/policy/irvm"
	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/agent/types"
)

// fill sets every field of m (lists and maps to two entries, one field of
// each oneof, messages to depth levels) to values derived from seed, so
// that no two fields hold the same value.
func fill(m protoreflect.Message, seed, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && od.Fields().Get(0) != fd {
			continue
		}
		n := seed*100 + i
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := range 2 {
				k := protoreflect.ValueOfString(fmt.Sprintf("k%d-%d", n, j)).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					fill(v.Message(), n*10+j, depth-1)
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(fd.MapValue(), n*10+j))
				}
			}
		case fd.IsList():
			if (fd.Kind() == protoreflect.MessageKind) && depth == 0 {
				continue
			}
			l := m.Mutable(fd).List()
			for j := range 2 {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(e.Message(), n*10+j, depth-1)
					l.Append(e)
				} else {
					l.Append(scalar(fd, n*10+j))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth > 0 {
				fill(m.Mutable(fd).Message(), n, depth-1)
			}
		default:
			m.Set(fd, scalar(fd, n))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("s%d", n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(n%2 == 1)
	case protoreflect.EnumKind:
		vs := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vs.Get(n % vs.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(-n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(n) << 40)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n) + 1000)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n)<<60 | 7)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n) + 0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.25)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(n), byte(n >> 8)})
	}
	panic(fmt.Sprintf("no value for %s", fd.FullName()))
}

// Every agent and types message, filled in every field, encodes to the
// same input whether its fields are read from the Go struct or through
// protoreflect, whole and lazily.
func TestDirectMatchesProtoreflect(t *testing.T) {
	files := map[string]bool{
		agent.File_api_agent_agent_proto.Path():       true,
		agent.File_api_agent_oci_proto.Path():         true,
		agent.File_api_agent_health_proto.Path():      true,
		types.File_api_agent_types_types_proto.Path(): true,
	}
	direct := 0
	n := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if !files[mt.Descriptor().ParentFile().Path()] {
			return true
		}
		n++
		m := mt.New()
		fill(m, n, 3)
		for _, f := range planFor(m).fields {
			if f.goKind != goNone {
				direct++
			}
		}
		name := string(mt.Descriptor().Name())
		want := (&encoder{protoreflectOnly: true}).message(m).Value
		if got := (&encoder{}).message(m).Value; ast.Compare(got, want) != 0 {
			t.Errorf("%s: direct\n%v\nprotoreflect\n%v", name, got, want)
		}
		if got := irvm.Whole(LazyInput(m)); ast.Compare(got, want) != 0 {
			t.Errorf("%s: lazy direct\n%v\nprotoreflect\n%v", name, got, want)
		}
		return true
	})
	t.Logf("%d messages, %d fields read directly", n, direct)
	if n < 50 || direct < 100 {
		t.Fatalf("%d messages with %d directly read fields: the registry or the plans are not what this test expects", n, direct)
	}
}

// Strings the encoder puts in its slab are ordinary ast.String values,
// each its own: a later string does not change an earlier one.
func TestSlabStrings(t *testing.T) {
	var e encoder
	var want []string
	var got []*ast.Term
	for i := range 3*4096 + 5 {
		s := fmt.Sprintf("value-%d", i)
		want, got = append(want, s), append(got, e.str(s))
	}
	for i, tm := range got {
		s, ok := tm.Value.(ast.String)
		switch {
		case !ok || string(s) != want[i]:
			t.Fatalf("string %d is %v (%T), want %q", i, tm.Value, tm.Value, want[i])
		case tm.Value.Hash() != ast.String(want[i]).Hash():
			t.Fatalf("string %d hashes to %d, want %d", i, tm.Value.Hash(), ast.String(want[i]).Hash())
		case !tm.Equal(ast.StringTerm(want[i])) || ast.Compare(tm.Value, ast.String(want[i])) != 0:
			t.Fatalf("string %d does not equal %q", i, want[i])
		}
	}
	if e.str("") != ast.InternedEmptyString {
		t.Fatal(`"" is not the interned empty string`)
	}
}
