package irvm

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Every case is evaluated by topdown and by irvm, on every input; the two
// must agree on the value, on undefined, and on failing.

const module = `package t

import rego.v1

default allow := false

allow if {
	input.user == "alice"
	not input.blocked
}

allow if {
	input.user == "bob"
	count(input.groups) > 1
}

level := "admin" if {
	"admins" in input.groups
} else := "user" if {
	input.user != ""
} else := "anonymous"

names contains n if {
	some g in input.groups
	n := upper(g)
}

by_len[g] := count(g) if {
	some g in input.groups
}

sizes := [count(g) | some g in input.groups]

all_short if {
	every g in input.groups {
		count(g) < 7
	}
}

some_long if {
	some g in input.groups
	count(g) >= 7
}

f(x) := y if {
	x > 10
	y := "big"
} else := "small"

labels := [f(n) | some n in input.numbers]

double(x) := x * 2

sum_doubles := sum([double(n) | some n in input.numbers])

pairs := {k: v | some k, v in input.attrs; startswith(k, "a")}

nested := [[i, j] | some i in [1, 2]; some j in input.numbers; j > i]

with_user := r if {
	r := allow with input.user as "alice" with input.blocked as false
}

with_data := r if {
	r := data.cfg.limit with data.cfg.limit as 99
}

state_name := data.pstate.name

no_state if not data.pstate.missing

regexes if {
	regex.match("^[a-z]+$", input.user)
	strings.any_prefix_match(input.user, ["al", "bo"])
	not contains(input.user, "/")
}

numbers_equal if 1 == 1.0

big := 18446744073709551615 + 1

obj_get := object.get(input.attrs, "missing", "fallback")

filtered := object.filter(input.attrs, ["a1", "zz"])

json_text := json.marshal({"u": input.user, "n": input.numbers})

set_ops := {"union": input_set | {"x"}, "minus": input_set - {"alice"}, "and": input_set & {"alice", "q"}}

input_set := {s | some s in array.concat([input.user], input.groups)}

sorted := sort(input.numbers)

formatted := sprintf("%s has %d groups", [input.user, count(input.groups)])

a.b.c := input.user

conflict := input.user

conflict := "other" if input.user == "carol"

ops := {"allowed": true, "ops": [{"op": "add", "path": concat("", ["/pstate/c_", input.user]), "value": 1}]} if {
	input.user != ""
}

missing_field := input.nope.deeper

types := [is_string(input.user), is_array(input.groups), is_object(input.attrs), is_null(input.nothing)]

differences := [count(input.numbers) - 1, input_set - input_set, input_set - {"dev"}, {"dev", "x"} - input_set]

str_set := {g | some g in input.groups}

const_set := {"admins", "dev", "ops", "zeta"}

string_sets := {
	"minus": str_set - const_set, "rminus": const_set - str_set,
	"and": str_set & const_set, "rand": const_set & str_set,
	"or": str_set | const_set, "self": str_set - str_set,
	"count": count(str_set), "scan": [g | some g in str_set],
	"in": ["dev" in str_set, 1 in str_set, "nope" in const_set, "zeta" in const_set],
	"dot": [x | x := str_set["dev"]],
	"concat": [concat(",", str_set), concat("", [g | some g in str_set]), concat("-", const_set - str_set)],
	"prefix": strings.any_prefix_match("dev-x", str_set),
	"equal": [str_set == {"dev", "admins"}, str_set - {"x"} == str_set],
	"scan_minus": [g | some g in str_set - {"dev"}],
}

user_prefix := [strings.any_prefix_match(input.user, {"al", "bo"}), strings.any_prefix_match(input.user, str_set)]

mixed_set := {x | some x in input.numbers} | {"a"}

mixed_sets := {
	"minus": mixed_set - {"a", 1}, "and": mixed_set & {"a", 5}, "or": {"b"} | mixed_set,
	"count": count(mixed_set), "scan": [x | some x in mixed_set], "in": [1 in mixed_set, "a" in mixed_set],
	"bad_concat": [c | c := concat(",", [input.user, input.numbers[0]])],
	"bad_prefix": [m | m := strings.any_prefix_match(input.user, mixed_set)],
}

string_builtins := {
	"starts": [[x | x := startswith(input.user, "al")], [x | x := startswith("alpha", input.user)], [x | x := startswith(input.user, input.numbers)]],
	"ends": [[x | x := endswith(input.user, "ce")], [x | x := endswith(input.user, "")], [x | x := endswith(input.groups, "s")]],
	"contains": [[x | x := contains(input.user, "o")], [x | x := contains("", input.user)], [x | x := contains(input.numbers, "1")]],
	"null": [[x | x := is_null(input.nothing)], [x | x := is_null(input.user)], [x | x := is_null(input.groups)], [x | x := is_null(input.attrs)], [x | x := is_null(input.attrs.a9)]],
	"regex": [x | x := regex.match(input.pattern, input.user)],
	"regex_const": [[x | x := regex.match("^[a-c]", input.user)], [x | x := regex.match("^(?:(?:[a-z]+)\n)*$", concat("", [input.user, "\n"]))]],
	"regex_loop": [x | some p in ["^a", "^b", "l", "(", "^a"]; x := regex.match(p, input.user)],
	"regex_bad": [[x | x := regex.match("(", input.user)], [x | x := regex.match("a", input.numbers)], [x | x := regex.match(input.numbers, "a")]],
}

objects := {
	"many": {sprintf("k%02d", [i]): i | some i in numbers.range(1, 12)},
	"numbered": {i: g | some i, g in input.groups},
	"few": {g: count(g) | some g in input.groups},
	"get": [x | x := {"a": 1, "b": input.user, "c": 3}.b],
	"over": object.union({"a": 1, "b": 2}, {g: 0 | some g in input.groups}),
}

size_of(x) := count(x)

num_text(n) := [sprintf("%v", [n]), json.marshal(n)]

user_path(x) := concat("/", [x, input.user])

pure_calls := {
	"same": [size_of(input.groups), size_of(input.groups), size_of([g | some g in input.groups]), size_of(input.numbers)],
	"numbers": [num_text(input.f1), num_text(input.f2), num_text(input.f1), num_text(1)],
	"strings": [size_of(input.user), size_of(input.user), size_of("ab")],
	"reads_input": [user_path("a"), other_user, user_path("a")],
}

other_user := u if {
	u := user_path("a") with input.user as "zed"
}

is_empty([]) := true

pair([a, _]) := a

len_patterns := {
	"pair": [p | p := pair([n | some n in input.numbers])], "pair_input": [p | p := pair(input.numbers)],
	"pair_groups": [p | p := pair(input.groups)],
	"empty": [e | e := is_empty([n | some n in input.numbers; n > 4])], "empty_groups": [e | e := is_empty(input.groups)],
	"empty_attrs": [e | e := is_empty(input.attrs)],
}

array_eq := {
	"same": [1 | input.numbers == [1, 5, 20]], "empty": [1 | input.numbers == []], "groups": [1 | input.groups == ["x"]],
	"built": [1 | [n | some n in input.numbers] == [3]], "built_empty": [1 | [n | some n in input.numbers] == []],
	"ne": [1 | input.numbers != [1]], "ne_built": [1 | [n | some n in input.numbers] != []],
	"ne_same": [1 | input.numbers != [3]], "not_array": [1 | input.attrs != [1]],
	"built_input": [1 | [n | some n in input.numbers] == input.numbers], "filtered_input": [1 | [n | some n in input.numbers; n > 1] == input.numbers],
	"ne_filtered": [1 | [n | some n in input.numbers; n > 1] != input.numbers], "ne_groups": [1 | input.groups != [g | some g in input.groups]],
	"ne_attrs": [1 | input.attrs != [x | some x in input.attrs]],
}

membership := [1 in input.attrs, "x" in input.attrs, "dev" in input.groups, 12.5 in input.numbers, {"b": 1} in input.attrs]
`

