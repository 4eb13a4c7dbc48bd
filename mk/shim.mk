# peerpodd (node daemon) targets.
SHIM_PKGS := ./shim/... ./cmd/peerpodd/... ./test/procprovider/...

.PHONY: shim-test shim-fuzz shim-lint

## shim-test: peerpodd unit and integration tests (the process provider needs root)
shim-test:
	$(GO) test -count=1 -timeout 20m $(SHIM_PKGS)

## shim-fuzz: fuzz CreateVM annotation parsing for FUZZTIME (default 30s)
FUZZTIME ?= 30s
shim-fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./shim/annotations/

## shim-lint: gofmt, vet and staticcheck of the peerpodd packages
shim-lint:
	@out=$$(gofmt -l shim cmd/peerpodd test/procprovider); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(SHIM_PKGS)
	$(GO) tool staticcheck $(SHIM_PKGS)

.PHONY: bench-shim
## bench-shim: agent-socket proxy vs direct (figures in docs/benchmarks.md)
bench-shim:
	$(GO) test -run '^$$' -bench . -benchtime 3000x -count 7 ./shim/proxy/
