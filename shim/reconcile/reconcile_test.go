package reconcile

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/provider"
)

// memProvider is an in-memory provider.Provider for reconciler tests.
type memProvider struct {
	mu      sync.Mutex
	vms     map[string]provider.Instance
	deletes []string
	failDel error
}

func (p *memProvider) Name() string                   { return "mem" }
func (p *memProvider) Validate(context.Context) error { return nil }
func (p *memProvider) Create(_ context.Context, r provider.CreateRequest) (*provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	vm := provider.Instance{ID: "id-" + r.Name, Name: r.Name, Tags: r.Tags}
	p.vms[vm.ID] = vm
	return &vm, nil
}
func (p *memProvider) Delete(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failDel != nil {
		return p.failDel
	}
	p.deletes = append(p.deletes, id)
	delete(p.vms, id)
	return nil
}
func (p *memProvider) List(_ context.Context, tags map[string]string) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Instance
	for _, vm := range p.vms {
		if provider.Matches(vm.Tags, tags) {
			out = append(out, vm)
		}
	}
	return out, nil
}

func TestPassDeletesOnlyOrphansAfterGrace(t *testing.T) {
	ctx := context.Background()
	p := &memProvider{vms: map[string]provider.Instance{}}
	mine := provider.NodeSelector("c1", "node-a")
	mk := func(name, sandbox, node string) {
		p.Create(ctx, provider.CreateRequest{Name: name, Tags: provider.Tags(provider.Owner{ClusterID: "c1", Node: node, SandboxID: sandbox}, nil)})
	}
	mk("owned", "s-owned", "node-a")
	mk("orphan", "s-gone", "node-a")
	mk("other-node", "s-x", "node-b")
	owned := map[string]bool{"s-owned": true}
	now := time.Unix(1000, 0)
	var deleted []string
	r, err := New(p, OwnersFunc(func(vm provider.Instance) bool { return owned[vm.Tags[provider.TagSandbox]] }), Options{
		Selector: mine, Grace: time.Minute, Now: func() time.Time { return now },
		OnDelete: func(vm provider.Instance) { deleted = append(deleted, vm.Name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	// First pass: the orphan is seen, but within grace.
	if got, err := r.Pass(ctx); err != nil || len(got) != 0 {
		t.Fatalf("pass 1 deleted %v, %v", got, err)
	}
	now = now.Add(59 * time.Second)
	if got, _ := r.Pass(ctx); len(got) != 0 {
		t.Fatalf("deleted before grace: %v", got)
	}
	now = now.Add(time.Second)
	got, err := r.Pass(ctx)
	if err != nil || len(got) != 1 || got[0].Name != "orphan" {
		t.Fatalf("pass 3 deleted %v, %v", got, err)
	}
	if len(deleted) != 1 || deleted[0] != "orphan" {
		t.Fatalf("OnDelete saw %v", deleted)
	}
	if _, ok := p.vms["id-owned"]; !ok {
		t.Fatal("owned VM deleted")
	}
	if _, ok := p.vms["id-other-node"]; !ok {
		t.Fatal("another node's VM deleted")
	}
}

// A VM that becomes owned again (or is owned at deletion time) restarts its grace.
func TestOwnershipResetsGrace(t *testing.T) {
	ctx := context.Background()
	p := &memProvider{vms: map[string]provider.Instance{}}
	p.Create(ctx, provider.CreateRequest{Name: "vm", Tags: provider.Tags(provider.Owner{Node: "n", SandboxID: "s"}, nil)})
	owned := false
	now := time.Unix(0, 0)
	r, _ := New(p, OwnersFunc(func(provider.Instance) bool { return owned }), Options{Selector: provider.NodeSelector("", "n"), Grace: time.Minute, Now: func() time.Time { return now }})
	r.Pass(ctx)
	now = now.Add(30 * time.Second)
	owned = true
	r.Pass(ctx)
	owned = false
	now = now.Add(40 * time.Second)
	if got, _ := r.Pass(ctx); len(got) != 0 {
		t.Fatalf("grace not restarted: deleted %v", got)
	}
	now = now.Add(time.Minute)
	if got, _ := r.Pass(ctx); len(got) != 1 {
		t.Fatalf("not deleted after a full grace: %v", got)
	}
}

func TestDeleteFailureReported(t *testing.T) {
	ctx := context.Background()
	p := &memProvider{vms: map[string]provider.Instance{}, failDel: provider.Errorf(provider.ErrThrottled, "429")}
	p.Create(ctx, provider.CreateRequest{Name: "vm", Tags: provider.Tags(provider.Owner{Node: "n"}, nil)})
	now := time.Unix(0, 0)
	var ops []string
	r, _ := New(p, OwnersFunc(func(provider.Instance) bool { return false }), Options{
		Selector: provider.NodeSelector("", "n"), Grace: time.Second, Now: func() time.Time { return now },
		OnError: func(op string, err error) { ops = append(ops, op) },
	})
	r.Pass(ctx)
	now = now.Add(time.Hour)
	_, err := r.Pass(ctx)
	if err == nil || !errors.Is(err, provider.ErrThrottled) || len(ops) != 1 || ops[0] != "delete" {
		t.Fatalf("err = %v ops = %v", err, ops)
	}
}

func TestNewRefusesEmptySelector(t *testing.T) {
	if _, err := New(&memProvider{}, OwnersFunc(func(provider.Instance) bool { return true }), Options{Grace: time.Second}); err == nil {
		t.Fatal("empty selector accepted")
	}
}
