// Package api_test holds the wire-compatibility tests of the generated
// protocol packages: every message is checked, field by field, against the
// Kata layout written down in kata_table_test.go.
package api_test

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/agent/types"
	"github.com/peerpod/peerpod/api/hypervisor"
)

// ourFiles are the generated files whose messages must all be in the table.
var ourFiles = []protoreflect.FileDescriptor{
	hypervisor.File_api_hypervisor_hypervisor_proto,
	agent.File_api_agent_agent_proto,
	agent.File_api_agent_oci_proto,
	agent.File_api_agent_health_proto,
	types.File_api_agent_types_types_proto,
}

type kind int

const (
	kString kind = iota
	kBytes
	kBool
	kInt32
	kInt64
	kUint32
	kUint64
	kEnum
	kMessage
)

var kindNames = map[string]kind{
	"string": kString, "bytes": kBytes, "bool": kBool,
	"int32": kInt32, "int64": kInt64, "uint32": kUint32, "uint64": kUint64,
}

func (k kind) String() string {
	for n, v := range kindNames {
		if v == k {
			return n
		}
	}
	if k == kEnum {
		return "enum"
	}
	return "message"
}

// wireType is how a single value of the kind is encoded.
func (k kind) wireType() protowire.Type {
	switch k {
	case kString, kBytes, kMessage:
		return protowire.BytesType
	default:
		return protowire.VarintType
	}
}

// fieldSpec is one field of a message as Kata defines it.
type fieldSpec struct {
	name     string
	num      protowire.Number
	kind     kind
	typeName string // message or enum full name
	repeated bool
	mapValue *fieldSpec // set for map<string, V> fields
	oneof    string
}

// value trees: a message is map[string]any keyed by field name, a repeated
// field []any, a map field map[string]any, scalars their Go type
// (string, []byte, bool, int32, int64, uint32, uint64, protoreflect.EnumNumber).

// kataSpecs parses kataMessages.
func kataSpecs(t *testing.T) map[string][]fieldSpec {
	t.Helper()
	specs := make(map[string][]fieldSpec, len(kataMessages))
	for msg, text := range kataMessages {
		var fields []fieldSpec
		for item := range strings.SplitSeq(text, ";") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			f, err := parseField(item)
			if err != nil {
				t.Fatalf("table entry %s: %q: %v", msg, item, err)
			}
			fields = append(fields, f)
		}
		specs[msg] = fields
	}
	return specs
}

