package providertest

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"testing"

	"github.com/peerpod/peerpod/provider"
)

// memProvider is the smallest provider that satisfies the suite; it keeps
// the suite honest about what it demands.
type memProvider struct {
	mu   sync.Mutex
	next int
	vms  map[string]provider.Instance
}

func (m *memProvider) Name() string                   { return "memory" }
func (m *memProvider) Validate(context.Context) error { return nil }

func (m *memProvider) Create(_ context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	if req.Name == "" {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "empty VM name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, vm := range m.vms {
		if vm.Name == req.Name {
			return &vm, nil
		}
	}
	m.next++
	vm := provider.Instance{
		ID:   fmt.Sprintf("vm-%d", m.next),
		Name: req.Name,
		IPs:  []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(m.next >> 8), byte(m.next)})},
		Tags: maps.Clone(req.Tags),
	}
	m.vms[vm.ID] = vm
	return &vm, nil
}

func (m *memProvider) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.vms, id)
	return nil
}

func (m *memProvider) List(_ context.Context, tags map[string]string) ([]provider.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []provider.Instance
	for _, vm := range m.vms {
		if provider.Matches(vm.Tags, tags) {
			out = append(out, vm)
		}
	}
	return out, nil
}

func TestSuiteOnMemoryProvider(t *testing.T) {
	shared := &memProvider{vms: map[string]provider.Instance{}}
	Run(t, func(t *testing.T) provider.Provider { return shared })
	if len(shared.vms) != 0 {
		t.Fatalf("suite left %d VMs", len(shared.vms))
	}
}
