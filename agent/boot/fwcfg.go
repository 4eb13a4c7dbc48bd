package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// QEMU's fw_cfg device, read through its x86 I/O ports: a 16-bit selector
// register and an 8-bit data register that streams the selected item. This
// needs neither ACPI (which the qemu_fw_cfg driver uses to find the device)
// nor a kernel module. The layout is QEMU's docs/specs/fw_cfg.rst.
const (
	fwcfgPortSelector = 0x510
	fwcfgPortData     = 0x511

	fwcfgKeySignature = 0x0000
	fwcfgKeyFileDir   = 0x0019

	fwcfgFileEntrySize = 64 // size u32, select u16, reserved u16, name [56]byte
	fwcfgFileNameSize  = 56
)

// Where a QEMU machine shows itself: the DMI system vendor ("QEMU", on
// machines with SMBIOS such as pc and q35), or the OEM ID of the ACPI FADT
// ("BOCHS ", on every QEMU machine with ACPI, microvm included).
const (
	dmiVendor = "/sys/class/dmi/id/sys_vendor"
	acpiFADT  = "/sys/firmware/acpi/tables/FACP"
)

func isQEMU(vendorFile, fadtFile string) bool {
	if b, err := os.ReadFile(vendorFile); err == nil && strings.TrimSpace(string(b)) == "QEMU" {
		return true
	}
	f, err := os.Open(fadtFile)
	if err != nil {
		return false
	}
	defer f.Close()
	hdr := make([]byte, 16) // signature, length, revision, checksum, OEM ID (6 bytes)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return false
	}
	return string(hdr[0:4]) == "FACP" && string(hdr[10:16]) == "BOCHS "
}

// MaxFWCfgFile bounds what ReadFWCfgFile reads: user data is a few KiB.
const MaxFWCfgFile = 1 << 20

// ErrNoFWCfg means the machine has no fw_cfg device (not QEMU, or no access).
var ErrNoFWCfg = errors.New("no QEMU fw_cfg device")

// fwcfgPorts is the device's register interface (the I/O ports, or a fake in tests).
type fwcfgPorts interface {
	selectItem(key uint16)
	readByte() byte
}

// ReadFWCfgFile returns the content of the fw_cfg file name ("opt/peerpod/userdata").
// found is false when the device has no such file. It fails with ErrNoFWCfg
// when there is no fw_cfg device.
func ReadFWCfgFile(name string) (data []byte, found bool, err error) {
	// Touch the ports only on a QEMU machine: on other hardware 0x510 may be something else.
	if !isQEMU(dmiVendor, acpiFADT) {
		return nil, false, fmt.Errorf("%w: neither the DMI system vendor nor the ACPI tables say QEMU", ErrNoFWCfg)
	}
	runtime.LockOSThread() // I/O permissions belong to the thread
	defer runtime.UnlockOSThread()
	p, release, err := openFWCfgPorts()
	if err != nil {
		return nil, false, err
	}
	defer release()
	return readFWCfgFile(p, name)
}

func readFWCfgFile(p fwcfgPorts, name string) ([]byte, bool, error) {
	if len(name) >= fwcfgFileNameSize {
		return nil, false, fmt.Errorf("fw_cfg: file name %q is longer than %d bytes", name, fwcfgFileNameSize-1)
	}
	p.selectItem(fwcfgKeySignature)
	if sig := readN(p, 4); string(sig) != "QEMU" {
		return nil, false, fmt.Errorf("%w (signature %q)", ErrNoFWCfg, sig)
	}
	p.selectItem(fwcfgKeyFileDir)
	count := binary.BigEndian.Uint32(readN(p, 4))
	if count > 4096 {
		return nil, false, fmt.Errorf("fw_cfg: file directory claims %d entries", count)
	}
	for i := uint32(0); i < count; i++ {
		e := readN(p, fwcfgFileEntrySize)
		size := binary.BigEndian.Uint32(e[0:4])
		key := binary.BigEndian.Uint16(e[4:6])
		n := e[8:]
		if j := bytes.IndexByte(n, 0); j >= 0 {
			n = n[:j]
		}
		if string(n) != name {
			continue
		}
		if size > MaxFWCfgFile {
			return nil, true, fmt.Errorf("fw_cfg: %s is %d bytes, more than %d", name, size, MaxFWCfgFile)
		}
		p.selectItem(key)
		return readN(p, int(size)), true, nil
	}
	return nil, false, nil
}

func readN(p fwcfgPorts, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = p.readByte()
	}
	return b
}