func parseField(item string) (fieldSpec, error) {
	var f fieldSpec
	words := strings.Fields(item)
	if len(words) < 2 || len(words) > 3 {
		return f, fmt.Errorf("want name=number type [oneof:name]")
	}
	name, num, ok := strings.Cut(words[0], "=")
	if !ok {
		return f, fmt.Errorf("missing =")
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 {
		return f, fmt.Errorf("bad field number %q", num)
	}
	f.name, f.num = name, protowire.Number(n)
	if len(words) == 3 {
		o, ok := strings.CutPrefix(words[2], "oneof:")
		if !ok {
			return f, fmt.Errorf("bad suffix %q", words[2])
		}
		f.oneof = o
	}
	typ := words[1]
	if v, ok := strings.CutPrefix(typ, "map<string,"); ok {
		v, ok = strings.CutSuffix(v, ">")
		if !ok {
			return f, fmt.Errorf("bad map type %q", typ)
		}
		val := fieldSpec{name: "value", num: 2}
		val.kind, val.typeName = parseType(v)
		f.mapValue = &val
		return f, nil
	}
	typ, f.repeated = strings.CutPrefix(typ, "[]")
	f.kind, f.typeName = parseType(typ)
	return f, nil
}

func parseType(s string) (kind, string) {
	if k, ok := kindNames[s]; ok {
		return k, ""
	}
	if e, ok := strings.CutPrefix(s, "enum:"); ok {
		return kEnum, e
	}
	return kMessage, s
}

// mapEntrySpec is the implicit message a map field is encoded as.
func mapEntrySpec(f fieldSpec) []fieldSpec {
	return []fieldSpec{{name: "key", num: 1, kind: kString}, *f.mapValue}
}

// expected builds a value for every field of msg, recursively. Values are
// chosen so that a different field type does not decode to the same value:
// negative int32/int64, uint32 above MaxInt32, uint64 above MaxInt64.
func expected(specs map[string][]fieldSpec, msg string) map[string]any {
	out := map[string]any{}
	for _, f := range specs[msg] {
		switch {
		case f.mapValue != nil:
			m := map[string]any{}
			for i := range 2 {
				m[fmt.Sprintf("%s-key%d", f.name, i)] = scalar(specs, *f.mapValue, i)
			}
			out[f.name] = m
		case f.repeated:
			out[f.name] = []any{scalar(specs, f, 0), scalar(specs, f, 1)}
		default:
			out[f.name] = scalar(specs, f, 0)
		}
	}
	return out
}

func scalar(specs map[string][]fieldSpec, f fieldSpec, i int) any {
	n := int64(f.num)*10 + int64(i)
	switch f.kind {
	case kString:
		return fmt.Sprintf("%s/%d", f.name, i)
	case kBytes:
		return []byte{0xff, byte(f.num), byte(i), 0x00}
	case kBool:
		return true
	case kInt32:
		return int32(-1000 - n)
	case kInt64:
		return -(int64(1) << 40) - n
	case kUint32:
		return uint32(1<<31 + n)
	case kUint64:
		return uint64(1)<<63 + uint64(n)
	case kEnum:
		return protoreflect.EnumNumber(slices.Max(slices.Collect(maps.Values(kataEnums[f.typeName]))))
	default:
		return expected(specs, f.typeName)
	}
}

// encode writes a message value the way a Kata peer would, from the table only.
func encode(specs map[string][]fieldSpec, msg string, val map[string]any) []byte {
	return encodeFields(specs, specs[msg], val)
}

func encodeFields(specs map[string][]fieldSpec, fields []fieldSpec, val map[string]any) []byte {
	var b []byte
	for _, f := range fields {
		v, ok := val[f.name]
		if !ok {
			continue
		}
		switch {
		case f.mapValue != nil:
			m := v.(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(m)) {
				entry := encodeFields(specs, mapEntrySpec(f), map[string]any{"key": k, "value": m[k]})
				b = protowire.AppendTag(b, f.num, protowire.BytesType)
				b = protowire.AppendBytes(b, entry)
			}
		case f.repeated && f.kind.wireType() == protowire.VarintType:
			var packed []byte
			for _, e := range v.([]any) {
				packed = protowire.AppendVarint(packed, varintOf(e))
			}
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendBytes(b, packed)
		case f.repeated:
			for _, e := range v.([]any) {
				b = appendScalar(specs, b, f, e)
			}
		default:
			b = appendScalar(specs, b, f, v)
		}
	}
	return b
}

func appendScalar(specs map[string][]fieldSpec, b []byte, f fieldSpec, v any) []byte {
	b = protowire.AppendTag(b, f.num, f.kind.wireType())
	switch f.kind {
	case kString:
		return protowire.AppendString(b, v.(string))
	case kBytes:
		return protowire.AppendBytes(b, v.([]byte))
	case kMessage:
		return protowire.AppendBytes(b, encode(specs, f.typeName, v.(map[string]any)))
	default:
		return protowire.AppendVarint(b, varintOf(v))
	}
}

// varintOf is the varint of a scalar; signed 32-bit values are sign-extended
// to 64 bits as the protobuf encoding requires.
func varintOf(v any) uint64 {
	switch v := v.(type) {
	case bool:
		return protowire.EncodeBool(v)
	case int32:
		return uint64(int64(v))
	case int64:
		return uint64(v)
	case uint32:
		return uint64(v)
	case uint64:
		return v
	case protoreflect.EnumNumber:
		return uint64(int64(v))
	}
	panic(fmt.Sprintf("not a varint value: %T", v))
}

// decodeValue turns one varint into the Go value of kind k.
func decodeValue(k kind, v uint64) any {
	switch k {
	case kBool:
		return protowire.DecodeBool(v)
	case kInt32:
		return int32(v)
	case kInt64:
		return int64(v)
	case kUint32:
		return uint32(v)
	case kUint64:
		return v
	default:
		return protoreflect.EnumNumber(int32(v))
	}
}

// parse reads an encoding with protowire alone, naming fields by the Kata
// table: a field number Kata does not define, or a wrong wire type, is an error.
func parse(specs map[string][]fieldSpec, fields []fieldSpec, msg string, b []byte) (map[string]any, error) {
	out := map[string]any{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%s: bad tag: %w", msg, protowire.ParseError(n))
		}
		b = b[n:]
		i := slices.IndexFunc(fields, func(f fieldSpec) bool { return f.num == num })
		if i < 0 {
			return nil, fmt.Errorf("%s: field number %d (wire type %d) is not defined by Kata", msg, num, typ)
		}
		f := fields[i]
		packed := f.repeated && f.kind.wireType() == protowire.VarintType && typ == protowire.BytesType
		want := f.kind.wireType()
		if f.mapValue != nil {
			want = protowire.BytesType
		}
		if typ != want && !packed {
			return nil, fmt.Errorf("%s.%s (field %d): wire type %d, Kata uses %d", msg, f.name, num, typ, want)
		}
		var vals []any
		switch {
		case packed:
			p, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%s.%s: %w", msg, f.name, protowire.ParseError(n))
			}
			b = b[n:]
			for len(p) > 0 {
				v, n := protowire.ConsumeVarint(p)
				if n < 0 {
					return nil, fmt.Errorf("%s.%s: %w", msg, f.name, protowire.ParseError(n))
				}
				p = p[n:]
				vals = append(vals, decodeValue(f.kind, v))
			}
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("%s.%s: %w", msg, f.name, protowire.ParseError(n))
			}
			b = b[n:]
			vals = append(vals, decodeValue(f.kind, v))
		default:
			p, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("%s.%s: %w", msg, f.name, protowire.ParseError(n))
			}
			b = b[n:]
			switch {
			case f.mapValue != nil:
				e, err := parse(specs, mapEntrySpec(f), msg+"."+f.name+"[entry]", p)
				if err != nil {
					return nil, err
				}
				m, _ := out[f.name].(map[string]any)
				if m == nil {
					m = map[string]any{}
					out[f.name] = m
				}
				m[e["key"].(string)] = e["value"]
				continue
			case f.kind == kString:
				vals = append(vals, string(p))
			case f.kind == kBytes:
				vals = append(vals, bytes.Clone(p))
			default:
				sub, err := parse(specs, specs[f.typeName], msg+"."+f.name, p)
				if err != nil {
					return nil, err
				}
				vals = append(vals, sub)
			}
		}
		if f.repeated {
			l, _ := out[f.name].([]any)
			out[f.name] = append(l, vals...)
			continue
		}
		if _, dup := out[f.name]; dup || len(vals) != 1 {
			return nil, fmt.Errorf("%s.%s: singular field appears more than once", msg, f.name)
		}
		out[f.name] = vals[0]
	}
	return out, nil
}