var queries = []string{
	"allow", "level", "names", "by_len", "sizes", "all_short", "some_long", "labels",
	"sum_doubles", "pairs", "nested", "with_user", "with_data", "state_name", "no_state",
	"regexes", "numbers_equal", "big", "obj_get", "filtered", "json_text", "set_ops", "sorted",
	"formatted", "a.b.c", "a", "conflict", "ops", "missing_field", "types", "membership", "differences",
	"string_sets", "user_prefix", "mixed_sets", "string_builtins", "array_eq", "len_patterns", "pure_calls", "objects",
}

var inputs = []string{
	`{"user": "alice", "groups": ["dev", "admins"], "numbers": [1, 5, 20], "attrs": {"a1": 1, "b2": "x", "a3": [true]}, "nothing": null, "pattern": "^al", "f1": 1, "f2": 1.0}`,
	`{"user": "alice", "blocked": true, "pattern": "^b", "groups": [], "numbers": [], "attrs": {}}`,
	`{"user": "bob", "groups": ["ops", "very-long-group"], "numbers": [11, 12.5], "attrs": {"a": {"b": 1}}, "pattern": "["}`,
	`{"user": "carol", "groups": ["x"], "numbers": [3], "attrs": {"a9": null}, "pattern": "c.r+", "f1": 2.50, "f2": 2.5}`,
	`{"user": "", "groups": "not-a-list", "numbers": [1], "attrs": []}`,
	`{}`,
	`{"user": "dave", "pattern": 7, "groups": ["zz", "dev", "b", "dev", "a", "b"], "numbers": [2, 2, 1, 5], "attrs": {"a1": "x"}}`,
}

