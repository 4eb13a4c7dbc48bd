# Pod network: node side (podnet), VM side (agent/podnet), end-to-end tests and figures.
PODNET_PKGS := ./podnet/... ./agent/podnet/... ./test/podnet/...

.PHONY: podnet-test podnet-lint bench-podnet e2e-podnet

## podnet-test: pod network unit and end-to-end tests (root: namespaces, TAP, tc, VXLAN)
podnet-test:
	$(GO) test -count=1 -timeout 20m -v $(PODNET_PKGS)

## podnet-lint: gofmt, vet and staticcheck of the pod network packages
podnet-lint:
	@out=$$(gofmt -l podnet agent/podnet test/podnet); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PODNET_PKGS)
	$(GO) tool staticcheck $(PODNET_PKGS)

## bench-podnet: iperf3 and ping through veth, tunnel and vxlan (docs/benchmarks.md, ## pod network)
bench-podnet:
	$(GO) test -count=1 -run '^$$' -bench PodNetwork -benchtime 1x -timeout 20m -v ./test/podnet/

## e2e-podnet: the pod network on a real libvirt pod VM, tunnel and vxlan modes (part of make e2e)
e2e-podnet: podvm-image
	PEERPOD_E2E=1 $(GO) test -count=1 -timeout 20m -run '^TestPodNetwork$$' -v ./test/e2e/
