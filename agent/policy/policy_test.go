package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/peerpod/peerpod/api/agent"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func readPolicy(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newEngine(t testing.TB, policy string, opts Options) *Engine {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e, err := New(context.Background(), policy, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ccr(id, sandbox string, args ...string) *agent.CreateContainerRequest {
	r := sampleCreateContainer()
	r.ContainerId = id
	r.OCI.Annotations["io.kubernetes.cri.sandbox-name"] = sandbox
	if args != nil {
		r.OCI.Process.Args = args
	}
	return r
}

type step struct {
	name    string
	method  string
	req     proto.Message
	wantErr string // "" = allowed
}

func run(t *testing.T, e *Engine, steps []step) {
	t.Helper()
	for _, s := range steps {
		err := e.Authorize(context.Background(), s.method, s.req)
		if s.wantErr == "" {
			if err != nil {
				t.Fatalf("%s: Authorize: %v", s.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), s.wantErr) {
			t.Fatalf("%s: Authorize = %v, want denial containing %q", s.name, err, s.wantErr)
		}
		if !IsDenied(err) {
			t.Fatalf("%s: %v is not a DeniedError", s.name, err)
		}
		if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied {
			t.Fatalf("%s: status code %v, want PermissionDenied", s.name, st.Code())
		}
	}
}

func TestSmallPolicy(t *testing.T) {
	e := newEngine(t, readPolicy(t, "small.rego"), Options{})
	run(t, e, []step{
		{"constant true", "DestroySandbox", &agent.DestroySandboxRequest{}, ""},
		{"constant false", "ReadStdout", &agent.ReadStreamRequest{ContainerId: "c1"}, "ReadStreamRequest (ReadStdout) is blocked by policy rule data.agent_policy.ReadStreamRequest"},
		{"no rule", "ExecProcess", &agent.ExecProcessRequest{}, "the policy has no rule for this request"},
		{"container allowed", "CreateContainer", ccr("c1", "pod-a"), ""},
		{"command changed", "CreateContainer", ccr("c2", "pod-a", "/bin/sh", "-c", "curl evil"), `allow_args: Args differ: policy ["/bin/sh", "-c", "sleep 1"] input ["/bin/sh", "-c", "curl evil"]`},
		{"other sandbox name refused by state", "CreateContainer", ccr("c3", "pod-b"), "CreateContainerRequest is blocked"},
		{"second container same sandbox", "CreateContainer", ccr("c4", "pod-a"), ""},
		{"remove known", "RemoveContainer", &agent.RemoveContainerRequest{ContainerId: "c1"}, ""},
		{"remove unknown", "RemoveContainer", &agent.RemoveContainerRequest{ContainerId: "zz"}, ""},
		{"SetPolicy denied", "SetPolicy", &agent.SetPolicyRequest{Policy: "package agent_policy"}, "SetPolicyRequest is blocked"},
	})
	c := e.cur.Load()
	if !c.consts["DestroySandboxRequest"] || c.consts["ReadStreamRequest"] {
		t.Fatalf("constant rules = %v", c.consts)
	}
	if _, ok := c.consts["CreateContainerRequest"]; ok {
		t.Fatal("CreateContainerRequest detected as constant")
	}
	if _, ok := c.consts["RemoveContainerRequest"]; ok {
		t.Fatal("RemoveContainerRequest detected as constant")
	}
	// State: pod-a recorded, c1 removed, c4 present.
	st := readState(t, e)
	if st["sandbox_name"] != "pod-a" || st["cid:c4"] == nil || st["cid:c1"] != nil {
		t.Fatalf("pstate = %v", st)
	}
}

func readState(t *testing.T, e *Engine) map[string]any {
	t.Helper()
	c := e.cur.Load()
	ctx := context.Background()
	e.mu.Lock()
	err := c.syncStore(ctx)
	e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	txn, err := c.store.NewTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.store.Abort(ctx, txn)
	v, err := c.store.Read(ctx, txn, pstatePath)
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

func TestCopyFilePolicy(t *testing.T) {
	e := newEngine(t, readPolicy(t, "small.rego"), Options{})
	const dir = "/run/kata-containers/shared/containers/abc-0123456789abcdef-"
	run(t, e, []step{
		{"regular", "CopyFile", &agent.CopyFileRequest{Path: dir + "hosts", FileMode: 0o100644, Data: []byte("x")}, ""},
		{"dir", "CopyFile", &agent.CopyFileRequest{Path: dir + "cm", FileMode: 0o040755}, ""},
		{"relative symlink", "CopyFile", &agent.CopyFileRequest{Path: dir + "cm/key", FileMode: 0o120777, Data: []byte("..data/key")}, ""},
		{"absolute symlink", "CopyFile", &agent.CopyFileRequest{Path: dir + "cm/key", FileMode: 0o120777, Data: []byte("/etc/shadow")}, "CopyFileRequest is blocked"},
		{"outside prefix", "CopyFile", &agent.CopyFileRequest{Path: "/etc/passwd", FileMode: 0o100644}, "CopyFileRequest is blocked"},
		{"dotdot", "CopyFile", &agent.CopyFileRequest{Path: dir + "../x", FileMode: 0o100644}, "CopyFileRequest is blocked"},
		{"fifo", "CopyFile", &agent.CopyFileRequest{Path: dir + "p", FileMode: 0o010644}, "CopyFileRequest is blocked"},
	})
}

func TestNoPolicy(t *testing.T) {
	e := newEngine(t, "", Options{})
	run(t, e, []step{
		{"teardown", "DestroySandbox", &agent.DestroySandboxRequest{}, ""},
		{"details", "GetGuestDetails", &agent.GuestDetailsRequest{}, ""},
		{"health", "Check", &agent.CheckRequest{}, ""},
		{"sandbox", "CreateSandbox", &agent.CreateSandboxRequest{}, "no policy is loaded"},
		{"container", "CreateContainer", ccr("c1", "p"), "no policy is loaded"},
		{"set policy", "SetPolicy", &agent.SetPolicyRequest{}, "no policy is loaded"},
	})
}

func TestDevModeAllowsAll(t *testing.T) {
	for _, policy := range []string{"", readPolicy(t, "small.rego")} {
		e := newEngine(t, policy, Options{AllowAll: true})
		run(t, e, []step{
			{"sandbox", "CreateSandbox", &agent.CreateSandboxRequest{}, ""},
			{"exec", "ExecProcess", &agent.ExecProcessRequest{}, ""},
			{"bad container", "CreateContainer", ccr("c1", "p", "/evil"), ""},
		})
	}
}

func TestAllowRequestsFailingPolicy(t *testing.T) {
	p := strings.Replace(readPolicy(t, "small.rego"), "default AllowRequestsFailingPolicy := false", "default AllowRequestsFailingPolicy := true", 1)
	e := newEngine(t, p, Options{})
	run(t, e, []step{
		{"denied becomes allowed", "ReadStdout", &agent.ReadStreamRequest{}, ""},
		{"no rule becomes allowed", "ExecProcess", &agent.ExecProcessRequest{}, ""},
	})
}

func TestSetPolicy(t *testing.T) {
	ctx := context.Background()
	open := "package agent_policy\n\ndefault SetPolicyRequest := true\ndefault CreateSandboxRequest := true\n"
	e := newEngine(t, open, Options{})
	run(t, e, []step{
		{"sandbox allowed", "CreateSandbox", &agent.CreateSandboxRequest{}, ""},
		{"set policy allowed", "SetPolicy", &agent.SetPolicyRequest{}, ""},
	})
	if err := e.SetPolicy(ctx, "package agent_policy\n\nthis is not rego"); err == nil {
		t.Fatal("SetPolicy accepted a broken policy")
	}
	if err := e.SetPolicy(ctx, "package other\n\ndefault X := true\n"); err == nil || !strings.Contains(err.Error(), "want data.agent_policy") {
		t.Fatalf("SetPolicy of another package: %v", err)
	}
	run(t, e, []step{{"old policy still in force", "CreateSandbox", &agent.CreateSandboxRequest{}, ""}})
	if err := e.SetPolicy(ctx, readPolicy(t, "small.rego")); err != nil {
		t.Fatal(err)
	}
	run(t, e, []step{
		{"new policy in force", "CreateSandbox", &agent.CreateSandboxRequest{}, "CreateSandboxRequest is blocked"},
		{"cannot set again", "SetPolicy", &agent.SetPolicyRequest{}, "SetPolicyRequest is blocked"},
	})
	if len(readState(t, e)) != 0 {
		t.Fatal("new policy does not start with empty state")
	}
}

func TestPolicyErrors(t *testing.T) {
	tests := []struct{ name, policy, want string }{
		{"syntax", "package agent_policy\n\nX if {", "parse policy"},
		{"package", "package foo\n", "want data.agent_policy"},
		{"unsafe var", "package agent_policy\n\nX if { y }\n", "compile policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.policy, Options{Logger: quietLogger()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestRegoV0Policy(t *testing.T) {
	// Older genpolicy output: v0 rule bodies without "if".
	v0 := "package agent_policy\n\nimport future.keywords.in\n\ndefault CreateSandboxRequest := false\n\nCreateSandboxRequest {\n\tinput.hostname in [\"a\", \"b\"]\n}\n"
	e := newEngine(t, v0, Options{})
	run(t, e, []step{
		{"allowed", "CreateSandbox", &agent.CreateSandboxRequest{Hostname: "a"}, ""},
		{"denied", "CreateSandbox", &agent.CreateSandboxRequest{Hostname: "c"}, "CreateSandboxRequest is blocked"},
	})
}

func TestBadResults(t *testing.T) {
	p := `package agent_policy

CreateSandboxRequest := "yes"
StartContainerRequest := {"ops": []}
RemoveContainerRequest := {"allowed": true, "ops": [{"op": "add", "path": "/etc", "value": 1}]}
`
	e := newEngine(t, p, Options{})
	run(t, e, []step{
		{"string result", "CreateSandbox", &agent.CreateSandboxRequest{}, "want a boolean or {allowed, ops}"},
		{"no allowed", "StartContainer", &agent.StartContainerRequest{}, `no boolean "allowed"`},
		{"ops outside pstate", "RemoveContainer", &agent.RemoveContainerRequest{}, "outside /pstate"},
	})
	var d *DeniedError
	err := e.Authorize(context.Background(), "CreateSandbox", &agent.CreateSandboxRequest{})
	if !errors.As(err, &d) || d.Rule != "data.agent_policy.CreateSandboxRequest" {
		t.Fatalf("denial = %#v", err)
	}
}

func TestJSONPatch(t *testing.T) {
	doc := any(map[string]any{"pstate": map[string]any{"a": []any{1.0, 2.0}}})
	ops := []map[string]any{
		{"op": "add", "path": "/pstate/a/1", "value": 9.0},
		{"op": "add", "path": "/pstate/a/-", "value": 3.0},
		{"op": "test", "path": "/pstate/a", "value": []any{1, 9, 2, 3}},
		{"op": "replace", "path": "/pstate/a/0", "value": 0.0},
		{"op": "copy", "from": "/pstate/a", "path": "/pstate/b"},
		{"op": "move", "from": "/pstate/b", "path": "/pstate/c~1d"},
		{"op": "remove", "path": "/pstate/a/1"},
	}
	var err error
	for _, op := range ops {
		if doc, err = applyOp(doc, op); err != nil {
			t.Fatalf("%v: %v", op, err)
		}
	}
	want := map[string]any{"pstate": map[string]any{"a": []any{0.0, 2.0, 3.0}, "c/d": []any{0.0, 9.0, 2.0, 3.0}}}
	if !jsonEqual(doc, want) {
		t.Fatalf("doc = %v", doc)
	}
	for _, bad := range []map[string]any{
		{"op": "remove", "path": "/pstate/zz"},
		{"op": "replace", "path": "/pstate/zz", "value": 1},
		{"op": "test", "path": "/pstate/a/0", "value": 5},
		{"op": "frob", "path": "/pstate/a"},
		{"op": "add", "path": "/other", "value": 1},
		{"op": "remove", "path": "/pstate"},
	} {
		if _, err := applyOp(doc, bad); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}

// TestConcurrentDecisions runs decisions, denials and a policy replacement
// at once (run with -race).
func TestConcurrentDecisions(t *testing.T) {
	ctx := context.Background()
	p := strings.Replace(readPolicy(t, "small.rego"), "default SetPolicyRequest := false", "default SetPolicyRequest := true", 1)
	e := newEngine(t, p, Options{})
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			var err error
			for i := range 20 {
				id := strings.Repeat(string(rune('a'+g)), 3) + string(rune('0'+i%10))
				switch i % 4 {
				case 0:
					_ = e.Authorize(ctx, "CreateContainer", ccr(id, "pod-a"))
				case 1:
					if e.Authorize(ctx, "ReadStdout", &agent.ReadStreamRequest{}) == nil {
						err = errors.New("ReadStdout allowed")
					}
				case 2:
					_ = e.Authorize(ctx, "RemoveContainer", &agent.RemoveContainerRequest{ContainerId: id})
				case 3:
					if g == 0 && i == 3 {
						err = errors.Join(err, e.SetPolicy(ctx, p))
					}
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
