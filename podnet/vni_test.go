package podnet

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestVNIs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "vni.json")
	v, err := OpenVNIs(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op, id string
		want   uint32
	}{
		{"get", "a", DefaultMinVNI},
		{"get", "b", DefaultMinVNI + 1},
		{"get", "a", DefaultMinVNI}, // same sandbox, same VNI
		{"release", "a", 0},
		{"get", "c", DefaultMinVNI}, // the lowest free one
		{"get", "d", DefaultMinVNI + 2},
	}
	for _, s := range steps {
		switch s.op {
		case "get":
			got, err := v.Get(s.id)
			if err != nil || got != s.want {
				t.Fatalf("Get(%s) = %d, %v; want %d", s.id, got, err, s.want)
			}
		case "release":
			if err := v.Release(s.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A restart sees the live allocations and never hands them out again.
	v2, err := OpenVNIs(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v2.InUse(), []uint32{DefaultMinVNI, DefaultMinVNI + 1, DefaultMinVNI + 2}; !slices.Equal(got, want) {
		t.Fatalf("after reopen InUse = %v, want %v", got, want)
	}
	if n, _ := v2.Get("e"); n != DefaultMinVNI+3 {
		t.Fatalf("new VNI after reopen = %d, want %d", n, DefaultMinVNI+3)
	}
}

func TestVNIsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		min  uint32
	}{
		{"corrupt file", bad, 0},
		{"VNI beyond 24 bits", filepath.Join(dir, "x.json"), 1 << 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenVNIs(tc.path, tc.min); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Mode: ModeTunnel, Interface: Interface{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1500}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"good", func(*Config) {}, true},
		{"bad mode", func(c *Config) { c.Mode = "gre" }, false},
		{"vxlan without vni", func(c *Config) { c.Mode = ModeVXLAN; c.VXLAN = &VXLAN{Remote: "10.0.0.1", Port: 4789} }, false},
		{"vxlan", func(c *Config) { c.Mode = ModeVXLAN; c.VXLAN = &VXLAN{Remote: "10.0.0.1", Port: 4789, VNI: 7} }, true},
		{"long name", func(c *Config) { c.Interface.Name = "abcdefghijklmnop" }, false},
		{"tiny MTU", func(c *Config) { c.Interface.MTU = 10 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
