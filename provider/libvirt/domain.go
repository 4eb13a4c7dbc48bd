package libvirt

import (
	"encoding/xml"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"
)

// Virtualization types for the domain's type attribute.
const (
	VirtKVM = "kvm"
	VirtTCG = "qemu"
)

// Launch security kinds (LIBVIRT_LAUNCH_SECURITY).
const (
	LaunchSNP = "sev-snp"
	LaunchTDX = "tdx"
)

// MetadataNS is the XML namespace of the metadata element the provider keeps
// in every domain it makes: tags, the guest address and the creation time.
const MetadataNS = "https://peerpod.io/xmlns/libvirt/v1"

// FWCfgUserData is the fw_cfg entry that carries user data into the guest.
const FWCfgUserData = "opt/peerpod/userdata"

// bootArgs trim what the kernel probes and prints; measured under TCG (see docs/benchmarks.md).
const bootArgs = "console=ttyS0 quiet loglevel=0 panic=-1 no_timer_check tsc=reliable " +
	"cryptomgr.notests i8042.noaux i8042.nokbd i8042.nomux i8042.nopnp random.trust_cpu=on " +
	"mitigations=off nokaslr"

// meta is the provider's metadata element.
type meta struct {
	// XMLName is in MetadataNS when written; libvirt returns the element without it.
	XMLName  xml.Name  `xml:"instance"`
	IP       string    `xml:"ip"`
	Created  time.Time `xml:"created"`
	UserData string    `xml:"userdata,omitempty"`
	Console  string    `xml:"console,omitempty"`
	Volume   string    `xml:"volume,omitempty"`
	Tags     []metaTag `xml:"tags>tag"`
}

type metaTag struct {
	Key   string `xml:"key,attr"`
	Value string `xml:",chardata"`
}

func (m *meta) tags() map[string]string {
	t := make(map[string]string, len(m.Tags))
	for _, kv := range m.Tags {
		t[kv.Key] = kv.Value
	}
	return t
}

func metaTags(t map[string]string) []metaTag {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]metaTag, len(keys))
	for i, k := range keys {
		out[i] = metaTag{Key: k, Value: t[k]}
	}
	return out
}

// marshal renders m with a namespace prefix: libvirt drops metadata elements
// that use a default namespace.
func (m meta) marshal() (string, error) {
	m.XMLName = xml.Name{Local: "instance"}
	b, err := xml.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode metadata: %w", err)
	}
	s := string(b)
	s = "<peerpod:instance xmlns:peerpod=\"" + MetadataNS + "\"" + strings.TrimPrefix(s, "<instance")
	return strings.TrimSuffix(s, "</instance>") + "</peerpod:instance>", nil
}

func parseMeta(s string) (*meta, error) {
	var m meta
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("parse peerpod metadata: %w", err)
	}
	return &m, nil
}

