# peerpodd test harness: the Kata-runtime client, failure tests, benchmarks, peerpodctl.
HARNESS_PKGS := ./test/kataclient/... ./test/daemonproc/... ./test/farm/... ./test/failure/... ./test/bench/... ./cmd/peerpodctl/...

.PHONY: harness-test harness-failure harness-lint bench-peerpodd

## harness-test: kataclient, peerpodctl and the failure tests (root for the process provider)
harness-test:
	$(GO) test -count=1 -timeout 20m $(HARNESS_PKGS)

## harness-failure: the failure tests only; SHORT=1 runs 2 kill rounds instead of 10
harness-failure:
	$(GO) test -count=1 -timeout 20m $(if $(SHORT),-short) -v ./test/failure/

## harness-lint: gofmt, vet and staticcheck of the harness packages
harness-lint:
	@out=$$(gofmt -l test/kataclient test/daemonproc test/farm test/failure test/bench cmd/peerpodctl); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(HARNESS_PKGS)
	$(GO) tool staticcheck $(HARNESS_PKGS)

## bench-peerpodd: peerpodd figures (docs/benchmarks.md, ## peerpodd)
bench-peerpodd:
	$(GO) test -count=1 -run '^$$' -bench AgentRPC -benchtime 2000x ./test/bench/
	$(GO) test -count=1 -run '^$$' -bench Create200 -benchtime 1x ./test/bench/
