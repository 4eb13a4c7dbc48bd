package libvirt

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/peerpod/peerpod/provider"
)

// Config is the libvirt provider's configuration. The keys are
// cloud-api-adaptor's LIBVIRT_* keys where one exists, plus our own for
// direct kernel boot, the guest address pool and confidential launch.
type Config struct {
	// URI is the libvirt connection URI (LIBVIRT_URI, default qemu:///system).
	// Local (unix socket) and qemu+tcp URIs are supported.
	URI string
	// Network is a libvirt network or a host bridge the guests join (LIBVIRT_NET, default "default").
	Network string
	// IPRange limits the guest addresses the provider hands out, "first-last"
	// (LIBVIRT_IP_RANGE); default: the network's whole subnet less its gateway.
	IPRange string
	// Kernel and Initrd are the pod VM image for direct kernel boot
	// (LIBVIRT_KERNEL, LIBVIRT_INITRD). A kernel with a PVH note (vmlinux)
	// boots fastest; a bzImage works too.
	Kernel, Initrd string
	// KernelCmdline is appended to the kernel command line (LIBVIRT_KERNEL_CMDLINE).
	KernelCmdline string
	// Pool and Volume name a base disk image for UEFI disk boot when Kernel is
	// empty (LIBVIRT_POOL default "default", LIBVIRT_VOL_NAME).
	Pool, Volume string
	// Firmware is the UEFI firmware for disk boot and CVMs (LIBVIRT_EFI_FIRMWARE).
	Firmware string
	// VCPUs and MemoryMiB size a VM when the pod asks for nothing
	// (LIBVIRT_CPU default 1, LIBVIRT_MEMORY default 512).
	VCPUs, MemoryMiB int64
	// CPUSet pins the vCPUs to host CPUs (LIBVIRT_CPUSET, e.g. "0-3").
	CPUSet string
	// VirtType is "kvm", "qemu" (TCG) or "" to detect (LIBVIRT_VIRT_TYPE):
	// kvm only when the host CPU shows vmx or svm and /dev/kvm exists.
	VirtType string
	// LaunchSecurity is "", "sev-snp" or "tdx" (LIBVIRT_LAUNCH_SECURITY).
	LaunchSecurity string
	// DataDir holds per-VM files (user data, console log) (LIBVIRT_DATA_DIR,
	// default /var/lib/peerpod/libvirt). It must be on the libvirtd host.
	DataDir string
}

// Defaults for the keys above.
const (
	DefaultURI       = "qemu:///system"
	DefaultNetwork   = "default"
	DefaultPool      = "default"
	DefaultVCPUs     = 1
	DefaultMemoryMiB = 512
	DefaultDataDir   = "/var/lib/peerpod/libvirt"
)

// LoadConfig reads the configuration from getenv (os.Getenv in peerpodd).
// Errors are classified provider.ErrInvalidConfig and name the key.
func LoadConfig(getenv func(string) string) (*Config, error) {
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	c := &Config{
		URI:            get("LIBVIRT_URI", DefaultURI),
		Network:        get("LIBVIRT_NET", DefaultNetwork),
		IPRange:        get("LIBVIRT_IP_RANGE", ""),
		Kernel:         get("LIBVIRT_KERNEL", ""),
		Initrd:         get("LIBVIRT_INITRD", ""),
		KernelCmdline:  get("LIBVIRT_KERNEL_CMDLINE", ""),
		Pool:           get("LIBVIRT_POOL", DefaultPool),
		Volume:         get("LIBVIRT_VOL_NAME", ""),
		Firmware:       get("LIBVIRT_EFI_FIRMWARE", ""),
		CPUSet:         get("LIBVIRT_CPUSET", ""),
		VirtType:       get("LIBVIRT_VIRT_TYPE", ""),
		LaunchSecurity: get("LIBVIRT_LAUNCH_SECURITY", ""),
		DataDir:        get("LIBVIRT_DATA_DIR", DefaultDataDir),
	}
	var err error
	if c.VCPUs, err = positive(get("LIBVIRT_CPU", ""), "LIBVIRT_CPU", DefaultVCPUs); err != nil {
		return nil, err
	}
	if c.MemoryMiB, err = positive(get("LIBVIRT_MEMORY", ""), "LIBVIRT_MEMORY", DefaultMemoryMiB); err != nil {
		return nil, err
	}
	// DISABLECVM=false with no launch type is cloud-api-adaptor's way of asking for a CVM;
	// libvirt needs to know which kind, so that is LIBVIRT_LAUNCH_SECURITY's job here.
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func positive(s, key string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, provider.Errorf(provider.ErrInvalidConfig, "%s=%q is not a positive integer", key, s)
	}
	return v, nil
}