// fromProto reads a decoded generated message back into a value tree, looking
// fields up by their Kata name. Fields the table does not know, and bytes our
// type could not place (unknown fields), are errors.
func fromProto(specs map[string][]fieldSpec, m protoreflect.Message, msg string) (map[string]any, error) {
	if got := string(m.Descriptor().FullName()); got != msg {
		return nil, fmt.Errorf("decoded into %s, Kata's type is %s", got, msg)
	}
	if u := m.GetUnknown(); len(u) > 0 {
		return nil, fmt.Errorf("%s: %d bytes our type does not know (wrong field number or wire type), starting %x", msg, len(u), u[:min(len(u), 16)])
	}
	out := map[string]any{}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		i := slices.IndexFunc(specs[msg], func(f fieldSpec) bool { return f.name == string(fd.Name()) })
		if i < 0 {
			err = fmt.Errorf("%s: decoded a value into field %s (%d), which Kata does not define", msg, fd.Name(), fd.Number())
			return false
		}
		f := specs[msg][i]
		conv := func(spec fieldSpec, v protoreflect.Value) (any, error) {
			if spec.kind == kMessage {
				return fromProto(specs, v.Message(), spec.typeName)
			}
			if spec.kind == kBytes {
				return bytes.Clone(v.Bytes()), nil
			}
			return v.Interface(), nil
		}
		switch {
		case fd.IsMap():
			mv := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				mv[k.String()], err = conv(*f.mapValue, e)
				return err == nil
			})
			out[f.name] = mv
		case fd.IsList():
			var l []any
			for j := range v.List().Len() {
				var e any
				if e, err = conv(f, v.List().Get(j)); err != nil {
					return false
				}
				l = append(l, e)
			}
			out[f.name] = l
		default:
			out[f.name], err = conv(f, v)
		}
		return err == nil
	})
	return out, err
}

