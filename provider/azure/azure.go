// Package azure is the Azure provider: each pod VM is a confidential VM
// (SEV-SNP or TDX) made through Azure Resource Manager with its own NIC.
package azure

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/peerpod/peerpod/provider"
)

// Name is the CLOUD_PROVIDER value of this provider.
const Name = "azure"

// DefaultPollInterval is how often a long-running ARM operation is polled
// when Azure gives no Retry-After.
const DefaultPollInterval = 2 * time.Second

// DefaultCleanupTimeout bounds the removal of what a failed create made.
const DefaultCleanupTimeout = 5 * time.Minute

// Provider makes pod VMs on Azure. It implements provider.Provider and
// provider.InstanceTypeLister and is safe for concurrent use.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	poll    time.Duration
	cleanup time.Duration
	sshKey  string

	vms     *armcompute.VirtualMachinesClient
	disks   *armcompute.DisksClient
	sizes   *armcompute.VirtualMachineSizesClient
	nics    *armnetwork.InterfacesClient
	ips     *armnetwork.PublicIPAddressesClient
	subnets *armnetwork.SubnetsClient

	mu       sync.Mutex
	inflight map[string]*call // creates in progress, by VM name
}

var (
	_ provider.Provider           = (*Provider)(nil)
	_ provider.InstanceTypeLister = (*Provider)(nil)
)

// call is one create in progress; concurrent creates of the same name share it.
type call struct {
	done chan struct{}
	inst *provider.Instance
	err  error
}

type options struct {
	client  *arm.ClientOptions
	cred    azcore.TokenCredential
	log     *slog.Logger
	poll    time.Duration
	cleanup time.Duration
	sshKey  string
}

// Option adjusts New.
type Option func(*options)

// WithClientOptions sets the ARM client options (transport, retry, cloud).
// Tests pass the SDK's fake server transports here.
func WithClientOptions(o *arm.ClientOptions) Option { return func(x *options) { x.client = o } }

// WithCredential sets the credential instead of azidentity's DefaultAzureCredential.
func WithCredential(c azcore.TokenCredential) Option { return func(x *options) { x.cred = c } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(x *options) { x.log = l } }

// WithPollInterval sets how often long-running operations are polled when
// Azure sends no Retry-After (default DefaultPollInterval).
func WithPollInterval(d time.Duration) Option { return func(x *options) { x.poll = d } }

// WithCleanupTimeout bounds the removal of a failed create's resources
// (default DefaultCleanupTimeout).
func WithCleanupTimeout(d time.Duration) Option { return func(x *options) { x.cleanup = d } }

// WithSSHPublicKey sets the OpenSSH public key put on each VM. Azure
// requires one on a Linux VM; by default a fresh RSA key is made whose
// private half is discarded, so nobody can log in.
func WithSSHPublicKey(k string) Option { return func(x *options) { x.sshKey = k } }

// New makes a provider for cfg. Without WithCredential it uses
// azidentity.DefaultAzureCredential (environment, workload identity,
// managed identity). It makes no cloud call; Validate does.
func New(ctx context.Context, cfg *Config, opts ...Option) (*Provider, error) {
	if cfg == nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "azure: no configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{poll: DefaultPollInterval, cleanup: DefaultCleanupTimeout, log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	clientOpts := &arm.ClientOptions{}
	if o.client != nil {
		c := *o.client
		clientOpts = &c
	}
	// Throttling is not retried inside the SDK: the 429 and its Retry-After
	// go to the caller as ErrThrottled, which owns the backoff and deadline.
	if clientOpts.Retry.StatusCodes == nil {
		clientOpts.Retry.StatusCodes = []int{http.StatusRequestTimeout, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	}
	cred := o.cred
	if cred == nil {
		c, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: clientOpts.ClientOptions})
		if err != nil {
			return nil, provider.Errorf(provider.ErrInvalidConfig, "azure: credentials: %v", err)
		}
		cred = c
	}
	compute, err := armcompute.NewClientFactory(cfg.SubscriptionID, cred, clientOpts)
	if err != nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "azure: compute client: %v", err)
	}
	network, err := armnetwork.NewClientFactory(cfg.SubscriptionID, cred, clientOpts)
	if err != nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "azure: network client: %v", err)
	}
	key := o.sshKey
	if key == "" {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("azure: make SSH key: %w", err)
		}
		key = authorizedKey(&k.PublicKey)
	}
	return &Provider{
		cfg:      *cfg,
		log:      o.log.With("provider", Name),
		poll:     o.poll,
		cleanup:  o.cleanup,
		sshKey:   key,
		vms:      compute.NewVirtualMachinesClient(),
		disks:    compute.NewDisksClient(),
		sizes:    compute.NewVirtualMachineSizesClient(),
		nics:     network.NewInterfacesClient(),
		ips:      network.NewPublicIPAddressesClient(),
		subnets:  network.NewSubnetsClient(),
		inflight: map[string]*call{},
	}, nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return Name }

// Config returns a copy of the provider's configuration.
func (p *Provider) Config() Config { return p.cfg }

// Validate checks the configuration, that the credentials work, that the
// subnet exists and that the configured sizes are offered in the region.
func (p *Provider) Validate(ctx context.Context) error {
	if err := p.cfg.Validate(); err != nil {
		return err
	}
	sub, _ := arm.ParseResourceID(p.cfg.SubnetID)
	if _, err := p.subnets.Get(ctx, sub.ResourceGroupName, sub.Parent.Name, sub.Name, nil); err != nil {
		err = classify("get subnet", err)
		if errors.Is(err, provider.ErrNotFound) {
			return invalid("AZURE_SUBNET_ID", "subnet %s does not exist: %v", p.cfg.SubnetID, err)
		}
		return fmt.Errorf("AZURE_SUBNET_ID: %w", err)
	}
	types, err := p.InstanceTypes(ctx)
	if err != nil {
		return err
	}
	offered := make(map[string]bool, len(types))
	for _, t := range types {
		offered[strings.ToLower(t.Name)] = true
	}
	if !offered[strings.ToLower(p.cfg.InstanceSize)] {
		return invalid("AZURE_INSTANCE_SIZE", "%s is not offered in region %s", p.cfg.InstanceSize, p.cfg.Region)
	}
	for _, s := range p.cfg.InstanceSizes {
		if !offered[strings.ToLower(s)] {
			return invalid("AZURE_INSTANCE_SIZES", "%s is not offered in region %s", s, p.cfg.Region)
		}
	}
	return nil
}

// InstanceTypes lists the VM sizes of the configured region. Azure's size
// list gives cores and memory but no GPU count, so GPUs is always 0.
func (p *Provider) InstanceTypes(ctx context.Context) ([]provider.InstanceType, error) {
	var out []provider.InstanceType
	pager := p.sizes.NewListPager(p.cfg.Region, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, classify("list VM sizes in "+p.cfg.Region, err)
		}
		for _, s := range page.Value {
			if s == nil || s.Name == nil {
				continue
			}
			t := provider.InstanceType{Name: *s.Name}
			if s.NumberOfCores != nil {
				t.VCPUs = int64(*s.NumberOfCores)
			}
			if s.MemoryInMB != nil {
				t.MemoryMiB = int64(*s.MemoryInMB)
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// Resource names derived from the VM name, so a retried create or a delete
// finds them without any state.
func nicName(vm string) string  { return vm + "-nic" }
func ipName(vm string) string   { return vm + "-ip" }
func diskName(vm string) string { return vm + "-osdisk" }
