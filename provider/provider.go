// Package provider defines how peerpodd asks a cloud (or libvirt) for pod VMs:
// the Provider interface, classified errors, and what every provider shares.
package provider

import (
	"context"
	"net/netip"
	"time"
)

// Provider creates, deletes and lists pod VMs on one cloud or hypervisor.
// Implementations must be safe for concurrent use.
type Provider interface {
	// Name is the CLOUD_PROVIDER value this provider answers to ("azure", "aws", "libvirt").
	Name() string
	// Validate checks the provider's configuration and credentials without
	// creating anything. Errors are classified ErrInvalidConfig where the
	// configuration is at fault and name the offending key.
	Validate(ctx context.Context) error
	// Create makes and boots one VM. It is idempotent on req.Name: a retried
	// create of the same name returns the VM the first call made instead of
	// making another. On error nothing the call made is left behind.
	Create(ctx context.Context, req CreateRequest) (*Instance, error)
	// Delete removes the VM with the given ID and every resource made for it.
	// A VM that is already gone is not an error.
	Delete(ctx context.Context, id string) error
	// List returns the VMs whose tags include every key/value in tags.
	List(ctx context.Context, tags map[string]string) ([]Instance, error)
}

// CreateRequest is everything a provider needs to make one pod VM.
type CreateRequest struct {
	// Name is the VM name (see VMName); unique per sandbox and stable across retries.
	Name string
	// SandboxID is the Kata sandbox id the VM belongs to; a warm VM, booted
	// before its sandbox exists, has its own Name here.
	SandboxID string
	// Tags are put on the VM and on every resource made for it (see Tags).
	Tags map[string]string
	// UserData is the encoded agent configuration (see api/userdata).
	UserData []byte
	// InstanceTypes are the instance types to try, best first; a provider
	// moves to the next one when the cloud reports ErrCapacity. Providers
	// without instance types (libvirt) ignore it.
	InstanceTypes []string
	// Resources are what the pod asked for (from the Kata annotations).
	Resources Resources
	// Image overrides the configured pod VM image when non-empty.
	Image string
}

// Resources are a pod VM's size as the Kata runtime's annotations give it.
type Resources struct {
	VCPUs     int64
	MemoryMiB int64
	GPUs      int64
}

// Instance is one pod VM as a provider reports it.
type Instance struct {
	// ID is the provider's identifier, passed back to Delete.
	ID string
	// Name is the VM name given at create.
	Name string
	// IPs are the VM's addresses, the one the tunnel dials first.
	IPs []netip.Addr
	// InstanceType is the type the VM was created with ("" where not applicable).
	InstanceType string
	// Tags are the VM's tags as stored by the provider.
	Tags map[string]string
	// Created is when the provider made the VM (zero if unknown).
	Created time.Time
}

// InstanceType describes one size a provider offers, for instance-type selection.
type InstanceType struct {
	Name      string
	VCPUs     int64
	MemoryMiB int64
	GPUs      int64
}

// Sizer is implemented by providers without instance types whose VM size
// follows Resources (libvirt): ResolveResources returns the size a Create
// with r would give, its zero fields replaced by the configured defaults.
type Sizer interface {
	ResolveResources(r Resources) Resources
}

// InstanceTypeLister is implemented by providers that can describe their
// instance types, so peerpodd can pick the smallest one that fits a pod.
type InstanceTypeLister interface {
	InstanceTypes(ctx context.Context) ([]InstanceType, error)
}
