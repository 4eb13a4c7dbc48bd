# Azure provider, tested against the Azure SDK's own fake servers (no Azure account or network needed).
AZURE_PKGS := ./provider/azure/...

.PHONY: azure-test azure-lint bench-azure

## azure-test: the Azure provider against armcompute/armnetwork fakes, with the conformance suite
azure-test:
	$(GO) test -count=1 -timeout 10m $(AZURE_PKGS)

## azure-lint: gofmt, vet and staticcheck of the Azure provider
azure-lint:
	@out=$$(gofmt -l provider/azure); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(AZURE_PKGS)
	$(GO) tool staticcheck $(AZURE_PKGS)

## bench-azure: create/delete cost against the same SDK calls and a bare GET, and 100 parallel creates with 2 s Azure latency (docs/benchmarks.md, ## azure)
bench-azure:
	$(GO) test -count=1 -timeout 10m -run '^$$' -bench 'GetBaseline|Create$$|Delete|SameSDKCalls' -benchmem -benchtime 2s $(AZURE_PKGS)
	$(GO) test -count=1 -timeout 10m -run '^$$' -bench 'Create100Parallel' -benchmem -benchtime 2x $(AZURE_PKGS)