// toProto builds our generated message from a value tree, setting fields by
// their Kata name.
func toProto(t *testing.T, specs map[string][]fieldSpec, msg string, val map[string]any) protoreflect.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(msg))
	if err != nil {
		t.Fatalf("no generated type for %s: %v", msg, err)
	}
	m := mt.New()
	for _, f := range specs[msg] {
		// Look the field up by name only and ignore its number, so that a
		// wrong number is left for the wire check to find.
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(f.name))
		if fd == nil {
			t.Fatalf("%s: no field %s", msg, f.name)
		}
		byName := f
		byName.num = fd.Number()
		if d := shapeDiff(fd, byName); d != "" {
			t.Fatalf("%s.%s cannot hold Kata's value: %s", msg, f.name, d)
		}
		v := val[f.name]
		switch {
		case f.mapValue != nil:
			mp := m.Mutable(fd).Map()
			for k, e := range v.(map[string]any) {
				mp.Set(protoreflect.ValueOfString(k).MapKey(), toValue(t, specs, *f.mapValue, e))
			}
		case f.repeated:
			l := m.Mutable(fd).List()
			for _, e := range v.([]any) {
				l.Append(toValue(t, specs, f, e))
			}
		default:
			m.Set(fd, toValue(t, specs, f, v))
		}
	}
	return m
}

func toValue(t *testing.T, specs map[string][]fieldSpec, f fieldSpec, v any) protoreflect.Value {
	t.Helper()
	if f.kind == kMessage {
		return protoreflect.ValueOfMessage(toProto(t, specs, f.typeName, v.(map[string]any)))
	}
	return protoreflect.ValueOf(v)
}

// kindOf maps a descriptor kind onto the table's kinds; ok is false for kinds
// Kata never uses in these messages (sint, fixed, float, ...).
func kindOf(fd protoreflect.FieldDescriptor) (kind, string, bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return kString, "", true
	case protoreflect.BytesKind:
		return kBytes, "", true
	case protoreflect.BoolKind:
		return kBool, "", true
	case protoreflect.Int32Kind:
		return kInt32, "", true
	case protoreflect.Int64Kind:
		return kInt64, "", true
	case protoreflect.Uint32Kind:
		return kUint32, "", true
	case protoreflect.Uint64Kind:
		return kUint64, "", true
	case protoreflect.EnumKind:
		return kEnum, string(fd.Enum().FullName()), true
	case protoreflect.MessageKind:
		return kMessage, string(fd.Message().FullName()), true
	}
	return 0, "", false
}

// shapeDiff describes how our field differs from Kata's in number, type,
// cardinality or oneof; "" if it does not.
func shapeDiff(fd protoreflect.FieldDescriptor, f fieldSpec) string {
	if fd.Number() != f.num {
		return fmt.Sprintf("number %d, Kata %d", fd.Number(), f.num)
	}
	if f.mapValue != nil {
		if !fd.IsMap() || fd.MapKey().Kind() != protoreflect.StringKind {
			return "not a map<string, …>, Kata's is"
		}
		return shapeDiff(fd.MapValue(), *f.mapValue)
	}
	if fd.IsMap() {
		return "a map, Kata's is not"
	}
	if fd.IsList() != f.repeated {
		return fmt.Sprintf("repeated=%v, Kata repeated=%v", fd.IsList(), f.repeated)
	}
	k, typeName, ok := kindOf(fd)
	if !ok || k != f.kind || typeName != f.typeName {
		return fmt.Sprintf("type %v %s, Kata %v %s", fd.Kind(), typeName, f.kind, f.typeName)
	}
	oneof := ""
	if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
		oneof = string(o.Name())
	}
	if oneof != f.oneof {
		return fmt.Sprintf("oneof %q, Kata %q", oneof, f.oneof)
	}
	if fd.HasPresence() && f.oneof == "" && f.kind != kMessage {
		return "has explicit presence (optional), Kata's does not"
	}
	return ""
}

// ourMessages lists every message our generated files define, nested ones
// included, map entries excluded.
func ourMessages() map[string]protoreflect.MessageDescriptor {
	out := map[string]protoreflect.MessageDescriptor{}
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			md := ms.Get(i)
			if md.IsMapEntry() {
				continue
			}
			out[string(md.FullName())] = md
			walk(md.Messages())
		}
	}
	for _, fd := range ourFiles {
		walk(fd.Messages())
	}
	return out
}

