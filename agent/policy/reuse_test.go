package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/proto"

	"github.com/peerpod/peerpod/agent/policy/irvm"
	"github.com/peerpod/peerpod/api/agent"
)

// Decisions reuse encoders, evaluation states and constant values: each
// one must see only its own request and the policy state the ones before
// it left. Requests alternate between allowed and denied (the same
// request with one field changed), each with its own container ID.
func TestDecisionsShareNothing(t *testing.T) {
	ctx := context.Background()
	text, base := benchPolicy(t)
	e := newEngine(t, text, Options{})
	mutations := []struct {
		name   string
		mutate func(*agent.CreateContainerRequest)
	}{
		{"as generated", func(*agent.CreateContainerRequest) {}},
		{"args", func(r *agent.CreateContainerRequest) { r.OCI.Process.Args[1] = "--debug" }},
		{"env", func(r *agent.CreateContainerRequest) { r.OCI.Process.Env[3] = "SETTING_02=other" }},
		{"mount source", func(r *agent.CreateContainerRequest) { r.OCI.Mounts[6].Source = "/etc" }},
		{"capability", func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Capabilities.Effective = append(r.OCI.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
		}},
		{"sandbox name", func(r *agent.CreateContainerRequest) { r.OCI.Annotations["io.kubernetes.cri.sandbox-name"] = "other" }},
		{"container name", func(r *agent.CreateContainerRequest) { r.OCI.Annotations["io.kubernetes.cri.container-name"] = "c9" }},
	}
	for round := range 3 {
		for i, m := range mutations {
			req := proto.Clone(base).(*agent.CreateContainerRequest)
			req.ContainerId = fmt.Sprintf("r%d-m%d", round, i)
			m.mutate(req)
			err := e.Authorize(ctx, "CreateContainer", req)
			var denied *DeniedError
			switch {
			case i == 0 && err != nil:
				t.Fatalf("round %d, %s: %v, want allowed", round, m.name, err)
			case i > 0 && !errors.As(err, &denied):
				t.Fatalf("round %d, %s: %v, want denied", round, m.name, err)
			}
			st := readState(t, e)
			if recorded := st["c_"+req.ContainerId] != nil; recorded != (i == 0) {
				t.Fatalf("round %d, %s: container recorded in the state = %v (state %v)", round, m.name, recorded, st)
			}
		}
	}
}

// statePolicy records containers in the policy state with planned rules;
// its denial prints the state, and RemoveContainerRequest (time.now_ns
// makes it unplannable) reads the state through topdown.
const statePolicy = `package agent_policy

import rego.v1

default CreateContainerRequest := {"allowed": false}

CreateContainerRequest := {"allowed": true, "ops": [{"op": "add", "path": concat("", ["/pstate/c_", input.container_id]), "value": 1}]} if {
	input.container_id != "bad"
	not data.pstate[concat("", ["c_", input.container_id])]
} else := {"allowed": false} if {
	print("known:", concat(",", sort(object.keys(data.pstate))))
}

default RemoveContainerRequest := false

RemoveContainerRequest if {
	time.now_ns() > 0
	data.pstate[concat("", ["c_", input.container_id])]
}
`

// The store that topdown reads (denial prints, rules without a plan)
// follows the policy state that planned rules change.
func TestStoreFollowsState(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, statePolicy, Options{})
	create := func(id string) error {
		return e.Authorize(ctx, "CreateContainer", &agent.CreateContainerRequest{ContainerId: id})
	}
	remove := func(id string) error {
		return e.Authorize(ctx, "RemoveContainer", &agent.RemoveContainerRequest{ContainerId: id})
	}
	for _, id := range []string{"a", "b"} {
		if err := create(id); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	if err := remove("b"); err != nil {
		t.Fatalf("remove b (recorded by a planned rule, read by topdown): %v", err)
	}
	var denied *DeniedError
	if err := create("bad"); !errors.As(err, &denied) || denied.Prints != "known: c_a,c_b" {
		t.Fatalf("create bad = %v, want a denial printing the two recorded containers", err)
	}
	if err := remove("z"); !IsDenied(err) {
		t.Fatalf("remove z = %v, want denied", err)
	}
	if err := create("c"); err != nil {
		t.Fatal(err)
	}
	if err := create("c"); !errors.As(err, &denied) || denied.Prints != "known: c_a,c_b,c_c" {
		t.Fatalf("create c again = %v, want a denial printing three containers", err)
	}
	if c := e.cur.Load(); c.programs["RemoveContainerRequest"] != nil || c.programs["CreateContainerRequest"] == nil {
		t.Fatal("CreateContainerRequest should be planned and RemoveContainerRequest not")
	}
}

