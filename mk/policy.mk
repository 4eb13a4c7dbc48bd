# Policy and attestation: tunnel/attest, api/initdata, agent/policy, policygen,
# and the peerpodctl policy/initdata commands. No root, TEE or network needed
# (the policygen tests serve an OCI registry on loopback).
POLICY_PKGS := ./tunnel/attest/... ./api/initdata/... ./agent/policy/... ./policygen/...

.PHONY: policy-test policy-lint bench-policy

## policy-test: policy engine, generator, initdata and attestation tests
policy-test:
	$(GO) test -count=1 -timeout 10m $(POLICY_PKGS)
	$(GO) test -count=1 -run 'InitdataDigestCmd|PolicyGenerateCmd' ./cmd/peerpodctl/

## policy-lint: gofmt, vet and staticcheck of the policy and attestation packages
policy-lint:
	@out=$$(gofmt -l tunnel/attest api/initdata agent/policy policygen cmd/peerpodctl/policy.go cmd/peerpodctl/initdata.go); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(POLICY_PKGS)
	$(GO) tool staticcheck $(POLICY_PKGS)

## bench-policy: decision time vs plain OPA, constant rules, evidence verification (docs/benchmarks.md, ## policy and attestation)
bench-policy:
	$(GO) test -count=5 -run '^$$' -bench 'CreateContainerDecision|ConstantRule' -benchtime 1000x ./agent/policy/
	$(GO) test -count=3 -run '^$$' -bench CreateContainerEngine -benchtime 2000x ./agent/policy/
	$(GO) test -count=1 -run '^$$' -bench FirstDecision -benchtime 10x ./agent/policy/
	$(GO) test -count=5 -run '^$$' -bench RulesBeforeAfter -benchtime 500x ./agent/policy/
	$(GO) test -count=3 -run '^$$' -bench 'RegexMatch|SortStrings' ./agent/policy/irvm/
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 200x ./tunnel/attest/... 2>&1 | grep -v '^WARN'
