package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/retry"
)

// StopVM deletes the sandbox's VM and everything made for it (socket,
// tunnel, record). The deletion is not abandoned when ctx ends: it runs to
// completion (bounded by DeleteTimeout) so no half-deleted state is left.
func (mg *Manager) StopVM(ctx context.Context, id string) error {
	s, err := mg.get(id)
	if err != nil {
		return err
	}
	end, err := mg.begin(id)
	if err != nil {
		return err
	}
	defer end()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.snapshot()
	if _, still := mg.lookup(id); !still {
		return fmt.Errorf("sandbox %s: %w", id, ErrNotFound) // stopped while we waited
	}
	s.close()
	mg.detachNet(s, e)
	if e.State == journal.Provisioning || e.State == journal.Running || e.State == journal.Stopping ||
		(e.State == journal.Failed && e.VMID != "") {
		e.State = journal.Stopping
		if err := mg.put(s, e); err != nil {
			return fmt.Errorf("stop sandbox %s: %w", id, err)
		}
		s.log.Info("deleting VM", "vm", e.VMName, "vm_id", e.VMID)
		if err := mg.deleteVM(s, e); err != nil {
			return fmt.Errorf("stop sandbox %s: %w", id, err)
		}
	}
	return mg.finish(s)
}

// finish removes what is left of a sandbox whose VM is gone.
func (mg *Manager) finish(s *sandbox) error {
	mg.removeSocketDir(s.id)
	if err := mg.opts.Journal.Remove(s.id); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", s.id, err)
	}
	mg.mu.Lock()
	if mg.sandboxes[s.id] == s {
		delete(mg.sandboxes, s.id)
	}
	mg.mu.Unlock()
	mg.updateGauge()
	s.log.Info("sandbox stopped")
	return nil
}

func (mg *Manager) lookup(id string) (*sandbox, bool) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	s, ok := mg.sandboxes[id]
	return s, ok
}

// close stops the sandbox's agent socket and tunnel (idempotent).
func (s *sandbox) close() {
	s.stateMu.Lock()
	p, c := s.proxy, s.client
	s.proxy, s.client = nil, nil
	select {
	case <-s.gone:
	default:
		close(s.gone)
	}
	s.stateMu.Unlock()
	if p != nil {
		p.Close()
	}
	if c != nil {
		c.Close()
		s.past.Add(c.Reconnects())
	}
}

func (mg *Manager) removeSocketDir(id string) {
	dir := filepath.Dir(mg.socketPath(id))
	if err := os.RemoveAll(dir); err != nil {
		mg.log.Warn("removing agent socket directory", "dir", dir, "err", err)
	}
}

// deleteVM deletes the sandbox's VM: by id when known, otherwise every VM
// of this node tagged with the sandbox id (a crash may have come between
// the create and the journal write). It is detached from callers' contexts
// and ends only when done, after DeleteTimeout, or when the manager closes
// (the journal then says "stopping" and the next start finishes it).
func (mg *Manager) deleteVM(s *sandbox, e journal.Entry) error {
	ctx, cancel := context.WithTimeout(mg.ctx, mg.opts.DeleteTimeout)
	defer cancel()
	ids := []string{}
	if e.VMID != "" {
		ids = append(ids, e.VMID)
	} else {
		sel := map[string]string{provider.TagSandbox: s.id}
		for k, v := range mg.selector() {
			sel[k] = v
		}
		var vms []provider.Instance
		err := retry.Do(ctx, mg.retryPolicy(s.log, "list"), func(ctx context.Context) error {
			var err error
			vms, err = mg.prov.List(ctx, sel)
			return err
		})
		if err != nil {
			mg.cloudError("list", err)
			return fmt.Errorf("find VM of sandbox %s: %w", s.id, err)
		}
		for _, vm := range vms {
			ids = append(ids, vm.ID)
		}
	}
	start := time.Now()
	for _, vmID := range ids {
		err := retry.Do(ctx, mg.retryPolicy(s.log, "delete"), func(ctx context.Context) error {
			err := mg.prov.Delete(ctx, vmID)
			if errors.Is(err, provider.ErrNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			mg.cloudError("delete", err)
			return fmt.Errorf("delete VM %s (%s): %w", e.VMName, vmID, err)
		}
	}
	s.log.Info("VM deleted", "vm", e.VMName, "vm_ids", ids, "took", time.Since(start).Round(time.Millisecond))
	mg.event(e, "PeerPodVMDeleted", false, "VM %s deleted in %s", e.VMName, time.Since(start).Round(time.Millisecond))
	return nil
}

// selector is the tag set of this node's VMs.
func (mg *Manager) selector() map[string]string {
	return provider.NodeSelector(mg.opts.ClusterID, mg.opts.NodeName)
}

// Selector is the tag set of this node's VMs (for the reconciler and status tools).
func (mg *Manager) Selector() map[string]string { return mg.selector() }

// Sweep drops abandoned records older than TombstoneTTL: failed
// sandboxes whose VM is gone (the runtime normally removes them with
// StopVM) and sandboxes created but never started (the runtime calls
// StartVM right after CreateVM).
func (mg *Manager) Sweep() {
	abandoned := func(e journal.Entry) bool {
		old := time.Since(e.Updated) > mg.opts.TombstoneTTL
		return old && (e.State == journal.Created || (e.State == journal.Failed && e.VMID == ""))
	}
	mg.mu.Lock()
	var old []*sandbox
	for _, s := range mg.sandboxes {
		if abandoned(s.snapshot()) {
			old = append(old, s)
		}
	}
	mg.mu.Unlock()
	for _, s := range old {
		s.mu.Lock()
		if e := s.snapshot(); abandoned(e) {
			s.log.Info("sweeping abandoned sandbox", "state", e.State, "updated", e.Updated)
			s.close()
			if err := mg.finish(s); err != nil {
				s.log.Warn("sweeping abandoned sandbox", "err", err)
			}
		}
		s.mu.Unlock()
	}
}
