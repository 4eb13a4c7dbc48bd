package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
	"github.com/peerpod/peerpod/shim/tlsca"
)

// sized is a provider whose default size is 1 vCPU and 512 MiB.
type sized struct{ *sandboxtest.Provider }

func (sized) ResolveResources(r provider.Resources) provider.Resources {
	out := provider.Resources{VCPUs: 1, MemoryMiB: 512}
	if r.VCPUs > 0 {
		out.VCPUs = r.VCPUs
	}
	if r.MemoryMiB > 0 {
		out.MemoryMiB = r.MemoryMiB
	}
	return out
}

func newPool(t *testing.T, prov provider.Provider, port int, tweak func(*Options)) *Pool {
	t.Helper()
	ca, err := tlsca.LoadOrCreate(t.TempDir(), "pool-test")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Provider: prov, Size: 1, Port: port, NodeName: "node-a", ClusterID: "c1",
		UserData: func(name string) ([]byte, error) {
			return userdata.Encode(&userdata.Config{Version: userdata.Version, Warm: true, VMName: name, ListenPort: port,
				TunnelCA: string(ca.CertPEM()), Attester: userdata.AttesterFake})
		},
		RetryMin: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, p *Pool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFits(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	p := newPool(t, sized{prov}, prov.Port, nil)
	for name, tc := range map[string]struct {
		types []string
		res   provider.Resources
		image string
		want  bool
	}{
		"no size":          {nil, provider.Resources{}, "", true},
		"the default size": {nil, provider.Resources{VCPUs: 1, MemoryMiB: 512}, "", true},
		"more memory":      {nil, provider.Resources{VCPUs: 1, MemoryMiB: 2048}, "", false},
		"more vCPUs":       {nil, provider.Resources{VCPUs: 2}, "", false},
		"another image":    {nil, provider.Resources{}, "other.qcow2", false},
		"an instance type": {[]string{"Standard_DC2as_v5"}, provider.Resources{}, "", false},
	} {
		if got := p.Fits(tc.types, tc.res, tc.image); got != tc.want {
			t.Errorf("%s: Fits = %v, want %v", name, got, tc.want)
		}
	}
	// Without a Sizer only the very same request fits.
	plain := newPool(t, prov, prov.Port, nil)
	if plain.Fits(nil, provider.Resources{VCPUs: 1, MemoryMiB: 512}, "") || !plain.Fits(nil, provider.Resources{}, "") {
		t.Error("a provider without a Sizer: only the template's own resources fit")
	}
	off := newPool(t, prov, prov.Port, func(o *Options) { o.Size = 0 })
	if off.Fits(nil, provider.Resources{}, "") {
		t.Error("a pool of size 0 fits pods")
	}
}

func TestFillTakeRefillDrain(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	var booting, ready int
	changes := make(chan [2]int, 100)
	p := newPool(t, prov, prov.Port, func(o *Options) {
		o.Size = 2
		o.OnChange = func(b, r int) { changes <- [2]int{b, r} }
	})
	stop := run(t, p)
	waitFor(t, "two ready warm VMs", func() bool {
		for {
			select {
			case c := <-changes:
				booting, ready = c[0], c[1]
			default:
				return booting == 0 && ready == 2
			}
		}
	})
	for _, vm := range prov.VMs() {
		if vm.Tags[provider.TagWarm] != "true" || vm.Tags[provider.TagNode] != "node-a" || !vm.UserData.Warm || vm.UserData.VMName != vm.Name {
			t.Fatalf("warm VM %+v, user data %+v", vm.Instance, vm.UserData)
		}
		if !p.Owns(vm.Instance) {
			t.Fatalf("pool does not own %s", vm.Name)
		}
	}
	vm, ok := p.Take()
	if !ok || !vm.Ready || vm.Addr == "" {
		t.Fatalf("Take = %+v, %v", vm, ok)
	}
	if p.Owns(vm.Instance) {
		t.Fatal("the pool still owns a VM it handed out")
	}
	p.Handed(vm.ID)
	waitFor(t, "a replacement", func() bool { return len(prov.VMs()) == 3 })
	stop()
	vms := prov.VMs()
	if len(vms) != 1 || vms[0].ID != vm.ID {
		t.Fatalf("after the pool stopped: %+v, want only the taken VM %s", vms, vm.ID)
	}
	if _, ok := p.Take(); ok {
		t.Fatal("a stopped pool handed out a VM")
	}
}

func TestCreateFailuresBackOffAndLeaveNothing(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	prov.SetFaults(sandboxtest.Faults{CreateErrClean: provider.Classify(provider.ErrCapacity, errors.New("no capacity"))})
	p := newPool(t, prov, prov.Port, nil)
	run(t, p)
	time.Sleep(300 * time.Millisecond)
	creates, _ := prov.Counts()
	// 10, 20, 40, 40… ms pauses: well under one create per 10 ms.
	if creates < 2 || creates > 15 {
		t.Fatalf("%d creates in 300 ms with 10-40 ms backoff", creates)
	}
	if n := len(prov.VMs()); n != 0 {
		t.Fatalf("%d VMs after failed creates", n)
	}
	prov.SetFaults(sandboxtest.Faults{})
	waitFor(t, "the pool to fill once creates work", func() bool { return len(prov.VMs()) == 1 })
}

func TestVMThatNeverBootsIsReplaced(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	prov.SetFaults(sandboxtest.Faults{NoListener: true})
	p := newPool(t, prov, prov.Port, func(o *Options) { o.BootTimeout = 200 * time.Millisecond })
	run(t, p)
	waitFor(t, "a replaced VM", func() bool { _, deletes := prov.Counts(); return deletes >= 1 })
	if n := len(prov.VMs()); n > 1 {
		t.Fatalf("%d VMs for a pool of 1", n)
	}
}

func TestCleanupKeepsTakenVMs(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	// An earlier run that made two warm VMs, handed one to a sandbox and
	// crashed (no drain).
	first := newPool(t, prov, prov.Port, func(o *Options) { o.Size = 2 })
	for range 2 {
		if err := first.add(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	taken, _ := first.Take()
	second := newPool(t, prov, prov.Port, func(o *Options) {
		o.Taken = func(vm provider.Instance) bool { return vm.ID == taken.ID }
	})
	// Another node's warm VM is not ours to delete.
	other := provider.Tags(provider.Owner{ClusterID: "c1", Node: "node-b"}, nil)
	other[provider.TagWarm] = "true"
	ud, _ := second.opts.UserData("podvm-warm-other")
	if _, err := prov.Create(context.Background(), provider.CreateRequest{Name: "podvm-warm-other", Tags: other, UserData: ud}); err != nil {
		t.Fatal(err)
	}
	second.cleanup(context.Background())
	got := map[string]bool{}
	for _, vm := range prov.VMs() {
		got[vm.Name] = true
	}
	if len(got) != 2 || !got[taken.Name] || !got["podvm-warm-other"] {
		t.Fatalf("after cleanup: %v, want only %s (taken) and podvm-warm-other (another node's)", got, taken.Name)
	}
}

func TestNewRejects(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	for name, mod := range map[string]func(*Options){
		"negative size": func(o *Options) { o.Size = -1 },
		"no node":       func(o *Options) { o.NodeName = "" },
		"no user data":  func(o *Options) { o.UserData = nil },
		"no port":       func(o *Options) { o.Port = 0 },
		"no provider":   func(o *Options) { o.Provider = nil },
	} {
		o := Options{Provider: prov, Size: 1, Port: 1, NodeName: "n", UserData: func(string) ([]byte, error) { return nil, nil }}
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRefillWaitsForHandover(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	p := newPool(t, prov, prov.Port, nil)
	run(t, p)
	waitFor(t, "a warm VM", func() bool { return len(prov.VMs()) == 1 })
	vm, ok := p.Take()
	if !ok {
		t.Fatal("no VM to take")
	}
	time.Sleep(300 * time.Millisecond)
	if creates, _ := prov.Counts(); creates != 1 {
		t.Fatalf("%d creates while the taken VM was being handed over, want the replacement held back", creates)
	}
	p.Handed(vm.ID)
	waitFor(t, "the replacement after the handover", func() bool { c, _ := prov.Counts(); return c == 2 })
}

func TestDeadWarmVMIsReplaced(t *testing.T) {
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	p := newPool(t, prov, prov.Port, func(o *Options) { o.CheckInterval = 20 * time.Millisecond })
	run(t, p)
	waitFor(t, "a ready warm VM", func() bool { return p.Status().Ready == 1 })
	dead := prov.VMs()[0]
	// The VM's agent goes away (a crash in the guest); the domain stays.
	prov.Stop(dead.ID)
	waitFor(t, "the dead VM replaced", func() bool {
		vms := prov.VMs()
		return len(vms) == 1 && vms[0].ID != dead.ID
	})
	if p.Owns(dead.Instance) {
		t.Fatal("the pool still holds the dead VM")
	}
}
