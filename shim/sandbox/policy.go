package sandbox

import (
	"context"

	"github.com/peerpod/peerpod/provider"
)

// WithInstanceTypePolicy returns p with an instance-type policy (the allowed
// types and the default, from the provider's configuration) for providers
// that do not implement InstanceTypePolicy themselves. InstanceTypes is
// forwarded when p implements provider.InstanceTypeLister.
func WithInstanceTypePolicy(p provider.Provider, allow []string, def string) provider.Provider {
	return &policyProvider{Provider: p, allow: allow, def: def}
}

type policyProvider struct {
	provider.Provider
	allow []string
	def   string
}

// InstanceTypePolicy implements InstanceTypePolicy.
func (p *policyProvider) InstanceTypePolicy() ([]string, string) { return p.allow, p.def }

// InstanceTypes implements provider.InstanceTypeLister; nil when the
// wrapped provider cannot list its types.
func (p *policyProvider) InstanceTypes(ctx context.Context) ([]provider.InstanceType, error) {
	if l, ok := p.Provider.(provider.InstanceTypeLister); ok {
		return l.InstanceTypes(ctx)
	}
	return nil, nil
}
