package azure

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/peerpod/peerpod/provider"
)

// vmNameRE is what Azure accepts as a Linux VM name and what VMName makes.
var vmNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// plan is a validated create request.
type plan struct {
	name     string
	sizes    []string
	userData string
	image    *armcompute.ImageReference
	tags     map[string]*string
}

// Create makes the VM's public IP (if configured), its NIC and the VM,
// trying req.InstanceTypes in order while Azure reports no capacity. A
// retried create of the same name returns the VM already made. On failure
// everything the call made is deleted before it returns.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	pl, err := p.plan(req)
	if err != nil {
		return nil, err
	}
	// Concurrent creates of one name share a single attempt.
	p.mu.Lock()
	if c, ok := p.inflight[pl.name]; ok {
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.inst, c.err
		case <-ctx.Done():
			return nil, classify("create VM "+pl.name, ctx.Err())
		}
	}
	c := &call{done: make(chan struct{})}
	p.inflight[pl.name] = c
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.inflight, pl.name)
		p.mu.Unlock()
		close(c.done)
	}()
	c.inst, c.err = p.create(ctx, pl)
	return c.inst, c.err
}

// plan checks a request before any cloud call.
func (p *Provider) plan(req provider.CreateRequest) (*plan, error) {
	if !vmNameRE.MatchString(req.Name) {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM: name %q is not a valid Azure VM name (1-63 letters, digits and '-', not starting or ending with '-')", req.Name)
	}
	pl := &plan{name: req.Name, sizes: req.InstanceTypes}
	if len(pl.sizes) == 0 {
		pl.sizes = []string{p.cfg.InstanceSize}
	}
	for _, s := range pl.sizes {
		if !sizeRE.MatchString(s) {
			return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: %q is not a VM size name", req.Name, s)
		}
		if !p.cfg.allowed(s) {
			return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: size %s is neither AZURE_INSTANCE_SIZE nor in AZURE_INSTANCE_SIZES", req.Name, s)
		}
	}
	if n := base64.StdEncoding.EncodedLen(len(req.UserData)); n > MaxUserDataBytes {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: user data is %d bytes (%d base64), Azure allows at most %d base64 bytes", req.Name, len(req.UserData), n, MaxUserDataBytes)
	}
	pl.userData = base64.StdEncoding.EncodeToString(req.UserData)
	img := p.cfg.ImageID
	if req.Image != "" {
		img = req.Image
	}
	ref, err := imageReference(img)
	if err != nil {
		return nil, fmt.Errorf("create VM %s: %w", req.Name, err)
	}
	pl.image = ref
	if pl.tags, err = azureTags(p.cfg.Tags, req.Tags); err != nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: %v", req.Name, err)
	}
	return pl, nil
}

func (p *Provider) create(ctx context.Context, pl *plan) (*provider.Instance, error) {
	start := time.Now()
	log := p.log.With("vm", pl.name)
	// A VM of this name means an earlier attempt got that far: return it.
	got, err := p.vms.Get(ctx, p.cfg.ResourceGroup, pl.name, nil)
	switch err = classify("get VM "+pl.name, err); {
	case err == nil && !failed(got.VirtualMachine.Properties):
		log.Info("VM exists, reusing it")
		return p.existing(ctx, &got.VirtualMachine)
	case err == nil:
		log.Warn("VM exists in state Failed, replacing it")
		if err := p.remove(ctx, p.cfg.ResourceGroup, pl.name); err != nil {
			return nil, err
		}
	case !errors.Is(err, provider.ErrNotFound):
		return nil, err
	}

	inst, err := p.provision(ctx, pl)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cleanup)
		defer cancel()
		if cerr := p.remove(cctx, p.cfg.ResourceGroup, pl.name); cerr != nil {
			log.Error("failed create left resources behind", "err", cerr)
			return nil, fmt.Errorf("%w (cleanup: %v)", err, cerr)
		}
		log.Info("failed create cleaned up", "err", err)
		return nil, err
	}
	log.Info("VM created", "size", inst.InstanceType, "ips", inst.IPs, "took", time.Since(start).Round(time.Millisecond))
	return inst, nil
}

