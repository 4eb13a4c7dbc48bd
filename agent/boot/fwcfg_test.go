package boot

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeFWCfg emulates the fw_cfg registers over a set of files.
type fakeFWCfg struct {
	items map[uint16][]byte
	cur   []byte
}

func newFakeFWCfg(sig string, files map[string][]byte) *fakeFWCfg {
	f := &fakeFWCfg{items: map[uint16][]byte{fwcfgKeySignature: []byte(sig)}}
	dir := binary.BigEndian.AppendUint32(nil, uint32(len(files)))
	key := uint16(0x20)
	for _, name := range []string{"etc/boot-menu-wait", "opt/peerpod/userdata", "opt/other"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		e := make([]byte, fwcfgFileEntrySize)
		binary.BigEndian.PutUint32(e[0:], uint32(len(data)))
		binary.BigEndian.PutUint16(e[4:], key)
		copy(e[8:], name)
		dir = append(dir, e...)
		f.items[key] = data
		key++
	}
	f.items[fwcfgKeyFileDir] = dir
	return f
}

func (f *fakeFWCfg) selectItem(key uint16) { f.cur = f.items[key] }

func (f *fakeFWCfg) readByte() byte {
	if len(f.cur) == 0 {
		return 0 // the device reads zeros past the end
	}
	b := f.cur[0]
	f.cur = f.cur[1:]
	return b
}

func TestReadFWCfgFile(t *testing.T) {
	ud := []byte(strings.Repeat("user data ", 100))
	tests := []struct {
		name      string
		dev       *fakeFWCfg
		file      string
		want      []byte
		wantFound bool
		wantErr   string
		wantNoDev bool
	}{
		{name: "found", dev: newFakeFWCfg("QEMU", map[string][]byte{"etc/boot-menu-wait": {0, 0}, "opt/peerpod/userdata": ud, "opt/other": []byte("x")}),
			file: "opt/peerpod/userdata", want: ud, wantFound: true},
		{name: "absent", dev: newFakeFWCfg("QEMU", map[string][]byte{"opt/other": []byte("x")}), file: "opt/peerpod/userdata"},
		{name: "empty file", dev: newFakeFWCfg("QEMU", map[string][]byte{"opt/peerpod/userdata": {}}), file: "opt/peerpod/userdata", want: []byte{}, wantFound: true},
		{name: "no device", dev: newFakeFWCfg("\xff\xff\xff\xff", nil), file: "opt/peerpod/userdata", wantErr: "no QEMU fw_cfg", wantNoDev: true},
		{name: "name too long", dev: newFakeFWCfg("QEMU", nil), file: strings.Repeat("n", 56), wantErr: "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := readFWCfgFile(tc.dev, tc.file)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if errors.Is(err, ErrNoFWCfg) != tc.wantNoDev {
					t.Fatalf("errors.Is(err, ErrNoFWCfg) = %v, want %v", !tc.wantNoDev, tc.wantNoDev)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.wantFound || string(got) != string(tc.want) {
				t.Fatalf("got %d bytes, found %v; want %d bytes, found %v", len(got), found, len(tc.want), tc.wantFound)
			}
		})
	}
}

func TestReadFWCfgFileTooBig(t *testing.T) {
	dev := newFakeFWCfg("QEMU", map[string][]byte{"opt/peerpod/userdata": make([]byte, MaxFWCfgFile+1)})
	if _, _, err := readFWCfgFile(dev, "opt/peerpod/userdata"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("err = %v, want a size error", err)
	}
}

func TestIsQEMU(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fadt := func(oem string) string { return "FACP\x14\x01\x00\x00\x05\x00" + oem + "BXPC    " }
	tests := []struct {
		name         string
		vendor, fadt string
		want         bool
	}{
		{name: "dmi", vendor: write("v1", "QEMU\n"), fadt: filepath.Join(dir, "none"), want: true},
		{name: "acpi only (microvm)", vendor: filepath.Join(dir, "none"), fadt: write("f1", fadt("BOCHS ")), want: true},
		{name: "other vendor", vendor: write("v2", "Dell Inc.\n"), fadt: write("f2", fadt("DELL  ")), want: false},
		{name: "nothing", vendor: filepath.Join(dir, "none"), fadt: filepath.Join(dir, "none"), want: false},
		{name: "short table", vendor: filepath.Join(dir, "none"), fadt: write("f3", "FACP"), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isQEMU(tc.vendor, tc.fadt); got != tc.want {
				t.Fatalf("isQEMU = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHasPCI(t *testing.T) {
	dir := t.TempDir()
	if hasPCI(dir) || hasPCI(filepath.Join(dir, "absent")) {
		t.Fatal("hasPCI true for an empty or absent directory")
	}
	if err := os.Symlink("../../../devices/pci0000:00/0000:00:02.0", filepath.Join(dir, "0000:00:02.0")); err != nil {
		t.Fatal(err)
	}
	if !hasPCI(dir) {
		t.Fatal("hasPCI false with a device")
	}
}
