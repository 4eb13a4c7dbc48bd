# podvm-agent (the agent in the pod VM) targets.
AGENT_PKGS := ./agent/... ./cmd/podvm-agent/...

.PHONY: podvm-agent agent-test bench-agent

## podvm-agent: the static podvm-agent binary and the small static pause binary in bin/
podvm-agent:
	CGO_ENABLED=0 $(GO) build -ldflags="-s -w" -o $(BIN)/podvm-agent ./cmd/podvm-agent
	CGO_ENABLED=0 $(GO) build -ldflags="-s -w" -o $(BIN)/pause ./cmd/podvm-agent/pause

## agent-test: agent unit and integration tests (root: runc, overlay mounts, cgroups, a loopback registry)
agent-test:
	$(GO) test -count=1 -timeout 20m $(AGENT_PKGS)

## bench-agent: agent figures for docs/benchmarks.md (## agent)
bench-agent:
	$(GO) test -count=3 -run '^$$' -bench 'CreateStartVsRunc|ExecWaitTrue' -benchtime 20x -timeout 30m ./agent/service/
	$(GO) test -count=1 -run '^$$' -bench AgentRSS -benchtime 1x -timeout 10m ./agent/service/
