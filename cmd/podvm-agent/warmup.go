package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/peerpod/peerpod/agent/policy"
	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/tunnel/provision"
)

// warmUpPolicy is a small policy in the style of Kata's rules: compiling
// it and deciding one request runs the policy compiler and evaluator once.
const warmUpPolicy = `package agent_policy

import rego.v1

default CreateContainerRequest := {"allowed": false}

CreateContainerRequest := {"allowed": true, "ops": []} if {
	some c in containers
	input.OCI.Process.Args == c.args
	every e in input.OCI.Process.Env {
		e in c.env
	}
	every m in input.OCI.Mounts {
		some d in c.mounts
		m.destination == d
	}
}

containers := [{"args": ["/bin/sh", "-c", "true"], "env": ["PATH=/bin", "HOME=/"], "mounts": ["/proc", "/dev"]}]
`

// warmUp runs, once, the code a warm VM will need when its sandbox comes
// (the TLS handshakes, the policy compiler and evaluator), while no pod
// waits for it: under emulation (QEMU TCG) the first run of any code also
// pays for its translation. Failures only cost that time later.
func warmUp(ctx context.Context, log *slog.Logger) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := provision.WarmUp(ctx); err != nil {
		log.Warn("warm-up: TLS", "err", err)
	}
	quiet := slog.New(slog.DiscardHandler)
	e, err := policy.New(ctx, warmUpPolicy, policy.Options{Logger: quiet})
	if err != nil {
		log.Warn("warm-up: policy", "err", err)
	} else {
		req := &agent.CreateContainerRequest{ContainerId: "warm-up", OCI: &agent.Spec{
			Process: &agent.Process{Args: []string{"/bin/sh", "-c", "true"}, Env: []string{"PATH=/bin"}},
			Mounts:  []*agent.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		}}
		_ = e.Authorize(ctx, "CreateContainerRequest", req)
	}
	log.Info("warm-up done", "took", time.Since(start).Round(time.Millisecond))
}
