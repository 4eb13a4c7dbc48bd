package libvirt

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/provider"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{"LIBVIRT_KERNEL": "/k", "LIBVIRT_INITRD": "/i"}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring naming the bad key; "" = valid
		check   func(*testing.T, *Config)
	}{
		{name: "defaults", env: base, check: func(t *testing.T, c *Config) {
			if c.URI != DefaultURI || c.Network != DefaultNetwork || c.VCPUs != DefaultVCPUs || c.MemoryMiB != DefaultMemoryMiB || c.DataDir != DefaultDataDir {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "sizes", env: map[string]string{"LIBVIRT_CPU": "2", "LIBVIRT_MEMORY": "1024"}, check: func(t *testing.T, c *Config) {
			if c.VCPUs != 2 || c.MemoryMiB != 1024 {
				t.Errorf("sizes: %+v", c)
			}
		}},
		{name: "bad cpu", env: map[string]string{"LIBVIRT_CPU": "two"}, wantErr: "LIBVIRT_CPU"},
		{name: "zero memory", env: map[string]string{"LIBVIRT_MEMORY": "0"}, wantErr: "LIBVIRT_MEMORY"},
		{name: "bad virt", env: map[string]string{"LIBVIRT_VIRT_TYPE": "xen"}, wantErr: "LIBVIRT_VIRT_TYPE"},
		{name: "bad launch", env: map[string]string{"LIBVIRT_LAUNCH_SECURITY": "sev"}, wantErr: "LIBVIRT_LAUNCH_SECURITY"},
		{name: "cvm under tcg", env: map[string]string{"LIBVIRT_LAUNCH_SECURITY": "tdx", "LIBVIRT_VIRT_TYPE": "qemu"}, wantErr: "LIBVIRT_VIRT_TYPE=kvm"},
		{name: "bad range", env: map[string]string{"LIBVIRT_IP_RANGE": "10.0.0.9-10.0.0.1"}, wantErr: "LIBVIRT_IP_RANGE"},
		{name: "ssh uri", env: map[string]string{"LIBVIRT_URI": "qemu+ssh://root@h/system"}, wantErr: "LIBVIRT_URI"},
		{name: "tcp uri", env: map[string]string{"LIBVIRT_URI": "qemu+tcp://10.0.0.1/system"}},
		{name: "socket uri", env: map[string]string{"LIBVIRT_URI": "qemu+unix:///system?socket=/tmp/s"}},
		{name: "kernel without initrd", env: map[string]string{"LIBVIRT_INITRD": " "}, wantErr: "LIBVIRT_INITRD"},
		{name: "no image at all", env: map[string]string{"LIBVIRT_KERNEL": "", "LIBVIRT_INITRD": ""}, wantErr: "LIBVIRT_VOL_NAME"},
		{name: "disk boot needs firmware", env: map[string]string{"LIBVIRT_KERNEL": "", "LIBVIRT_INITRD": "", "LIBVIRT_VOL_NAME": "base.qcow2"}, wantErr: "LIBVIRT_EFI_FIRMWARE"},
		{name: "relative data dir", env: map[string]string{"LIBVIRT_DATA_DIR": "data"}, wantErr: "LIBVIRT_DATA_DIR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			c, err := LoadConfig(func(k string) string { return env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, provider.ErrInvalidConfig) {
					t.Fatalf("LoadConfig: %v, want invalid configuration naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestPool(t *testing.T) {
	gw := netip.MustParseAddr("10.1.2.1")
	att := netAttach{Bridge: "b", Prefix: netip.PrefixFrom(gw, 24), Gateway: gw}
	a := netip.MustParseAddr
	tests := []struct {
		name        string
		ipRange     string
		dhcp        []netip.Addr
		used        []string
		want        string // "" = exhausted
		first, last string
	}{
		{name: "whole subnet skips gateway", want: "10.1.2.2", first: "10.1.2.1", last: "10.1.2.254"},
		{name: "skips used", used: []string{"10.1.2.2", "10.1.2.3"}, want: "10.1.2.4", first: "10.1.2.1", last: "10.1.2.254"},
		{name: "range", ipRange: "10.1.2.100-10.1.2.101", used: []string{"10.1.2.100"}, want: "10.1.2.101", first: "10.1.2.100", last: "10.1.2.101"},
		{name: "range exhausted", ipRange: "10.1.2.100-10.1.2.101", used: []string{"10.1.2.100", "10.1.2.101"}, first: "10.1.2.100", last: "10.1.2.101"},
		{name: "outside dhcp", dhcp: []netip.Addr{a("10.1.2.2"), a("10.1.2.200")}, want: "10.1.2.201", first: "10.1.2.201", last: "10.1.2.254"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := makePool(att, tc.ipRange, tc.dhcp)
			if err != nil {
				t.Fatal(err)
			}
			if p.first.String() != tc.first || p.last.String() != tc.last {
				t.Fatalf("pool %s-%s, want %s-%s", p.first, p.last, tc.first, tc.last)
			}
			used := map[netip.Addr]bool{}
			for _, u := range tc.used {
				used[a(u)] = true
			}
			got, ok := p.next(used)
			if tc.want == "" {
				if ok {
					t.Fatalf("next = %s, want exhausted", got)
				}
				return
			}
			if !ok || got.String() != tc.want {
				t.Fatalf("next = %s %v, want %s", got, ok, tc.want)
			}
		})
	}
	if _, err := makePool(att, "10.9.9.1-10.9.9.2", nil); err == nil {
		t.Error("a range outside the subnet was accepted")
	}
}

func TestDetectVirt(t *testing.T) {
	dir := t.TempDir()
	kvm := filepath.Join(dir, "kvm")
	if err := os.WriteFile(kvm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, flags string
		kvm         bool
		want        string
	}{
		{"vmx", "fpu vme vmx sse", true, VirtKVM},
		{"svm", "fpu svm", true, VirtKVM},
		{"paravirtual kvm without vmx", "fpu hypervisor sse", true, VirtTCG},
		{"vmx without kvm device", "fpu vmx", false, VirtTCG},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ci := filepath.Join(dir, tc.name)
			if err := os.WriteFile(ci, []byte("processor\t: 0\nflags\t\t: "+tc.flags+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			dev := kvm
			if !tc.kvm {
				dev = filepath.Join(dir, "nokvm")
			}
			if got := detectVirt(ci, dev); got != tc.want {
				t.Fatalf("detectVirt = %s, want %s", got, tc.want)
			}
		})
	}
}
