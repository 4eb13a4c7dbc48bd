package libvirt

import (
	"bufio"
	"os"
	"strings"
)

// DetectVirtType returns "kvm" when the host CPU has hardware virtualization
// (vmx or svm in /proc/cpuinfo) and /dev/kvm exists, else "qemu" (TCG). A
// /dev/kvm without those flags is a paravirtual nested KVM that does not
// boot stock kernels, so it is not used.
func DetectVirtType() string {
	return detectVirt("/proc/cpuinfo", "/dev/kvm")
}

func detectVirt(cpuinfo, kvm string) string {
	if _, err := os.Stat(kvm); err != nil {
		return VirtTCG
	}
	f, err := os.Open(cpuinfo)
	if err != nil {
		return VirtTCG
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(v) {
			if fl == "vmx" || fl == "svm" {
				return VirtKVM
			}
		}
		return VirtTCG
	}
	return VirtTCG
}
