package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/annotations"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/pool"
	"github.com/peerpod/peerpod/tunnel/provision"
)

// StartWarmPool starts keeping Options.WarmPoolSize warm VMs in the
// background (nothing when it is 0). Call it after Restore: the pool
// deletes the warm VMs an earlier run left that no restored sandbox took.
// The pool's VMs are deleted when the manager closes.
func (mg *Manager) StartWarmPool() {
	size := mg.opts.WarmPoolSize
	if size <= 0 {
		return
	}
	mg.goBackground(func(ctx context.Context) {
		// The default instance types need the provider's list: ask until it answers.
		var types []string
		for wait := time.Second; ; wait = min(2*wait, time.Minute) {
			var err error
			if types, err = mg.instanceTypes(ctx, &annotations.Spec{}); err == nil {
				break
			}
			mg.log.Warn("warm pool waits for the provider's instance types", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		p, err := pool.New(pool.Options{
			Provider: mg.prov, Size: size, Port: mg.opts.ForwarderPort,
			Template: provider.CreateRequest{InstanceTypes: types},
			UserData: func(name string) ([]byte, error) {
				return userdata.Encode(&userdata.Config{Version: userdata.Version, Warm: true, VMName: name,
					ListenPort: mg.opts.ForwarderPort, TunnelCA: string(mg.opts.Credentials.CertPEM()), Attester: mg.opts.Attester})
			},
			ClusterID: mg.opts.ClusterID, NodeName: mg.opts.NodeName, Tags: mg.opts.Tags,
			Taken: mg.ownsTakenWarm, Logger: mg.log,
			OnChange: func(booting, ready int) {
				mg.m.WarmVMs.WithLabelValues("booting").Set(float64(booting))
				mg.m.WarmVMs.WithLabelValues("ready").Set(float64(ready))
			},
		})
		if err != nil {
			mg.log.Error("warm pool not started", "err", err)
			return
		}
		mg.mu.Lock()
		mg.pool = p
		mg.mu.Unlock()
		mg.log.Info("warm pool starting", "size", size, "instance_types", types)
		p.Run(ctx)
	})
}

// WarmPool reports the warm pool's state; nil when there is none (yet).
func (mg *Manager) WarmPool() *pool.Status {
	p := mg.warmPool()
	if p == nil {
		return nil
	}
	st := p.Status()
	return &st
}

func (mg *Manager) warmPool() *pool.Pool {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	return mg.pool
}

// ownsTakenWarm reports whether a sandbox took the warm VM vm (its tags
// name no sandbox; the journal names the VM).
func (mg *Manager) ownsTakenWarm(vm provider.Instance) bool {
	mg.mu.Lock()
	all := make([]*sandbox, 0, len(mg.sandboxes))
	for _, s := range mg.sandboxes {
		all = append(all, s)
	}
	mg.mu.Unlock()
	for _, s := range all {
		e := s.snapshot()
		if e.VMName == vm.Name && e.OwnsVM(vm.ID, vm.Name) {
			return true
		}
	}
	return false
}

// warmAnswerTimeout bounds the handover to a warm VM that had booted: it
// answered before, so one that does not now is given up for a new VM.
const warmAnswerTimeout = 30 * time.Second

// handed tells the pool that StartVM is done with the warm VM id, so its
// replacement may boot.
func (mg *Manager) handed(id string) {
	if p := mg.warmPool(); p != nil {
		p.Handed(id)
	}
}

// takeWarm hands out a warm VM for the sandbox e when the pool has one
// that fits.
func (mg *Manager) takeWarm(e journal.Entry) (pool.VM, bool) {
	p := mg.warmPool()
	if p == nil {
		return pool.VM{}, false
	}
	if !p.Fits(e.InstanceTypes, provider.Resources{VCPUs: e.VCPUs, MemoryMiB: e.MemoryMiB, GPUs: e.GPUs}, e.Image) {
		mg.m.WarmStarts.WithLabelValues("unfit").Inc()
		return pool.VM{}, false
	}
	vm, ok := p.Take()
	if !ok {
		mg.m.WarmStarts.WithLabelValues("empty").Inc()
		return pool.VM{}, false
	}
	return vm, true
}

// provisionWarm sends the sandbox's user data to the warm VM at e.VMAddr,
// waiting for it to boot if it has not yet (booted false). A refusal ends
// it at once; a VM that had booted gets warmAnswerTimeout to answer.
func (mg *Manager) provisionWarm(ctx context.Context, s *sandbox, e journal.Entry, ud []byte, booted bool) error {
	timeout := mg.opts.ProxyTimeout
	if booted {
		timeout = min(timeout, warmAnswerTimeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var backoff time.Duration
	for {
		err := agentReachable(ctx, e.VMAddr, agentConnectFast)
		if err == nil {
			err = provision.Send(ctx, e.VMAddr, mg.opts.Credentials.ClientTLS(), ud)
			var re *provision.RefusedError
			if err == nil || errors.As(err, &re) {
				return err
			}
		}
		s.log.Debug("warm VM not provisioned yet", "vm", e.VMName, "err", err)
		backoff = nextAgentPoll(backoff, err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("provision warm VM %s: %w (last error: %v)", e.VMName, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// startWarm gives the sandbox a warm VM when the pool has one that fits:
// the VM is journalled as the sandbox's, then handed the sandbox's user
// data (pod, VMName set here). It returns nil and e unchanged when there
// is none, or when the VM refused or failed to take the sandbox (it is
// then deleted, and the caller boots a new VM). An error means the
// sandbox's record could not be kept; e then names the VM for fail. After
// a hit the caller calls handed once the VM serves the sandbox (or failed).
func (mg *Manager) startWarm(ctx context.Context, s *sandbox, e journal.Entry, pod userdata.Config) (*provider.Instance, journal.Entry, error) {
	vm, ok := mg.takeWarm(e)
	if !ok {
		return nil, e, nil
	}
	cold := e
	e.State, e.VMName, e.VMID, e.VMAddr, e.InstanceType = journal.Provisioning, vm.Name, vm.ID, vm.Addr, vm.InstanceType
	if err := mg.put(s, e); err != nil {
		mg.handed(vm.ID)
		return nil, e, fmt.Errorf("journal warm VM %s: %w", vm.Name, err)
	}
	pod.VMName = vm.Name
	ud, err := userdata.Encode(&pod)
	if err == nil {
		start := time.Now()
		s.log.Info("handing the sandbox to a warm VM", "vm", vm.Name, "vm_id", vm.ID, "addr", vm.Addr, "booted", vm.Ready)
		if err = mg.provisionWarm(ctx, s, e, ud, vm.Ready); err == nil {
			mg.m.WarmStarts.WithLabelValues("hit").Inc()
			mg.event(e, "PeerPodVMCreated", false, "warm VM %s (%s) took the sandbox in %s", vm.Name, vm.ID, time.Since(start).Round(time.Millisecond))
			inst := vm.Instance
			return &inst, e, nil
		}
	}
	mg.handed(vm.ID)
	if ctx.Err() != nil {
		return nil, e, fmt.Errorf("warm VM %s: %w", vm.Name, err)
	}
	mg.m.WarmStarts.WithLabelValues("refused").Inc()
	s.log.Warn("warm VM did not take the sandbox; deleting it and booting a new VM", "vm", vm.Name, "err", err)
	if derr := mg.deleteVM(s, e); derr != nil {
		return nil, e, fmt.Errorf("warm VM %s did not take the sandbox (%v) and deleting it failed: %w", vm.Name, err, derr)
	}
	return nil, cold, nil
}