// netAttach is how a guest NIC joins the host network.
type netAttach struct {
	Bridge  string // a host bridge, or
	Network string // a libvirt network
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// spec is everything one domain definition depends on.
type spec struct {
	Name      string
	VirtType  string
	VCPUs     int64
	MemoryMiB int64
	IP        netip.Addr
	Net       netAttach
	Meta      meta
	// Disk is the path of the VM's own disk for UEFI disk boot ("" for kernel boot).
	Disk string
	// TSCkHz is the host TSC frequency, for a TCG guest without a timer to
	// calibrate its TSC against (0: unknown).
	TSCkHz uint64
}

// domainXML renders the domain for s under configuration c.
func domainXML(c *Config, s spec) (string, error) {
	metaXML, err := s.Meta.marshal()
	if err != nil {
		return "", err
	}
	d := &libvirtxml.Domain{
		Type:     s.VirtType,
		Name:     s.Name,
		Metadata: &libvirtxml.DomainMetadata{XML: metaXML},
		Memory:   &libvirtxml.DomainMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(s.VCPUs), CPUSet: c.CPUSet},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Emulator: "",
			Interfaces: []libvirtxml.DomainInterface{{
				Model: &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if s.Net.Bridge != "" {
		d.Devices.Interfaces[0].Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: s.Net.Bridge}}
	} else {
		d.Devices.Interfaces[0].Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: s.Net.Network}}
	}
	if s.Meta.Console != "" {
		src := &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: s.Meta.Console}}
		d.Devices.Serials = []libvirtxml.DomainSerial{{Source: src}}
		d.Devices.Consoles = []libvirtxml.DomainConsole{{Source: src, Target: &libvirtxml.DomainConsoleTarget{Type: "serial"}}}
	}
	if s.Meta.UserData != "" {
		d.SysInfo = []libvirtxml.DomainSysInfo{{FWCfg: &libvirtxml.DomainSysInfoFWCfg{
			Entry: []libvirtxml.DomainSysInfoEntry{{Name: FWCfgUserData, File: s.Meta.UserData}},
		}}}
	}
	if s.VirtType == VirtKVM {
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	} else {
		// TCG: "max" gives the guest RDRAND and the newer instructions QEMU
		// can emulate, less "fast rep movsb/stosb": with them the kernel
		// copies and clears memory one byte per emulated loop iteration
		// (TCG runs each iteration of a rep prefix separately), without them
		// with unrolled 8-byte moves. That halves the time the guest takes to
		// unpack its initramfs (docs/benchmarks.md, ## libvirt).
		d.CPU = &libvirtxml.DomainCPU{Mode: "maximum", Features: []libvirtxml.DomainCPUFeature{
			{Policy: "disable", Name: "erms"}, {Policy: "disable", Name: "fsrm"},
		}}
	}
	// ACPI stays on: without it (the Debian kernel has no MP table support)
	// a guest sees one CPU and no IO-APIC. User data does not need it: the
	// guest reads fw_cfg through its I/O ports (agent/boot).
	d.Features = &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}}
	if c.Kernel != "" {
		d.OS.Kernel = c.Kernel
		d.OS.Initrd = c.Initrd
		d.OS.Cmdline = kernelCmdline(c, s)
		switch {
		case c.LaunchSecurity != "":
		case s.VirtType == VirtKVM || s.TSCkHz > 0:
			microVM(d)
		default:
			// TCG with a remote libvirtd: the TSC frequency is unknown, and a
			// microvm guest could not calibrate its TSC; pc has an HPET.
			d.OS.Loader = &libvirtxml.DomainLoader{Type: "rom", Path: qbootROM}
		}
	} else {
		d.OS.Loader = &libvirtxml.DomainLoader{Type: "pflash", Readonly: "yes", Path: c.Firmware}
		d.OS.Type.Machine = "q35"
		d.Features = &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}}
		// A disk image's distribution may wait for entropy; the pod VM image
		// (kernel boot) trusts the CPU's RDRAND (random.trust_cpu=on) and has
		// no virtio-rng: probing one costs ~0.3 s under TCG.
		d.Devices.RNGs = []libvirtxml.DomainRNG{{
			Model:   "virtio",
			Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
		}}
		d.Devices.Disks = []libvirtxml.DomainDisk{{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Disk}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		}}
	}
	if c.LaunchSecurity != "" {
		if err := confidential(c, d); err != nil {
			return "", err
		}
	}
	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("encode domain %s: %w", s.Name, err)
	}
	return out, nil
}

// qbootROM is a minimal BIOS that jumps straight to the kernel (the pc machine's firmware here).
const qbootROM = "/usr/share/qemu/qboot.rom"

// microVM makes d a QEMU microvm: no PCI bus, no legacy devices beyond the
// serial port and the RTC, the NIC on virtio-mmio, qboot as firmware (the
// machine's default) and small ACPI tables (CPUs, IO-APIC, the virtio-mmio
// devices). Under TCG the guest then spends no time enumerating PCI or
// evaluating the PCI interrupt links' AML, which on the pc machine costs
// ~0.3 s per device. fw_cfg (user data) stays at its I/O ports.
func microVM(d *libvirtxml.Domain) {
	d.OS.Type.Machine = "microvm"
	d.Devices.Controllers = append(d.Devices.Controllers, libvirtxml.DomainController{Type: "usb", Model: "none"})
	for i := range d.Devices.Interfaces {
		d.Devices.Interfaces[i].Address = &libvirtxml.DomainAddress{VirtioMMIO: &libvirtxml.DomainAddressVirtioMMIO{}}
	}
}