// Validate checks the configuration without contacting libvirtd.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return provider.Errorf(provider.ErrInvalidConfig, format, args...)
	}
	if _, err := parseURI(c.URI); err != nil {
		return err
	}
	switch c.VirtType {
	case "", VirtKVM, VirtTCG:
	default:
		return bad("LIBVIRT_VIRT_TYPE=%q is not kvm or qemu", c.VirtType)
	}
	switch c.LaunchSecurity {
	case "", LaunchSNP, LaunchTDX:
	default:
		return bad("LIBVIRT_LAUNCH_SECURITY=%q is not sev-snp or tdx", c.LaunchSecurity)
	}
	if c.LaunchSecurity != "" && c.VirtType == VirtTCG {
		return bad("LIBVIRT_LAUNCH_SECURITY=%s needs LIBVIRT_VIRT_TYPE=kvm, not qemu", c.LaunchSecurity)
	}
	if c.Network == "" {
		return bad("LIBVIRT_NET is empty")
	}
	if c.IPRange != "" {
		if _, _, err := parseRange(c.IPRange); err != nil {
			return err
		}
	}
	switch {
	case c.Kernel != "":
		if c.Initrd == "" {
			return bad("LIBVIRT_KERNEL is set but LIBVIRT_INITRD is empty")
		}
	case c.Volume == "":
		return bad("neither LIBVIRT_KERNEL (direct kernel boot) nor LIBVIRT_VOL_NAME (disk boot) is set")
	case c.Firmware == "":
		return bad("LIBVIRT_VOL_NAME=%s (UEFI disk boot) needs LIBVIRT_EFI_FIRMWARE", c.Volume)
	}
	if c.DataDir == "" || !strings.HasPrefix(c.DataDir, "/") {
		return bad("LIBVIRT_DATA_DIR=%q is not an absolute path", c.DataDir)
	}
	return nil
}

// checkFiles checks that the image files exist (when libvirtd is local).
func (c *Config) checkFiles() error {
	for key, p := range map[string]string{"LIBVIRT_KERNEL": c.Kernel, "LIBVIRT_INITRD": c.Initrd, "LIBVIRT_EFI_FIRMWARE": c.Firmware} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return provider.Errorf(provider.ErrInvalidConfig, "%s=%s: %v", key, p, err)
		}
	}
	return nil
}

func parseRange(s string) (netip.Addr, netip.Addr, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := netip.ParseAddr(strings.TrimSpace(a))
	last, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || !first.Is4() || !last.Is4() || last.Less(first) {
		return netip.Addr{}, netip.Addr{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_IP_RANGE=%q is not first-last of IPv4 addresses", s)
	}
	return first, last, nil
}

// String describes c for logs (nothing in it is secret).
func (c *Config) String() string {
	return fmt.Sprintf("uri=%s net=%s kernel=%s cpu=%d memory=%dMiB virt=%s launch-security=%s",
		c.URI, c.Network, c.Kernel, c.VCPUs, c.MemoryMiB, c.VirtType, c.LaunchSecurity)
}
