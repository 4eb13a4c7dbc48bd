package boot

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ioPorts reads fw_cfg through the I/O ports; the calling thread must be
// locked (ioperm grants access to one thread).
type ioPorts struct{}

func (ioPorts) selectItem(key uint16) { outw(fwcfgPortSelector, key) }
func (ioPorts) readByte() byte        { return inb(fwcfgPortData) }

func openFWCfgPorts() (fwcfgPorts, func(), error) {
	if err := unix.Ioperm(fwcfgPortSelector, 2, 1); err != nil {
		return nil, nil, fmt.Errorf("%w: ioperm 0x%x: %v", ErrNoFWCfg, fwcfgPortSelector, err)
	}
	return ioPorts{}, func() { _ = unix.Ioperm(fwcfgPortSelector, 2, 0) }, nil
}

// outw writes val to the 16-bit I/O port port.
func outw(port, val uint16)

// inb reads the 8-bit I/O port port.
func inb(port uint16) byte
