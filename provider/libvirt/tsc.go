package libvirt

import (
	"runtime"
	"time"
)

// A TCG guest's TSC is the host's TSC (QEMU reads it for the guest), so its
// frequency is the host's. A microvm has neither HPET nor an ACPI PM timer
// to calibrate the TSC against, and calibration against the PIT fails when
// the host is busy (the guest then stops with "could not calculate TSC
// khz"): the provider measures the frequency once and passes it to the guest
// as tsc_early_khz.

// hostTSCkHz measures the host TSC frequency in kHz over window, or returns
// 0 when this host has no TSC the guest would share.
func hostTSCkHz(window time.Duration) uint64 {
	if !haveTSC {
		return 0
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, c0 := time.Now(), rdtsc()
	time.Sleep(window)
	c1, t1 := rdtsc(), time.Now()
	us := uint64(t1.Sub(t0).Microseconds())
	if us == 0 || c1 <= c0 {
		return 0
	}
	return (c1 - c0) * 1000 / us
}