func TestAgreesWithTopdown(t *testing.T) {
	ctx := context.Background()
	store := func() storage.Store {
		return inmem.NewFromObject(map[string]any{"pstate": map[string]any{"name": "web"}, "cfg": map[string]any{"limit": 1}})
	}
	data := ast.MustParseTerm(`{"pstate": {"name": "web"}, "cfg": {"limit": 1}}`).Value
	for _, q := range queries {
		prog, err := Compile(ctx, rego.Query("data.t."+q), rego.Module("t.rego", module), rego.Store(store()))
		if err != nil {
			t.Fatalf("compile %s: %v", q, err)
		}
		td, err := rego.New(rego.Query("data.t."+q), rego.Module("t.rego", module), rego.Store(store())).PrepareForEval(ctx)
		if err != nil {
			t.Fatalf("prepare %s: %v", q, err)
		}
		for i, raw := range inputs {
			in := ast.MustParseTerm(raw).Value
			want, wantErr := topdownValue(ctx, td, in)
			got, gotErr := irvmValue(ctx, prog, in, data)
			if (wantErr != nil) != (gotErr != nil) {
				t.Errorf("%s, input %d: topdown error %v, irvm error %v", q, i, wantErr, gotErr)
				continue
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%s, input %d: topdown %s, irvm %s", q, i, show(want), show(got))
			}
		}
	}
}

func topdownValue(ctx context.Context, pq rego.PreparedEvalQuery, in ast.Value) (any, error) {
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return "<undefined>", nil
	}
	return normalize(rs[0].Expressions[0].Value)
}

func irvmValue(ctx context.Context, p *Program, in, data ast.Value) (any, error) {
	rs, err := p.Eval(ctx, in, data)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return "<undefined>", nil
	}
	obj, ok := rs[0].(ast.Object)
	if !ok || obj.Len() != 1 {
		return nil, errors.New("result is not one binding")
	}
	var v ast.Value
	obj.Foreach(func(_, t *ast.Term) { v = t.Value })
	j, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	return normalize(j)
}

