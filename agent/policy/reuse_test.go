package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

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
