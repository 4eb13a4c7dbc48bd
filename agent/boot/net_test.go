package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name, line string
		wantIP     string
		wantGW     string
		wantHost   string
		wantErr    string
	}{
		{name: "full", line: "console=ttyS0 quiet peerpod.ip=10.1.2.3/24 peerpod.gw=10.1.2.1 peerpod.hostname=podvm-a peerpod.dns=1.1.1.1",
			wantIP: "10.1.2.3/24", wantGW: "10.1.2.1", wantHost: "podvm-a"},
		{name: "none", line: "console=ttyS0 quiet"},
		{name: "bad ip", line: "peerpod.ip=10.1.2.300/24", wantErr: "peerpod.ip"},
		{name: "ipv6", line: "peerpod.ip=fd00::1/64", wantErr: "peerpod.ip"},
		{name: "bad gw", line: "peerpod.ip=10.1.2.3/24 peerpod.gw=x", wantErr: "peerpod.gw"},
		{name: "gw alone", line: "peerpod.gw=10.1.2.1", wantErr: "without peerpod.ip"},
		{name: "bad dns", line: "peerpod.dns=1.1.1.1,nope", wantErr: "peerpod.dns"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := ParseCmdline(tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ip := nc.Addr.String(); tc.wantIP != "" && ip != tc.wantIP || tc.wantIP == "" && nc.Addr.IsValid() {
				t.Errorf("ip = %s, want %s", ip, tc.wantIP)
			}
			if gw := nc.Gateway.String(); tc.wantGW != "" && gw != tc.wantGW {
				t.Errorf("gw = %s, want %s", gw, tc.wantGW)
			}
			if nc.Hostname != tc.wantHost {
				t.Errorf("hostname = %q, want %q", nc.Hostname, tc.wantHost)
			}
		})
	}
}

func TestLoadModulesWithoutOrderFile(t *testing.T) {
	n, err := LoadModules(t.TempDir(), "")
	if err != nil || n != 0 {
		t.Fatalf("LoadModules on an empty dir = %d, %v; want 0, nil", n, err)
	}
}

func TestLoadModuleSet(t *testing.T) {
	dir := t.TempDir()
	if n, err := LoadModuleSet(dir, "vxlan"); err != nil || n != 0 {
		t.Fatalf("LoadModuleSet without vxlan.order = %d, %v; want 0, nil", n, err)
	}
	// A set naming a file the image lacks fails and names the file.
	if err := os.WriteFile(filepath.Join(dir, "vxlan.order"), []byte("udp_tunnel.ko\nvxlan.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadModuleSet(dir, "vxlan")
	if err == nil || !strings.Contains(err.Error(), "udp_tunnel.ko") {
		t.Fatalf("LoadModuleSet with a missing module file: err = %v, want one naming udp_tunnel.ko", err)
	}
}

func TestModuleParams(t *testing.T) {
	got := ModuleParams("quiet qemu_fw_cfg.ioport=12@0x510:0:1:4 virtio-net.napi_tx=1 qemu_fw_cfg.x=y peerpod.ip=1.2.3.4/24 noarg.flag")
	want := map[string]string{"qemu_fw_cfg": "ioport=12@0x510:0:1:4 x=y", "virtio_net": "napi_tx=1", "peerpod": "ip=1.2.3.4/24"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("params[%s] = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("params = %v, want %v", got, want)
	}
}