// normalize makes numbers and collections compare alike.
func normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRefusesWhatItCannotRun(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, body, want string }{
		{"non-deterministic built-in", "x := time.now_ns()", "time.now_ns"},
		{"dynamic call", "x := data.u[input.name]\n", "dynamic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(ctx, rego.Query("data.t.x"), rego.Module("t.rego", "package t\nimport rego.v1\n"+tc.body),
				rego.Module("u.rego", "package u\nimport rego.v1\nr1 := 1\nr2 := 2\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	prog, err := Compile(ctx, rego.Query("data.t.x"), rego.Module("t.rego", "package t\nimport rego.v1\nx := count([1 | some i in numbers.range(1, input.n); i > 0])"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := prog.Eval(ctx, ast.MustParseTerm(`{"n": 100000}`).Value, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Eval with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestConstantFunctionComputedOnce(t *testing.T) {
	ctx := context.Background()
	prog, err := Compile(ctx, rego.Query("data.t.x"), rego.Module("t.rego", "package t\nimport rego.v1\ntable := {\"a\": 1, \"b\": 2}\nx := table[input.k]"))
	if err != nil {
		t.Fatal(err)
	}
	var pure []string
	for name, f := range prog.funcs {
		if f.pure {
			pure = append(pure, name)
		}
	}
	if len(pure) != 1 || !strings.HasSuffix(pure[0], ".table") {
		t.Fatalf("pure functions = %v, want only table", pure)
	}
	for _, k := range []string{"a", "b", "a"} {
		rs, err := prog.Eval(ctx, ast.MustParseTerm(`{"k": "`+k+`"}`).Value, nil)
		if err != nil || len(rs) != 1 {
			t.Fatalf("Eval k=%s: %v, %v", k, rs, err)
		}
	}
}

// testLazy is a Lazy over an ast value, counting what is made whole.
type testLazy struct {
	v     ast.Value
	whole *int
}

func lazyTerm(v ast.Value, whole *int) *ast.Term {
	switch v.(type) {
	case ast.Object, *ast.Array, ast.Set:
		return LazyTerm(&testLazy{v: v, whole: whole})
	}
	return ast.NewTerm(v)
}

func (l *testLazy) Member(key *ast.Term) *ast.Term {
	var t *ast.Term
	switch c := l.v.(type) {
	case ast.Object:
		t = c.Get(key)
	case *ast.Array:
		if n, ok := key.Value.(ast.Number); ok {
			if i, ok := n.Int(); ok && i >= 0 && i < c.Len() {
				t = c.Elem(i)
			}
		}
	case ast.Set:
		if c.Contains(key) {
			t = key
		}
	}
	if t == nil {
		return nil
	}
	return lazyTerm(t.Value, l.whole)
}

func (l *testLazy) Members(f func(k, v *ast.Term) bool) {
	switch c := l.v.(type) {
	case ast.Object:
		c.Until(func(k, v *ast.Term) bool { return f(k, lazyTerm(v.Value, l.whole)) })
	case *ast.Array:
		for i := 0; i < c.Len(); i++ {
			if f(ast.InternedTerm(i), lazyTerm(c.Elem(i).Value, l.whole)) {
				return
			}
		}
	case ast.Set:
		c.Until(func(k *ast.Term) bool { return f(k, k) })
	}
}

func (l *testLazy) Len() int {
	switch c := l.v.(type) {
	case ast.Object:
		return c.Len()
	case *ast.Array:
		return c.Len()
	case ast.Set:
		return c.Len()
	}
	return 0
}

func (l *testLazy) Type() string { return ast.TypeName(l.v) }

func (l *testLazy) Materialize() ast.Value { *l.whole++; return l.v }

func (l *testLazy) Find(p ast.Ref) (ast.Value, error) { return l.v.Find(p) }
func (l *testLazy) IsGround() bool                    { return l.v.IsGround() }

// A lazy input gives the same results as the whole one, and a policy that
// only looks into it never makes it whole.
func TestLazyInput(t *testing.T) {
	ctx := context.Background()
	data := ast.MustParseTerm(`{"pstate": {"name": "web"}, "cfg": {"limit": 1}}`).Value
	for _, q := range queries {
		prog, err := Compile(ctx, rego.Query("data.t."+q), rego.Module("t.rego", module),
			rego.Store(inmem.NewFromObject(map[string]any{"pstate": map[string]any{"name": "web"}, "cfg": map[string]any{"limit": 1}})))
		if err != nil {
			t.Fatalf("compile %s: %v", q, err)
		}
		for i, raw := range inputs {
			in := ast.MustParseTerm(raw).Value
			want, wantErr := irvmValue(ctx, prog, in, data)
			whole := 0
			got, gotErr := irvmValue(ctx, prog, lazyTerm(in, &whole).Value, data)
			if (wantErr != nil) != (gotErr != nil) || !reflect.DeepEqual(want, got) {
				t.Errorf("%s, input %d: whole %s (%v), lazy %s (%v)", q, i, show(want), wantErr, show(got), gotErr)
			}
		}
	}
	prog, err := Compile(ctx, rego.Query("data.t.allow"), rego.Module("t.rego", module)) // reads count(input.groups)
	if err != nil {
		t.Fatal(err)
	}
	whole := 0
	if _, err := prog.Eval(ctx, lazyTerm(ast.MustParseTerm(inputs[0]).Value, &whole).Value, nil); err != nil || whole != 0 {
		t.Fatalf("allow on a lazy input: %v, %d values made whole, want none", err, whole)
	}
}
