package sandbox_test

import (
	"context"

	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/api/userdata"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/annotations"
	"github.com/peerpod/peerpod/shim/reconcile"
	"github.com/peerpod/peerpod/shim/sandbox"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
)

// warmAnnotations are a pod's CreateVM annotations without a size: the
// provider's default, which warm VMs have.
func warmAnnotations(pod string) map[string]string {
	a := kataAnnotations(pod)
	a[annotations.DefaultVCPUs], a[annotations.DefaultMemory] = "", ""
	return a
}

// waitVMs waits until the provider's VMs satisfy ok.
func waitVMs(t *testing.T, e *env, what string, ok func([]sandboxtest.VM) bool) []sandboxtest.VM {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		vms := e.prov.VMs()
		if ok(vms) {
			return vms
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: VMs now %+v", what, vms)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func warmVMs(vms []sandboxtest.VM) (warm []sandboxtest.VM) {
	for _, vm := range vms {
		if vm.UserData.Warm {
			warm = append(warm, vm)
		}
	}
	return warm
}

func TestWarmPoolServesAndRefills(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) { o.WarmPoolSize = 1 })
	m.StartWarmPool()
	ctx := ctxT(t, time.Minute)
	vms := waitVMs(t, e, "one warm VM", func(v []sandboxtest.VM) bool { return len(warmVMs(v)) == 1 })
	warm := vms[0]
	if !strings.HasPrefix(warm.Name, "podvm-warm-") || warm.Tags[provider.TagWarm] != "true" ||
		warm.Tags[provider.TagNode] != "node-a" || warm.Tags[provider.TagSandbox] != "" || warm.UserData.Initdata != "" {
		t.Fatalf("warm VM %+v, user data %+v", warm.Instance, warm.UserData)
	}
	if !m.Owns(warm.Instance) {
		t.Fatal("the manager does not own its warm VM: the reconciler would delete it")
	}

	id := "0123456789abcdef0123456789abcdef"
	toml, err := initdata.Marshal("sha256", map[string]string{"aa.toml": "x = 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	a := warmAnnotations("nginx")
	a[annotations.Initdata] = string(toml)
	path, err := m.CreateVM(ctx, id, a, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.StartVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := healthCheck(ctx, path); err != nil {
		t.Fatalf("Health.Check through the agent socket: %v", err)
	}
	st := m.Status()
	if len(st) != 1 || st[0].VMID != warm.ID || st[0].VMName != warm.Name {
		t.Fatalf("the sandbox did not take the warm VM %s: status %+v", warm.ID, st)
	}
	// The VM now serves the sandbox, with its initdata and secrets.
	vms = waitVMs(t, e, "a replacement warm VM", func(v []sandboxtest.VM) bool { return len(v) == 2 && len(warmVMs(v)) == 1 })
	var taken sandboxtest.VM
	for _, vm := range vms {
		if vm.ID == warm.ID {
			taken = vm
		}
	}
	if taken.UserData == nil || taken.UserData.SandboxID != id || taken.UserData.Initdata != string(toml) || taken.Secrets == nil {
		t.Fatalf("taken VM: user data %+v, secrets %+v", taken.UserData, taken.Secrets)
	}
	for _, vm := range vms {
		if !m.Owns(vm.Instance) {
			t.Fatalf("VM %s (%s) not owned", vm.Name, vm.ID)
		}
	}
	if err := m.StopVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	vms = e.prov.VMs()
	if len(vms) != 1 || vms[0].ID == warm.ID || !vms[0].UserData.Warm {
		t.Fatalf("after StopVM: %+v", vms)
	}
	if creates, _ := e.prov.Counts(); creates != 2 {
		t.Fatalf("%d creates, want 2 (the warm VM and its replacement)", creates)
	}
	m.Close()
	if vms := e.prov.VMs(); len(vms) != 0 {
		t.Fatalf("warm VMs left after Close: %+v", vms)
	}
}

func TestWarmPoolUnfitPodBootsItsOwn(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) { o.WarmPoolSize = 1 })
	m.StartWarmPool()
	ctx := ctxT(t, time.Minute)
	waitVMs(t, e, "one warm VM", func(v []sandboxtest.VM) bool { return len(warmVMs(v)) == 1 })
	id := "1123456789abcdef0123456789abcdef"
	if _, err := m.CreateVM(ctx, id, kataAnnotations("big"), ""); err != nil { // 1 vCPU, 2048 MiB
		t.Fatal(err)
	}
	if err := m.StartVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st[0].VMName != "podvm-big-11234567" {
		t.Fatalf("a pod of another size took VM %s", st[0].VMName)
	}
	if n := len(warmVMs(e.prov.VMs())); n != 1 {
		t.Fatalf("%d warm VMs, want the one still waiting", n)
	}
}