// TestSchemaMatchesKata checks that the table and our generated files define
// the same messages, and every field the same way.
func TestSchemaMatchesKata(t *testing.T) {
	specs := kataSpecs(t)
	ours := ourMessages()
	for name := range specs {
		if _, ok := ours[name]; !ok {
			t.Errorf("Kata message %s is not generated", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ours)) {
		md := ours[name]
		fields, ok := specs[name]
		if !ok {
			t.Errorf("our message %s is not in the Kata table", name)
			continue
		}
		if md.Fields().Len() != len(fields) {
			t.Errorf("%s: %d fields, Kata has %d", name, md.Fields().Len(), len(fields))
		}
		for _, f := range fields {
			fd := md.Fields().ByName(protoreflect.Name(f.name))
			if fd == nil {
				t.Errorf("%s: no field %s", name, f.name)
				continue
			}
			if d := shapeDiff(fd, f); d != "" {
				t.Errorf("%s.%s: %s", name, f.name, d)
			}
		}
	}
}

// TestEnumsMatchKata checks every enum's value names and numbers.
func TestEnumsMatchKata(t *testing.T) {
	seen := map[string]bool{}
	check := func(ed protoreflect.EnumDescriptor) {
		name := string(ed.FullName())
		seen[name] = true
		want, ok := kataEnums[name]
		if !ok {
			t.Errorf("our enum %s is not in the Kata table", name)
			return
		}
		if ed.Values().Len() != len(want) {
			t.Errorf("%s: %d values, Kata has %d", name, ed.Values().Len(), len(want))
		}
		for v, num := range want {
			ev := ed.Values().ByName(protoreflect.Name(v))
			if ev == nil || int32(ev.Number()) != num {
				t.Errorf("%s.%s: want number %d, got %v", name, v, num, ev)
			}
		}
	}
	for _, fd := range ourFiles {
		for i := range fd.Enums().Len() {
			check(fd.Enums().Get(i))
		}
	}
	for _, md := range ourMessages() {
		for i := range md.Enums().Len() {
			check(md.Enums().Get(i))
		}
	}
	for name := range kataEnums {
		if !seen[name] {
			t.Errorf("Kata enum %s is not generated", name)
		}
	}
}

// TestDecodeKataEncoding encodes every message from the table with protowire,
// as a Kata peer would send it, decodes it with our generated type and checks
// every field.
func TestDecodeKataEncoding(t *testing.T) {
	specs := kataSpecs(t)
	for _, msg := range slices.Sorted(maps.Keys(specs)) {
		t.Run(msg, func(t *testing.T) {
			want := expected(specs, msg)
			wire := encode(specs, msg, want)
			mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(msg))
			if err != nil {
				t.Fatalf("no generated type: %v", err)
			}
			m := mt.New()
			if err := proto.Unmarshal(wire, m.Interface()); err != nil {
				t.Fatalf("unmarshal Kata encoding: %v", err)
			}
			got, err := fromProto(specs, m, msg)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(msg, got, want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestEncodeKataLayout marshals every message with our generated type and
// reads the bytes back with protowire and the table alone.
func TestEncodeKataLayout(t *testing.T) {
	specs := kataSpecs(t)
	for _, msg := range slices.Sorted(maps.Keys(specs)) {
		t.Run(msg, func(t *testing.T) {
			want := expected(specs, msg)
			m := toProto(t, specs, msg, want)
			wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got, err := parse(specs, specs[msg], msg, wire)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(msg, got, want); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestExpectedValuesDiscriminate guards the test itself: every table field
// gets a non-default value, so a field that fails to decode cannot pass as
// "unset equals zero".
func TestExpectedValuesDiscriminate(t *testing.T) {
	specs := kataSpecs(t)
	for msg, fields := range specs {
		want := expected(specs, msg)
		if len(want) != len(fields) {
			t.Errorf("%s: %d of %d fields have a value", msg, len(want), len(fields))
		}
		if len(fields) > 0 && len(encode(specs, msg, want)) == 0 {
			t.Errorf("%s: empty encoding", msg)
		}
	}
}

// diff describes the first differences between two value trees.
func diff(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %T, want a message or map", path, got)
		}
		var out []string
		for _, k := range slices.Sorted(maps.Keys(w)) {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing (want %v)", path, k, w[k]))
				continue
			}
			if d := diff(path+"."+k, gv, w[k]); d != "" {
				out = append(out, d)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(g)) {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: unexpected value %v", path, k, g[k]))
			}
		}
		return strings.Join(out, "\n")
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %v, want %v", path, got, want)
		}
		var out []string
		for i := range w {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); d != "" {
				out = append(out, d)
			}
		}
		return strings.Join(out, "\n")
	case []byte:
		if g, ok := got.([]byte); !ok || !bytes.Equal(g, w) {
			return fmt.Sprintf("%s: got %T %v, want %v", path, got, got, want)
		}
		return ""
	default:
		if got != want {
			return fmt.Sprintf("%s: got %T %v, want %T %v", path, got, got, want, want)
		}
		return ""
	}
}