// kernelCmdline is the guest kernel command line: boot trimming, the static
// address (read by agent/boot) and anything configured.
func kernelCmdline(c *Config, s spec) string {
	args := []string{bootArgs,
		fmt.Sprintf("peerpod.ip=%s/%d", s.IP, s.Net.Prefix.Bits()),
		"peerpod.hostname=" + s.Name,
	}
	if s.Net.Gateway.IsValid() {
		args = append(args, "peerpod.gw="+s.Net.Gateway.String())
	}
	if s.VirtType == VirtTCG && s.TSCkHz > 0 {
		args = append(args, fmt.Sprintf("tsc_early_khz=%d", s.TSCkHz))
	}
	if c.KernelCmdline != "" {
		args = append(args, c.KernelCmdline)
	}
	return strings.Join(args, " ")
}

// confidential adds what an SEV-SNP or TDX guest needs: UEFI firmware without
// persistent variables, q35 with ACPI, and the launchSecurity element.
func confidential(c *Config, d *libvirtxml.Domain) error {
	if c.Firmware == "" {
		return fmt.Errorf("LIBVIRT_LAUNCH_SECURITY=%s needs LIBVIRT_EFI_FIRMWARE (an OVMF build for %s)", c.LaunchSecurity, c.LaunchSecurity)
	}
	d.Type = VirtKVM
	d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	d.OS.Type.Machine = "q35"
	d.OS.Loader = &libvirtxml.DomainLoader{Path: c.Firmware, Stateless: "yes", Type: "rom"}
	if d.Features == nil {
		d.Features = &libvirtxml.DomainFeatureList{}
	}
	d.Features.ACPI = &libvirtxml.DomainFeature{}
	// Guest memory is private to the guest; QEMU shares only what virtio needs.
	d.MemoryBacking = &libvirtxml.DomainMemoryBacking{
		MemorySource: &libvirtxml.DomainMemorySource{Type: "memfd"},
		MemoryAccess: &libvirtxml.DomainMemoryAccess{Mode: "shared"},
	}
	iommu := &libvirtxml.DomainInterfaceDriver{IOMMU: "on"}
	for i := range d.Devices.Interfaces {
		d.Devices.Interfaces[i].Driver = iommu
	}
	for i := range d.Devices.RNGs {
		d.Devices.RNGs[i].Driver = &libvirtxml.DomainRNGDriver{IOMMU: "on"}
	}
	for i := range d.Devices.Disks {
		d.Devices.Disks[i].Driver.IOMMU = "on"
	}
	switch c.LaunchSecurity {
	case LaunchSNP:
		cbit, reduced := uint(51), uint(1)
		policy := uint64(0x30000) // SMT allowed, reserved bit 17 set; no debug, no migration agent
		d.LaunchSecurity = &libvirtxml.DomainLaunchSecurity{SEVSNP: &libvirtxml.DomainLaunchSecuritySEVSNP{
			KernelHashes:    yesIf(c.Kernel != ""),
			CBitPos:         &cbit,
			ReducedPhysBits: &reduced,
			Policy:          &policy,
		}}
	case LaunchTDX:
		policy := uint(0x10000000) // SEPT_VE_DISABLE; debug off
		d.LaunchSecurity = &libvirtxml.DomainLaunchSecurity{TDX: &libvirtxml.DomainLaunchSecurityTDX{
			Policy:                 &policy,
			QuoteGenerationService: &libvirtxml.DomainLaunchSecurityTDXQGS{},
		}}
		d.Features.IOAPIC = &libvirtxml.DomainFeatureIOAPIC{Driver: "qemu"}
	}
	return nil
}

func yesIf(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

// vmFiles are the per-VM files in the data directory.
func vmFiles(dataDir, name string) (userData, console string) {
	return filepath.Join(dataDir, name+".userdata"), filepath.Join(dataDir, name+".console.log")
}

// writeUserData writes the user data file readable by root only.
func writeUserData(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
