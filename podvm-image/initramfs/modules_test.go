package initramfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kernelModules finds a module tree from a built image cache, or the running kernel's.
func kernelModules(t *testing.T) string {
	t.Helper()
	cands, _ := filepath.Glob("../../_output/podvm/cache/linux-image-*/modules")
	if un, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		cands = append(cands, "/lib/modules/"+strings.TrimSpace(string(un)))
	}
	for _, c := range cands {
		if _, err := os.Stat(filepath.Join(c, "kernel/drivers/net/virtio_net.ko")); err == nil {
			return c
		}
	}
	t.Skip("no kernel module tree with virtio_net.ko (make podvm-image fetches one)")
	return ""
}

func TestResolveModules(t *testing.T) {
	tree := kernelModules(t)
	mods, err := ResolveModules(tree, []string{"virtio_net", "virtio-pci"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		if _, dup := pos[m.Name]; dup {
			t.Fatalf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	for _, m := range mods {
		for _, d := range m.Depends {
			if pos[d] >= pos[m.Name] {
				t.Errorf("%s comes before its dependency %s", m.Name, d)
			}
		}
	}
	for _, want := range []string{"virtio_net", "virtio_pci", "net_failover"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("resolved %v lacks %s", mods, want)
		}
	}
	if _, err := ResolveModules(tree, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: %v", err)
	}
}

// TestModuleSets: a set's order file lists its modules, dependencies first,
// less those of the boot set; vxlan comes with its UDP tunnel dependencies.
func TestModuleSets(t *testing.T) {
	tree := kernelModules(t)
	boot, err := ResolveModules(tree, []string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	vx, err := ResolveModules(tree, []string{"vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	a := New(0)
	if err := a.AddModules(boot); err != nil {
		t.Fatal(err)
	}
	if err := a.AddModuleSet("vxlan", Without(vx, boot)); err != nil {
		t.Fatal(err)
	}
	order := strings.Fields(string(a.entries[ModulesDir+"/vxlan.order"].Data))
	if len(order) == 0 || order[len(order)-1] != "vxlan.ko" {
		t.Fatalf("vxlan.order = %v, want vxlan.ko last", order)
	}
	pos := map[string]int{}
	for i, f := range order {
		pos[f] = i
		if _, ok := a.entries[ModulesDir+"/"+f]; !ok {
			t.Errorf("vxlan.order names %s, not in the archive", f)
		}
	}
	for _, m := range vx {
		if _, ok := pos[m.Name+".ko"]; !ok {
			t.Errorf("vxlan.order lacks %s", m.Name)
		}
	}
	for _, bad := range []string{"", "a/b", "x.y", "load"} {
		if err := a.AddModuleSet(bad, vx); err == nil {
			t.Errorf("AddModuleSet(%q) succeeded", bad)
		}
	}
}
