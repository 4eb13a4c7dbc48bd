package libvirt

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"
)

const installedSchema = "/usr/share/libvirt/schemas/domain.rng"

// validate checks x against libvirt's installed domain schema, extended for
// sev-snp and tdx by testdata/domain-cvm.rng.
func validate(t *testing.T, x string) {
	t.Helper()
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Skip("xmllint not installed (libxml2-utils)")
	}
	if _, err := os.Stat(installedSchema); err != nil {
		t.Skip("libvirt's domain schema is not installed (libvirt-daemon-system)")
	}
	schema, err := filepath.Abs("testdata/domain-cvm.rng")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "domain.xml")
	if err := os.WriteFile(f, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xmllint", "--noout", "--relaxng", schema, f).CombinedOutput()
	if err != nil {
		t.Fatalf("domain XML does not validate: %v\n%s\n%s", err, out, x)
	}
	if !strings.Contains(x, "<launchSecurity") {
		// Without launch security the untouched installed schema must accept it too.
		if out, err := exec.Command("xmllint", "--noout", "--relaxng", installedSchema, f).CombinedOutput(); err != nil {
			t.Fatalf("domain XML fails libvirt's own schema: %v\n%s", err, out)
		}
	}
}

func testSpec() spec {
	gw := netip.MustParseAddr("10.9.8.1")
	return spec{
		Name: "podvm-x-12345678", VirtType: VirtTCG, VCPUs: 1, MemoryMiB: 256, TSCkHz: 2445404,
		IP:  netip.MustParseAddr("10.9.8.7"),
		Net: netAttach{Bridge: "br9", Prefix: netip.PrefixFrom(gw, 24), Gateway: gw},
		Meta: meta{IP: "10.9.8.7", Created: time.Unix(1700000000, 0).UTC(), UserData: "/d/podvm-x.userdata",
			Console: "/d/podvm-x.console.log", Tags: metaTags(map[string]string{"peerpod.io/managed": "true", "a": "b<&>"})},
	}
}

func TestDomainXML(t *testing.T) {
	kernel := Config{Kernel: "/img/vmlinux", Initrd: "/img/initramfs", KernelCmdline: "extra=1"}
	tests := []struct {
		name    string
		cfg     Config
		mod     func(*spec)
		want    []string
		notWant []string
	}{
		{
			name: "tcg kernel boot",
			cfg:  kernel,
			want: []string{`type="qemu"`, `<kernel>/img/vmlinux</kernel>`, `peerpod.ip=10.9.8.7/24`, `peerpod.gw=10.9.8.1`,
				`extra=1`, `tsc_early_khz=2445404`, `machine="microvm"`, `<address type="virtio-mmio">`, `<controller type="usb" model="none">`,
				`name="opt/peerpod/userdata" file="/d/podvm-x.userdata"`, `<source bridge="br9">`, `mode="maximum"`, `<feature policy="disable" name="erms">`, `<feature policy="disable" name="fsrm">`,
				`xmlns:peerpod="` + MetadataNS, `<acpi>`},
			notWant: []string{`launchSecurity`, `<rng`, `<loader`},
		},
		{
			name: "kvm two vcpus on a libvirt network",
			cfg:  kernel,
			mod: func(s *spec) {
				s.VirtType, s.VCPUs = VirtKVM, 2
				s.Net = netAttach{Network: "default", Prefix: s.Net.Prefix, Gateway: s.Net.Gateway}
			},
			want:    []string{`type="kvm"`, `<acpi>`, `host-passthrough`, `network="default"`, `<vcpu>2</vcpu>`, `machine="microvm"`},
			notWant: []string{`tsc_early_khz`, `erms`},
		},
		{
			name:    "tcg with a remote libvirtd (TSC frequency unknown)",
			cfg:     kernel,
			mod:     func(s *spec) { s.TSCkHz = 0 },
			want:    []string{`type="qemu"`, `machine="pc"`, `qboot.rom`, `<acpi>`},
			notWant: []string{`microvm`, `tsc_early_khz`, `virtio-mmio`},
		},
		{
			name:    "uefi disk boot",
			cfg:     Config{Firmware: "/usr/share/OVMF/OVMF_CODE_4M.fd", Volume: "podvm-base.qcow2"},
			mod:     func(s *spec) { s.Disk = "/var/lib/libvirt/images/podvm-x-root.qcow2" },
			want:    []string{`machine="q35"`, `type="pflash"`, `OVMF_CODE_4M.fd`, `podvm-x-root.qcow2`, `bus="virtio"`},
			notWant: []string{`<kernel>`, `microvm`},
		},
		{
			name: "sev-snp",
			cfg:  Config{Kernel: "/img/vmlinux", Initrd: "/img/initramfs", Firmware: "/usr/share/ovmf/OVMF.amdsev.fd", LaunchSecurity: LaunchSNP},
			want: []string{`type="kvm"`, `<launchSecurity type="sev-snp" kernelHashes="yes">`, `<policy>0x`, `machine="q35"`,
				`stateless="yes"`, `<source type="memfd">`, `iommu="on"`, `<acpi>`},
			notWant: []string{`microvm`, `virtio-mmio`},
		},
		{
			name: "tdx",
			cfg:  Config{Kernel: "/img/vmlinux", Initrd: "/img/initramfs", Firmware: "/usr/share/ovmf/OVMF.inteltdx.fd", LaunchSecurity: LaunchTDX},
			want: []string{`type="kvm"`, `<launchSecurity type="tdx">`, `<policy>0x10000000</policy>`, `<ioapic driver="qemu">`,
				`<quoteGenerationService>`, `machine="q35"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec()
			if tc.mod != nil {
				tc.mod(&s)
			}
			x, err := domainXML(&tc.cfg, s)
			if err != nil {
				t.Fatalf("domainXML: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(x, w) {
					t.Errorf("XML lacks %s\n%s", w, x)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(x, w) {
					t.Errorf("XML has %s\n%s", w, x)
				}
			}
			validate(t, x)
			// The metadata must read back as written.
			var d libvirtxml.Domain
			if err := d.Unmarshal(x); err != nil {
				t.Fatal(err)
			}
			m, err := parseMeta(d.Metadata.XML)
			if err != nil {
				t.Fatalf("metadata: %v\n%s", err, d.Metadata.XML)
			}
			if m.IP != s.Meta.IP || m.tags()["a"] != "b<&>" || !m.Created.Equal(s.Meta.Created) {
				t.Errorf("metadata round trip: got %+v", m)
			}
		})
	}
}

func TestConfidentialNeedsFirmware(t *testing.T) {
	c := Config{Kernel: "/k", Initrd: "/i", LaunchSecurity: LaunchTDX}
	if _, err := domainXML(&c, testSpec()); err == nil || !strings.Contains(err.Error(), "LIBVIRT_EFI_FIRMWARE") {
		t.Fatalf("tdx without firmware: %v, want an error naming LIBVIRT_EFI_FIRMWARE", err)
	}
}