// provision makes the public IP, the NIC and the VM. A size that failed
// after Azure accepted it is deleted with its VM, and the VM takes its NIC
// and public IP with it (DeleteOption Delete), so they are made again
// before the next size.
func (p *Provider) provision(ctx context.Context, pl *plan) (*provider.Instance, error) {
	var (
		pip   *armnetwork.PublicIPAddress
		nic   *armnetwork.Interface
		tried []string
		last  error
	)
	for _, size := range pl.sizes {
		if nic == nil {
			var err error
			if p.cfg.PublicIP {
				if pip, err = p.createPublicIP(ctx, pl); err != nil {
					return nil, err
				}
			}
			if nic, err = p.createNIC(ctx, pl, pip); err != nil {
				return nil, err
			}
		}
		vm, removed, err := p.createVM(ctx, pl, size, *nic.ID)
		if err == nil {
			p.tagDisk(ctx, pl)
			return p.instance(vm, nic, pip), nil
		}
		tried = append(tried, size)
		last = err
		if !errors.Is(err, provider.ErrCapacity) {
			return nil, err
		}
		if removed {
			nic, pip = nil, nil
		}
		p.log.Warn("no capacity, trying the next size", "vm", pl.name, "size", size, "err", err)
	}
	return nil, provider.Errorf(provider.ErrCapacity, "create VM %s: no capacity for any of %s: %v", pl.name, strings.Join(tried, ", "), last)
}

func (p *Provider) createPublicIP(ctx context.Context, pl *plan) (*armnetwork.PublicIPAddress, error) {
	name := ipName(pl.name)
	ip := armnetwork.PublicIPAddress{
		Location: &p.cfg.Region,
		Tags:     pl.tags,
		SKU:      &armnetwork.PublicIPAddressSKU{Name: to.Ptr(armnetwork.PublicIPAddressSKUNameStandard)},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{
			PublicIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic),
			DeleteOption:             to.Ptr(armnetwork.DeleteOptionsDelete),
		},
	}
	if p.cfg.Zone != "" {
		ip.Zones = []*string{&p.cfg.Zone}
	}
	poller, err := p.ips.BeginCreateOrUpdate(ctx, p.cfg.ResourceGroup, name, ip, nil)
	if err != nil {
		return nil, classify("create public IP "+name, err)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return nil, classify("create public IP "+name, err)
	}
	return &res.PublicIPAddress, nil
}

func (p *Provider) createNIC(ctx context.Context, pl *plan, pip *armnetwork.PublicIPAddress) (*armnetwork.Interface, error) {
	name := nicName(pl.name)
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{
		Subnet:                    &armnetwork.Subnet{ID: &p.cfg.SubnetID},
		PrivateIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodDynamic),
		Primary:                   to.Ptr(true),
	}
	if pip != nil {
		ipc.PublicIPAddress = &armnetwork.PublicIPAddress{
			ID:         pip.ID,
			Properties: &armnetwork.PublicIPAddressPropertiesFormat{DeleteOption: to.Ptr(armnetwork.DeleteOptionsDelete)},
		}
	}
	nic := armnetwork.Interface{
		Location: &p.cfg.Region,
		Tags:     pl.tags,
		Properties: &armnetwork.InterfacePropertiesFormat{
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: to.Ptr("ipconfig1"), Properties: ipc}},
		},
	}
	if p.cfg.NSGID != "" {
		nic.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: &p.cfg.NSGID}
	}
	// The NIC's name is fixed, so a retried create updates the NIC an
	// earlier attempt made instead of adding another.
	poller, err := p.nics.BeginCreateOrUpdate(ctx, p.cfg.ResourceGroup, name, nic, nil)
	if err != nil {
		return nil, classify("create NIC "+name, err)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		return nil, classify("create NIC "+name, err)
	}
	if res.ID == nil {
		return nil, provider.Errorf(provider.ErrTransient, "create NIC %s: Azure returned no id", name)
	}
	return &res.Interface, nil
}

