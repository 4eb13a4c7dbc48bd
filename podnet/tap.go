package podnet

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VnetHdrLen is the size of the virtio_net_hdr in front of each frame.
const VnetHdrLen = 10

// TUN offload flags (linux/if_tun.h).
const (
	tunFCsum = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFTSOE = 0x08
)

// OpenTAP opens (making it if need be) the TAP device name in the network
// namespace ns. With vnetHdr each frame read or written starts with a
// virtio_net_hdr and the device takes TCP segmentation and checksum
// offloads, so the kernel hands over GSO super-frames instead of
// MTU-sized ones. persist keeps the device when the file is closed.
func OpenTAP(ns netns.NsHandle, name string, vnetHdr, persist bool) (*os.File, error) {
	var fd int
	err := Do(ns, func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TAP %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TAP %s: TUNSETIFF: %w", name, err)
	}
	if vnetHdr {
		sz := VnetHdrLen
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETVNETHDRSZ, uintptr(unsafe.Pointer(&sz))); e != 0 {
			unix.Close(fd)
			return nil, fmt.Errorf("TAP %s: TUNSETVNETHDRSZ: %w", name, e)
		}
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6|tunFTSOE); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("TAP %s: TUNSETOFFLOAD: %w", name, err)
		}
	}
	p := 0
	if persist {
		p = 1
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, p); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TAP %s: TUNSETPERSIST: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
