# Local pod VMs: the pod VM image, the end-to-end test and the demo (libvirt + QEMU).
.PHONY: podvm-image podvm-image-tcpinit libvirtd e2e demo bench-libvirt bench-oci-runtime

## podvm-image: kernel + initramfs with podvm-agent as PID 1, in _output/podvm
podvm-image:
	./podvm-image/build.sh

## podvm-image-tcpinit: the same image with a TCP-only init (boot floor for benchmarks)
podvm-image-tcpinit:
	PODVM_INIT_PKG=./podvm-image/cmd/tcpinit PODVM_NAME=tcpinit ./podvm-image/build.sh

## libvirtd: start libvirtd by hand (no systemd needed)
libvirtd:
	./scripts/libvirtd-start.sh

## e2e: a whole pod through peerpodd, libvirt and a real pod VM (root; starts libvirtd itself)
e2e: podvm-image
	PEERPOD_E2E=1 $(GO) test -count=1 -timeout 40m -v ./test/e2e/

## demo: install what is missing, build, run one pod VM end to end, tear it down
demo:
	./scripts/demo.sh

## bench-libvirt: pod VM start figures (docs/benchmarks.md, ## libvirt)
bench-libvirt: podvm-image podvm-image-tcpinit
	PEERPOD_E2E=1 $(GO) test -count=1 -timeout 40m -run '^$$' -bench StartVM -benchtime 10x ./test/e2e/
	PEERPOD_E2E=1 $(GO) test -count=1 -timeout 20m -run '^$$' -bench 'FivePods' -benchtime 1x ./test/e2e/

## bench-oci-runtime: pod start steps with runc and with crun in the pod VM, alternating (docs/benchmarks.md, ## libvirt)
bench-oci-runtime:
	./scripts/bench-oci-runtime.sh
