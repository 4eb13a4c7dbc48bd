package policy

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"google.golang.org/protobuf/proto"

	"github.com/peerpod/peerpod/agent/policy/irvm"
	"github.com/peerpod/peerpod/api/agent"
)

// topdownEval evaluates rule name with topdown, bypassing the planned program.
func topdownEval(t *testing.T, c *compiled, name string, input ast.Value) any {
	t.Helper()
	pq, err := c.query(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(irvm.Whole(input)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		return nil
	}
	return rs[0].Expressions[0].Value
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var na, nb any
	_ = json.Unmarshal(ja, &na)
	_ = json.Unmarshal(jb, &nb)
	return reflect.DeepEqual(na, nb)
}

// The planned program and topdown agree on a generated policy for the
// request it allows and for requests changed in every checked field.
func TestPlannedMatchesTopdown(t *testing.T) {
	ctx := context.Background()
	text, base := benchPolicy(t)
	c, err := compile(ctx, text)
	if err != nil {
		t.Fatal(err)
	}
	mutations := map[string]func(r *agent.CreateContainerRequest){
		"as generated": func(*agent.CreateContainerRequest) {},
		"args":         func(r *agent.CreateContainerRequest) { r.OCI.Process.Args[1] = "--debug" },
		"env":          func(r *agent.CreateContainerRequest) { r.OCI.Process.Env[3] = "SETTING_02=other" },
		"extra env": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "LD_PRELOAD=/x.so")
		},
		"runtime env value": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "DB_SERVICE_PORT=54x32")
		},
		"runtime env added": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "DB_PORT_5432_TCP_ADDR=10.0.0.7", "TERM=xterm")
		},
		"runtime env not ASCII": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "HOSTNAME=wéb")
		},
		"runtime env newline": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "HOSTNAME=web\nHOSTNAME=x")
		},
		"sandbox name": func(r *agent.CreateContainerRequest) { r.OCI.Annotations["io.kubernetes.cri.sandbox-name"] = "web2" },
		"image":        func(r *agent.CreateContainerRequest) { r.Storages[0].Source = "registry.example/app:latest" },
		"effective capability": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Capabilities.Effective = append(r.OCI.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
		},
		"permitted capability": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Capabilities.Permitted[3] = "CAP_SYS_MODULE"
		},
		"capability": func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Capabilities.Bounding = append(r.OCI.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		},
		"mount":    func(r *agent.CreateContainerRequest) { r.OCI.Mounts[6].Source = "/etc" },
		"writable": func(r *agent.CreateContainerRequest) { r.OCI.Root.Readonly = false },
		"mount not read-only": func(r *agent.CreateContainerRequest) {
			r.OCI.Mounts[11].Options = []string{"rbind", "ro-not", "rprivate"}
		},
		"uid":          func(r *agent.CreateContainerRequest) { r.OCI.Process.User.UID = 0 },
		"unknown name": func(r *agent.CreateContainerRequest) { r.OCI.Annotations["io.kubernetes.cri.container-name"] = "x" },
		"sandbox type": func(r *agent.CreateContainerRequest) {
			r.OCI.Annotations["io.kubernetes.cri.container-type"] = "sandbox"
		},
		"hooks": func(r *agent.CreateContainerRequest) { r.OCI.Hooks = &agent.Hooks{} },
	}
	// The runtime's own variables are allowed whatever the pod declares.
	wantAllowed := map[string]bool{"as generated": true, "runtime env added": true}
	for name, mutate := range mutations {
		req := proto.Clone(base).(*agent.CreateContainerRequest)
		mutate(req)
		in, err := requestInput(req, &encoder{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.eval(ctx, "CreateContainerRequest", in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.programs["CreateContainerRequest"] == nil {
			t.Fatal("CreateContainerRequest fell back to topdown")
		}
		want := topdownEval(t, c, "CreateContainerRequest", in)
		if !sameJSON(got, want) {
			t.Errorf("%s: planned %v, topdown %v", name, got, want)
		}
		m, _ := got.(map[string]any)
		if allowed := m["allowed"] == true; allowed != wantAllowed[name] {
			t.Errorf("%s: allowed %v, want %v", name, allowed, wantAllowed[name])
		}
	}
}

// A rule that irvm cannot run (a non-deterministic built-in) is decided by
// topdown, with the same result.
func TestUnplannableRuleFallsBack(t *testing.T) {
	ctx := context.Background()
	policy := strings.Join([]string{
		"package agent_policy",
		"import rego.v1",
		"default CreateContainerRequest := false",
		"CreateContainerRequest if {",
		"	time.now_ns() > 0",
		`	input.container_id == "c1"`,
		"}",
	}, "\n")
	e := newEngine(t, policy, Options{})
	if err := e.Authorize(ctx, "CreateContainer", &agent.CreateContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatalf("allowed request: %v", err)
	}
	if err := e.Authorize(ctx, "CreateContainer", &agent.CreateContainerRequest{ContainerId: "c2"}); !IsDenied(err) {
		t.Fatalf("denied request: %v", err)
	}
	c := e.cur.Load()
	if prog, planned := c.programs["CreateContainerRequest"]; !planned || prog != nil {
		t.Fatalf("programs = %v, want a recorded fallback to topdown", c.programs)
	}
}

// jsonOf converts as ast.JSON does.
func TestJSONOf(t *testing.T) {
	for _, v := range []string{
		`null`, `true`, `false`, `0`, `-1.5e300`, `18446744073709551616`, `""`, `"a\nb"`,
		`[]`, `[1, "a", null, [true]]`, `{}`,
		`{"allowed": true, "ops": [{"op": "add", "path": "/pstate/c_x", "value": 7}]}`,
		`{"a": {"b": [1, {"c": null}]}}`,
		`{1: "number key"}`, `{"a": {true: 1}}`, `{"s": {"z", "a"}}`, `{"x", 1}`,
	} {
		val := ast.MustParseTerm(v).Value
		want, wantErr := ast.JSON(val)
		got, err := jsonOf(val)
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("jsonOf(%s) = %#v, %v; ast.JSON gives %#v, %v", v, got, err, want, wantErr)
		}
	}
}