// vmSpec is the VM body: confidential profile unless DISABLECVM.
func (p *Provider) vmSpec(pl *plan, size, nicID string) armcompute.VirtualMachine {
	disk := &armcompute.OSDisk{
		Name:         to.Ptr(diskName(pl.name)),
		CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
		DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDelete),
		Caching:      to.Ptr(armcompute.CachingTypesReadWrite),
		ManagedDisk:  &armcompute.ManagedDiskParameters{StorageAccountType: to.Ptr(armcompute.StorageAccountTypesStandardSSDLRS)},
	}
	if p.cfg.RootVolumeSizeGiB > 0 {
		disk.DiskSizeGB = to.Ptr(p.cfg.RootVolumeSizeGiB)
	}
	props := &armcompute.VirtualMachineProperties{
		HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes(size))},
		StorageProfile:  &armcompute.StorageProfile{ImageReference: pl.image, OSDisk: disk},
		OSProfile: &armcompute.OSProfile{
			ComputerName:  &pl.name,
			AdminUsername: &p.cfg.SSHUsername,
			LinuxConfiguration: &armcompute.LinuxConfiguration{
				DisablePasswordAuthentication: to.Ptr(true),
				SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{
					Path:    to.Ptr("/home/" + p.cfg.SSHUsername + "/.ssh/authorized_keys"),
					KeyData: &p.sshKey,
				}}},
			},
		},
		NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{{
			ID: &nicID,
			Properties: &armcompute.NetworkInterfaceReferenceProperties{
				Primary:      to.Ptr(true),
				DeleteOption: to.Ptr(armcompute.DeleteOptionsDelete),
			},
		}}},
		DiagnosticsProfile: &armcompute.DiagnosticsProfile{BootDiagnostics: &armcompute.BootDiagnostics{Enabled: to.Ptr(true)}},
		UserData:           &pl.userData,
	}
	if !p.cfg.DisableCVM {
		disk.ManagedDisk.StorageAccountType = to.Ptr(armcompute.StorageAccountTypesPremiumLRS)
		disk.ManagedDisk.SecurityProfile = &armcompute.VMDiskSecurityProfile{
			SecurityEncryptionType: to.Ptr(armcompute.SecurityEncryptionTypesVMGuestStateOnly),
		}
		props.SecurityProfile = &armcompute.SecurityProfile{
			SecurityType: to.Ptr(armcompute.SecurityTypesConfidentialVM),
			UefiSettings: &armcompute.UefiSettings{
				SecureBootEnabled: to.Ptr(p.cfg.SecureBoot),
				VTpmEnabled:       to.Ptr(true),
			},
		}
	}
	vm := armcompute.VirtualMachine{Location: &p.cfg.Region, Tags: pl.tags, Properties: props}
	if p.cfg.Zone != "" {
		vm.Zones = []*string{&p.cfg.Zone}
	}
	return vm
}

// createVM makes the VM with one size. When the operation fails for lack
// of capacity after Azure accepted it, the VM it left (state Failed) is
// deleted so the next size starts clean; removed reports that.
func (p *Provider) createVM(ctx context.Context, pl *plan, size, nicID string) (vm *armcompute.VirtualMachine, removed bool, err error) {
	op := fmt.Sprintf("create VM %s (%s)", pl.name, size)
	poller, err := p.vms.BeginCreateOrUpdate(ctx, p.cfg.ResourceGroup, pl.name, p.vmSpec(pl, size, nicID), nil)
	if err != nil {
		return nil, false, classify(op, err)
	}
	res, err := poller.PollUntilDone(ctx, p.pollOpts())
	if err != nil {
		err = classify(op, err)
		if errors.Is(err, provider.ErrCapacity) {
			if derr := p.deleteVM(ctx, p.cfg.ResourceGroup, pl.name); derr != nil {
				return nil, false, fmt.Errorf("%v; deleting the failed VM: %w", err, derr)
			}
			return nil, true, err
		}
		return nil, false, err
	}
	return &res.VirtualMachine, false, nil
}

