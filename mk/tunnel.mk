# tunnel/ targets: the yamux/TLS tunnel between a node and a pod VM.
.PHONY: tunnel-test tunnel-fuzz bench-tunnel

## tunnel-test: the tunnel's tests (loopback only, no root needed)
tunnel-test:
	$(GO) test -count=1 ./tunnel/

## tunnel-fuzz: fuzz the stream header parser for FUZZTIME (default 30s)
FUZZTIME ?= 30s
tunnel-fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadHeader -fuzztime $(FUZZTIME) ./tunnel/

## bench-tunnel: the figures of docs/benchmarks.md (## tunnel); read the tunnel/base column
TUNNEL_BENCHTIME ?= 1000x
TUNNEL_BENCHCOUNT ?= 5
bench-tunnel:
	$(GO) test -count=$(TUNNEL_BENCHCOUNT) -run '^$$' -bench . -benchtime $(TUNNEL_BENCHTIME) ./tunnel/
