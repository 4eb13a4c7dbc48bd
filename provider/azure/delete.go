package azure

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/peerpod/peerpod/provider"
)

// Delete removes the VM (an ARM id, or a bare VM name in the configured
// resource group), then its NIC, public IP and OS disk if Azure did not
// already remove them with it. Anything already gone counts as done, so
// Delete is safe to repeat and also sweeps up after a failed create.
func (p *Provider) Delete(ctx context.Context, id string) error {
	rg, name, err := p.parseID(id)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := p.remove(ctx, rg, name); err != nil {
		return err
	}
	p.log.Info("VM deleted", "vm", name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// parseID returns the resource group and VM name of id.
func (p *Provider) parseID(id string) (rg, name string, err error) {
	if vmNameRE.MatchString(id) {
		return p.cfg.ResourceGroup, id, nil
	}
	rid, perr := arm.ParseResourceID(id)
	if perr != nil || !strings.EqualFold(rid.ResourceType.String(), "Microsoft.Compute/virtualMachines") {
		return "", "", provider.Errorf(provider.ErrInvalidConfig, "delete VM: %q is neither a VM name nor a virtual machine ARM id", id)
	}
	return rid.ResourceGroupName, rid.Name, nil
}

// remove deletes the VM, then the NIC followed by the public IP, and the OS
// disk alongside.
func (p *Provider) remove(ctx context.Context, rg, name string) error {
	if err := p.deleteVM(ctx, rg, name); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var netErr, diskErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		// The public IP cannot go while the NIC still holds it.
		if netErr = p.deleteNIC(ctx, rg, nicName(name)); netErr == nil {
			netErr = p.deletePublicIP(ctx, rg, ipName(name))
		}
	}()
	go func() {
		defer wg.Done()
		diskErr = p.deleteDisk(ctx, rg, diskName(name))
	}()
	wg.Wait()
	return errors.Join(netErr, diskErr)
}

// gone turns "not found" into success.
func gone(err error) error {
	if errors.Is(err, provider.ErrNotFound) {
		return nil
	}
	return err
}

func (p *Provider) deleteVM(ctx context.Context, rg, name string) error {
	op := "delete VM " + name
	poller, err := p.vms.BeginDelete(ctx, rg, name, nil)
	if err != nil {
		return gone(classify(op, err))
	}
	_, err = poller.PollUntilDone(ctx, p.pollOpts())
	return gone(classify(op, err))
}

func (p *Provider) deleteNIC(ctx context.Context, rg, name string) error {
	op := "delete NIC " + name
	poller, err := p.nics.BeginDelete(ctx, rg, name, nil)
	if err != nil {
		return gone(classify(op, err))
	}
	_, err = poller.PollUntilDone(ctx, p.pollOpts())
	return gone(classify(op, err))
}

func (p *Provider) deletePublicIP(ctx context.Context, rg, name string) error {
	op := "delete public IP " + name
	poller, err := p.ips.BeginDelete(ctx, rg, name, nil)
	if err != nil {
		return gone(classify(op, err))
	}
	_, err = poller.PollUntilDone(ctx, p.pollOpts())
	return gone(classify(op, err))
}

func (p *Provider) deleteDisk(ctx context.Context, rg, name string) error {
	op := "delete disk " + name
	poller, err := p.disks.BeginDelete(ctx, rg, name, nil)
	if err != nil {
		return gone(classify(op, err))
	}
	_, err = poller.PollUntilDone(ctx, p.pollOpts())
	return gone(classify(op, err))
}

// List returns the VMs of the resource group whose tags include every
// key/value of tags (our keys in their "peerpod.io/" form). ARM's VM list
// cannot filter on tags, so the filter runs here. Addresses are not
// reported: they would cost one NIC read per VM and the reconciler needs
// only ids and tags.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Instance, error) {
	var out []provider.Instance
	pager := p.vms.NewListPager(p.cfg.ResourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, classify("list VMs in "+p.cfg.ResourceGroup, err)
		}
		for _, vm := range page.Value {
			if vm == nil {
				continue
			}
			inst := vmInstance(vm)
			if provider.Matches(inst.Tags, tags) {
				out = append(out, inst)
			}
		}
	}
	return out, nil
}
