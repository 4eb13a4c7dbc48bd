# peerpod build. Every target works on a fresh machine once scripts/install-deps.sh has run.
GO      ?= go
BIN     ?= $(CURDIR)/bin
PKGS    ?= ./...
export GOFLAGS ?= -buildvcs=false

.PHONY: all deps build test lint generate check-generated bench

# Each area adds its own targets in mk/<area>.mk.
-include mk/*.mk

all: build

## deps: install the Debian packages the build, tests and demo need (idempotent)
deps:
	bash scripts/install-deps.sh

## build: compile every command into bin/
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## test: unit and integration tests (as root: runc, namespaces, a local registry,
## a kube-apiserver built once into _output/k8s)
test: deps build k8s-test-bin
	$(GO) test -count=1 -timeout 30m $(PKGS)

## lint: gofmt, go vet, staticcheck (pinned in go.mod)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## generate: regenerate the Go code of api/ from its .proto files
generate:
	$(MAKE) -C api generate

## check-generated: fail if api/ generated code is stale
check-generated: generate
	@git diff --exit-code -- api || { echo "generated code in api/ is stale: run make generate"; exit 1; }

## bench: every benchmark; figures go to docs/benchmarks.md
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 60m $(PKGS)
	$(MAKE) bench-libvirt