// The data document planned rules read is the policy state after every
// batch of ops, though it reuses the members that no op touched.
func TestStateValueFollowsOps(t *testing.T) {
	c, err := compile(context.Background(), statePolicy)
	if err != nil {
		t.Fatal(err)
	}
	batches := [][]any{
		{map[string]any{"op": "add", "path": "/pstate/a", "value": []any{1.0, 2.0}},
			map[string]any{"op": "add", "path": "/pstate/n", "value": "web"}},
		{map[string]any{"op": "add", "path": "/pstate/a/1", "value": 9.0}},
		{map[string]any{"op": "replace", "path": "/pstate/n", "value": "db"}},
		{map[string]any{"op": "copy", "from": "/pstate/a", "path": "/pstate/b~1c"}},
		{map[string]any{"op": "move", "from": "/pstate/a", "path": "/pstate/d"}},
		{map[string]any{"op": "remove", "path": "/pstate/n"},
			map[string]any{"op": "add", "path": "/pstate/d/-", "value": map[string]any{"x": true}}},
		{map[string]any{"op": "add", "path": "/pstate", "value": map[string]any{"fresh": 1.0}}},
		{map[string]any{"op": "add", "path": "/pstate/g", "value": 2.0}},
	}
	for i, ops := range batches {
		if err := c.applyOps(ops); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		want, err := ast.InterfaceToValue(map[string]any{"pstate": c.pstate})
		if err != nil {
			t.Fatal(err)
		}
		if ast.Compare(irvm.Whole(c.data), want) != 0 {
			t.Fatalf("batch %d: data %v, want %v", i, c.data, want)
		}
	}
	if want := ast.MustParseTerm(`{"pstate": {"fresh": 1, "g": 2}}`).Value; ast.Compare(irvm.Whole(c.data), want) != 0 {
		t.Fatalf("final data %v, want %v", c.data, want)
	}
	// A failing batch changes nothing.
	before := c.data
	if err := c.applyOps([]any{map[string]any{"op": "add", "path": "/pstate/h", "value": 1.0},
		map[string]any{"op": "remove", "path": "/pstate/missing"}}); err == nil {
		t.Fatal("a batch with a failing op was applied")
	}
	if c.data != before || c.pstate.(map[string]any)["h"] != nil {
		t.Fatal("a failing batch changed the state")
	}
	// Entries no op touches are shared between states; a failing batch
	// that changed one inside (a member of an object) leaves it as it was.
	if err := c.applyOps([]any{map[string]any{"op": "add", "path": "/pstate/m", "value": map[string]any{"x": 1.0}}}); err != nil {
		t.Fatal(err)
	}
	before, kept := c.data, c.pstate
	if err := c.applyOps([]any{map[string]any{"op": "add", "path": "/pstate/m/y", "value": 2.0},
		map[string]any{"op": "remove", "path": "/pstate/missing"}}); err == nil {
		t.Fatal("a batch with a failing op was applied")
	}
	if err := c.applyOps([]any{map[string]any{"op": "add", "path": "/pstate/m/z", "value": 3.0}}); err != nil {
		t.Fatal(err)
	}
	if m := kept.(map[string]any)["m"].(map[string]any); len(m) != 1 {
		t.Fatalf("an earlier state's entry changed to %v", m)
	}
	if want := ast.MustParseTerm(`{"pstate": {"fresh": 1, "g": 2, "m": {"x": 1}}}`).Value; ast.Compare(irvm.Whole(before), want) != 0 {
		t.Fatalf("earlier data %v, want %v", irvm.Whole(before), want)
	}
	if want := ast.MustParseTerm(`{"pstate": {"fresh": 1, "g": 2, "m": {"x": 1, "z": 3}}}`).Value; ast.Compare(irvm.Whole(c.data), want) != 0 {
		t.Fatalf("data %v, want %v", irvm.Whole(c.data), want)
	}
	doc, ok := irvm.AsLazy(c.data)
	if !ok {
		t.Fatal("the data document is not lazy")
	}
	if doc.Member(ast.StringTerm("other")) != nil || doc.Member(ast.InternedTerm(1)) != nil {
		t.Fatal("the data document has a member other than pstate")
	}
	if got := irvm.Whole(doc.Member(ast.StringTerm("pstate")).Value); ast.Compare(got, ast.MustParseTerm(`{"fresh": 1, "g": 2, "m": {"x": 1, "z": 3}}`).Value) != 0 {
		t.Fatalf("data.pstate = %v", got)
	}
}
