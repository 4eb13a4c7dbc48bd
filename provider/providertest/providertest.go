// Package providertest is the conformance suite every provider's tests run:
// the behaviour peerpodd relies on, checked the same way for every cloud.
package providertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
)

// Options adjust the suite to a provider.
type Options struct {
	// InstanceTypes are passed in every CreateRequest (nil for providers without types).
	InstanceTypes []string
	// Resources are passed in every CreateRequest (default 1 vCPU, 256 MiB).
	Resources provider.Resources
	// Timeout bounds each step (default 2 minutes).
	Timeout time.Duration
	// Parallel is how many VMs the concurrency step creates at once (default 3; negative skips the step).
	Parallel int
	// NoIPs is set by providers whose VMs may legitimately report no address right after create.
	NoIPs bool
}

// Run runs the suite with default options.
func Run(t *testing.T, newProvider func(t *testing.T) provider.Provider) {
	t.Helper()
	RunWith(t, newProvider, Options{})
}

// RunWith runs the suite. newProvider is called once per subtest and must
// return a provider on an empty (or unrelated) cloud state it may share.
func RunWith(t *testing.T, newProvider func(t *testing.T) provider.Provider, opts Options) {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Resources == (provider.Resources{}) {
		opts.Resources = provider.Resources{VCPUs: 1, MemoryMiB: 256}
	}
	if opts.Parallel == 0 {
		opts.Parallel = 3
	}
	s := suite{opts: opts, newProvider: newProvider}
	t.Run("Validate", s.validate)
	t.Run("Lifecycle", s.lifecycle)
	t.Run("IdempotentCreate", s.idempotentCreate)
	t.Run("ListFilters", s.listFilters)
	t.Run("DeleteTwice", s.deleteTwice)
	t.Run("InvalidRequest", s.invalidRequest)
	if opts.Parallel > 0 {
		t.Run("Parallel", s.parallel)
	}
}

type suite struct {
	opts        Options
	newProvider func(t *testing.T) provider.Provider
}