// tagDisk puts the tags on the OS disk, which Azure makes with the VM but
// without the VM's tags. A failure is only logged: the disk goes with the
// VM (DeleteOption Delete) and Delete finds it by name regardless.
func (p *Provider) tagDisk(ctx context.Context, pl *plan) {
	name := diskName(pl.name)
	poller, err := p.disks.BeginUpdate(ctx, p.cfg.ResourceGroup, name, armcompute.DiskUpdate{Tags: pl.tags}, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, p.pollOpts())
	}
	if err != nil {
		p.log.Warn("could not tag the OS disk", "vm", pl.name, "disk", name, "err", classify("tag disk "+name, err))
	}
}

// existing reports a VM found by name, reading its addresses from its NIC.
func (p *Provider) existing(ctx context.Context, vm *armcompute.VirtualMachine) (*provider.Instance, error) {
	name := deref(vm.Name, "")
	nic, err := p.nics.Get(ctx, p.cfg.ResourceGroup, nicName(name), nil)
	if err != nil {
		return nil, classify("get NIC "+nicName(name), err)
	}
	var pip *armnetwork.PublicIPAddress
	if p.cfg.PublicIP {
		// A VM made before USE_PUBLIC_IP was turned on has none.
		ip, err := p.ips.Get(ctx, p.cfg.ResourceGroup, ipName(name), nil)
		switch err = classify("get public IP "+ipName(name), err); {
		case err == nil:
			pip = &ip.PublicIPAddress
		case !errors.Is(err, provider.ErrNotFound):
			return nil, err
		}
	}
	return p.instance(vm, &nic.Interface, pip), nil
}

// instance reports a VM. With USE_PUBLIC_IP the public address comes first
// (peerpodd then reaches the VM from outside its network); the private
// address follows, or is the only one.
func (p *Provider) instance(vm *armcompute.VirtualMachine, nic *armnetwork.Interface, pip *armnetwork.PublicIPAddress) *provider.Instance {
	inst := vmInstance(vm)
	if pip != nil && pip.Properties != nil {
		if a, err := netip.ParseAddr(deref(pip.Properties.IPAddress, "")); err == nil {
			inst.IPs = append(inst.IPs, a)
		}
	}
	if nic != nil && nic.Properties != nil {
		for _, c := range nic.Properties.IPConfigurations {
			if c == nil || c.Properties == nil {
				continue
			}
			if a, err := netip.ParseAddr(deref(c.Properties.PrivateIPAddress, "")); err == nil {
				inst.IPs = append(inst.IPs, a)
			}
		}
	}
	return &inst
}

// vmInstance reports what the VM resource itself says (no addresses).
func vmInstance(vm *armcompute.VirtualMachine) provider.Instance {
	inst := provider.Instance{
		ID:   deref(vm.ID, ""),
		Name: deref(vm.Name, ""),
		Tags: fromAzureTags(vm.Tags),
	}
	if pr := vm.Properties; pr != nil {
		if pr.HardwareProfile != nil && pr.HardwareProfile.VMSize != nil {
			inst.InstanceType = string(*pr.HardwareProfile.VMSize)
		}
		if pr.TimeCreated != nil {
			inst.Created = *pr.TimeCreated
		}
	}
	return inst
}

func failed(pr *armcompute.VirtualMachineProperties) bool {
	return pr != nil && strings.EqualFold(deref(pr.ProvisioningState, ""), "Failed")
}

func (p *Provider) pollOpts() *runtime.PollUntilDoneOptions {
	return &runtime.PollUntilDoneOptions{Frequency: p.poll}
}

// deref returns *p, or def when p is nil.
func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