func TestWarmVMRefusalFallsBackToBoot(t *testing.T) {
	e := newEnv(t)
	e.prov.SetFaults(sandboxtest.Faults{RefuseProvision: true})
	m := e.manager(t, func(o *sandbox.Options) { o.WarmPoolSize = 1 })
	m.StartWarmPool()
	ctx := ctxT(t, time.Minute)
	warm := waitVMs(t, e, "one warm VM", func(v []sandboxtest.VM) bool { return len(warmVMs(v)) == 1 })[0]
	e.prov.SetFaults(sandboxtest.Faults{RefuseProvision: true})
	id := "2123456789abcdef0123456789abcdef"
	path, err := m.CreateVM(ctx, id, warmAnnotations("web"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.StartVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := healthCheck(ctx, path); err != nil {
		t.Fatal(err)
	}
	st := m.Status()
	if st[0].VMName != "podvm-web-21234567" {
		t.Fatalf("sandbox on VM %s, want a new one", st[0].VMName)
	}
	for _, vm := range e.prov.VMs() {
		if vm.ID == warm.ID {
			t.Fatalf("the warm VM that refused the sandbox is still there: %+v", vm.Instance)
		}
	}
}

func TestWarmPoolCleansUpAfterEarlierRun(t *testing.T) {
	e := newEnv(t)
	// A warm VM an earlier peerpodd left behind, and one of another node.
	mk := func(name, node string) *provider.Instance {
		t.Helper()
		tags := provider.Tags(provider.Owner{ClusterID: "c1", Node: node}, nil)
		tags[provider.TagWarm] = "true"
		ud := warmUserData(t, e)
		inst, err := e.prov.Create(context.Background(), provider.CreateRequest{Name: name, Tags: tags, UserData: ud})
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	left := mk("podvm-warm-left", "node-a")
	other := mk("podvm-warm-other", "node-b")
	m := e.manager(t, func(o *sandbox.Options) { o.WarmPoolSize = 1 })
	m.StartWarmPool()
	waitVMs(t, e, "the leftover deleted and a new warm VM", func(v []sandboxtest.VM) bool {
		names := map[string]bool{}
		for _, vm := range v {
			names[vm.Name] = true
		}
		return len(v) == 2 && !names[left.Name] && names[other.Name]
	})
}

func warmUserData(t *testing.T, e *env) []byte {
	t.Helper()
	b, err := userdata.Encode(&userdata.Config{Version: userdata.Version, Warm: true, ListenPort: e.prov.Port,
		TunnelCA: string(e.ca.CertPEM()), Attester: userdata.AttesterFake})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The reconciler deletes VMs no sandbox owns: warm VMs, in the pool or
// taken by a sandbox, are owned; a warm VM nobody keeps is not.
func TestReconcilerAndWarmVMs(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, func(o *sandbox.Options) { o.WarmPoolSize = 1 })
	m.StartWarmPool()
	ctx := ctxT(t, time.Minute)
	waitVMs(t, e, "one warm VM", func(v []sandboxtest.VM) bool { return len(warmVMs(v)) == 1 })
	id := "3123456789abcdef0123456789abcdef"
	if _, err := m.CreateVM(ctx, id, warmAnnotations("web"), ""); err != nil {
		t.Fatal(err)
	}
	if err := m.StartVM(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitVMs(t, e, "the taken VM and a replacement", func(v []sandboxtest.VM) bool { return len(v) == 2 })
	// A warm VM of this node that neither the pool nor a sandbox keeps.
	tags := provider.Tags(provider.Owner{ClusterID: "c1", Node: "node-a"}, nil)
	tags[provider.TagWarm] = "true"
	stray, err := e.prov.Create(ctx, provider.CreateRequest{Name: "podvm-warm-stray", SandboxID: "podvm-warm-stray", Tags: tags, UserData: warmUserData(t, e)})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reconcile.New(e.prov, m, reconcile.Options{Selector: m.Selector(), Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	orphans, err := rec.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || orphans[0].ID != stray.ID {
		t.Fatalf("orphans %+v, want only the stray warm VM %s", orphans, stray.ID)
	}
}