func (s suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// request builds a CreateRequest for a fresh sandbox owned by node.
func (s suite) request(t *testing.T, node string) provider.CreateRequest {
	t.Helper()
	sid := randomHex(t, 16)
	name, err := provider.VMName("conformance", sid)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := userdata.Encode(&userdata.Config{
		Version:   userdata.Version,
		SandboxID: sid,
		VMName:    name,
		TunnelCA:  "-----BEGIN CERTIFICATE-----\nconformance\n-----END CERTIFICATE-----\n",
		Attester:  userdata.AttesterFake,
	})
	if err != nil {
		t.Fatal(err)
	}
	return provider.CreateRequest{
		Name:      name,
		SandboxID: sid,
		Tags: provider.Tags(provider.Owner{
			ClusterID: "conformance", Node: node, SandboxID: sid,
			PodNamespace: "default", PodName: "conformance", PodUID: randomHex(t, 8),
		}, map[string]string{"suite": "conformance"}),
		UserData:      ud,
		InstanceTypes: s.opts.InstanceTypes,
		Resources:     s.opts.Resources,
	}
}

// create makes a VM and registers its deletion.
func (s suite) create(t *testing.T, p provider.Provider, req provider.CreateRequest) *provider.Instance {
	t.Helper()
	inst, err := p.Create(s.ctx(t), req)
	if err != nil {
		t.Fatalf("Create %s: %v", req.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		defer cancel()
		if err := p.Delete(ctx, inst.ID); err != nil {
			t.Errorf("cleanup: Delete %s: %v", inst.ID, err)
		}
	})
	if inst.ID == "" {
		t.Fatalf("Create %s returned an empty ID", req.Name)
	}
	if inst.Name != req.Name {
		t.Fatalf("Create returned name %q, want %q", inst.Name, req.Name)
	}
	if !s.opts.NoIPs && len(inst.IPs) == 0 {
		t.Fatalf("Create %s returned no IP address", req.Name)
	}
	return inst
}

func (s suite) list(t *testing.T, p provider.Provider, tags map[string]string) []provider.Instance {
	t.Helper()
	got, err := p.List(s.ctx(t), tags)
	if err != nil {
		t.Fatalf("List %s: %v", provider.FormatTags(tags), err)
	}
	return got
}

func ids(insts []provider.Instance) []string {
	out := make([]string, len(insts))
	for i, in := range insts {
		out[i] = in.ID
	}
	return out
}

func (s suite) validate(t *testing.T) {
	p := s.newProvider(t)
	if err := p.Validate(s.ctx(t)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if p.Name() == "" {
		t.Fatal("Name is empty")
	}
}

func (s suite) lifecycle(t *testing.T) {
	p := s.newProvider(t)
	node := "node-" + randomHex(t, 4)
	req := s.request(t, node)
	inst := s.create(t, p, req)

	found := s.list(t, p, map[string]string{provider.TagSandbox: req.SandboxID})
	if len(found) != 1 || found[0].ID != inst.ID {
		t.Fatalf("List by sandbox tag = %v, want [%s]", ids(found), inst.ID)
	}
	if !provider.Matches(found[0].Tags, req.Tags) {
		t.Fatalf("listed tags %s lack requested %s", provider.FormatTags(found[0].Tags), provider.FormatTags(req.Tags))
	}
	if found[0].Name != req.Name {
		t.Fatalf("listed name %q, want %q", found[0].Name, req.Name)
	}
	byNode := s.list(t, p, provider.NodeSelector("conformance", node))
	if len(byNode) != 1 || byNode[0].ID != inst.ID {
		t.Fatalf("List by node = %v, want [%s]", ids(byNode), inst.ID)
	}
	if err := p.Delete(s.ctx(t), inst.ID); err != nil {
		t.Fatalf("Delete %s: %v", inst.ID, err)
	}
	if left := s.list(t, p, map[string]string{provider.TagSandbox: req.SandboxID}); len(left) != 0 {
		t.Fatalf("after Delete, List still finds %v", ids(left))
	}
}

func (s suite) idempotentCreate(t *testing.T) {
	p := s.newProvider(t)
	req := s.request(t, "node-"+randomHex(t, 4))
	first := s.create(t, p, req)
	second, err := p.Create(s.ctx(t), req)
	if err != nil {
		t.Fatalf("second Create of %s: %v", req.Name, err)
	}
	if second.ID != first.ID {
		t.Fatalf("second Create of %s made %s, first made %s", req.Name, second.ID, first.ID)
	}
	if found := s.list(t, p, map[string]string{provider.TagSandbox: req.SandboxID}); len(found) != 1 {
		t.Fatalf("after two Creates of one name, List finds %v", ids(found))
	}
}

func (s suite) listFilters(t *testing.T) {
	p := s.newProvider(t)
	node := "node-" + randomHex(t, 4)
	a := s.create(t, p, s.request(t, node))
	b := s.create(t, p, s.request(t, node))
	got := s.list(t, p, provider.NodeSelector("conformance", node))
	if len(got) != 2 {
		t.Fatalf("List by node = %v, want %s and %s", ids(got), a.ID, b.ID)
	}
	if other := s.list(t, p, provider.NodeSelector("conformance", node+"-other")); len(other) != 0 {
		t.Fatalf("List for another node finds %v", ids(other))
	}
	if none := s.list(t, p, map[string]string{provider.TagSandbox: a.Tags[provider.TagSandbox] + "x", provider.TagNode: node}); len(none) != 0 {
		t.Fatalf("List with a non-matching value finds %v", ids(none))
	}
}

func (s suite) deleteTwice(t *testing.T) {
	p := s.newProvider(t)
	req := s.request(t, "node-"+randomHex(t, 4))
	inst, err := p.Create(s.ctx(t), req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := p.Delete(s.ctx(t), inst.ID); err != nil {
			t.Fatalf("Delete #%d of %s: %v", i+1, inst.ID, err)
		}
	}
}

func (s suite) invalidRequest(t *testing.T) {
	p := s.newProvider(t)
	req := s.request(t, "node-"+randomHex(t, 4))
	req.Name = ""
	inst, err := p.Create(s.ctx(t), req)
	if err == nil {
		_ = p.Delete(s.ctx(t), inst.ID)
		t.Fatal("Create with an empty name succeeded")
	}
	if !errors.Is(err, provider.ErrInvalidConfig) {
		t.Fatalf("Create with an empty name: %v, want class %v", err, provider.ErrInvalidConfig)
	}
	if left := s.list(t, p, map[string]string{provider.TagSandbox: req.SandboxID}); len(left) != 0 {
		t.Fatalf("a refused Create left %v", ids(left))
	}
}

func (s suite) parallel(t *testing.T) {
	p := s.newProvider(t)
	node := "node-" + randomHex(t, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	errs := make(chan error, s.opts.Parallel)
	for i := 0; i < s.opts.Parallel; i++ {
		req := s.request(t, node)
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst, err := p.Create(s.ctx(t), req)
			if err != nil {
				errs <- fmt.Errorf("create %s: %w", req.Name, err)
				return
			}
			mu.Lock()
			seen[inst.ID] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for id := range seen {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
			if err := p.Delete(ctx, id); err != nil {
				t.Errorf("cleanup: Delete %s: %v", id, err)
			}
			cancel()
		}
	})
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != s.opts.Parallel {
		t.Fatalf("%d parallel creates made %d distinct VMs", s.opts.Parallel, len(seen))
	}
	if got := s.list(t, p, provider.NodeSelector("conformance", node)); len(got) != s.opts.Parallel {
		t.Fatalf("List after parallel creates = %v", ids(got))
	}
}
