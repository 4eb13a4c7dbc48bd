// Package reconcile finds pod VMs of this node that no sandbox owns (leaked
// by a crash, a failed delete or a lost journal) and deletes them once they
// have stayed unowned for a grace period.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/peerpod/peerpod/provider"
)

// Owners reports whether a VM belongs to a live sandbox. It is asked again
// right before each deletion.
type Owners interface {
	Owns(vm provider.Instance) bool
}

// OwnersFunc adapts a function to Owners.
type OwnersFunc func(vm provider.Instance) bool

// Owns implements Owners.
func (f OwnersFunc) Owns(vm provider.Instance) bool { return f(vm) }

// Reconciler deletes orphan VMs. Create with New; run with Run or call Pass.
type Reconciler struct {
	prov     provider.Provider
	selector map[string]string
	owners   Owners
	grace    time.Duration
	interval time.Duration
	log      *slog.Logger
	onDelete func(vm provider.Instance)
	onError  func(op string, err error)
	now      func() time.Time

	mu        sync.Mutex
	firstSeen map[string]time.Time // VM id → when first seen unowned
}

// Options configure a Reconciler.
type Options struct {
	// Selector are the tags of this node's VMs (provider.NodeSelector).
	Selector map[string]string
	// Grace is how long a VM must stay unowned before it is deleted.
	Grace time.Duration
	// Interval is the time between passes in Run.
	Interval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnDelete is called after each orphan is deleted (for metrics).
	OnDelete func(vm provider.Instance)
	// OnError is called for each failed provider call (for metrics).
	OnError func(op string, err error)
	// Now defaults to time.Now (tests set it).
	Now func() time.Time
}

// New makes a reconciler for prov's VMs matching opts.Selector.
func New(prov provider.Provider, owners Owners, opts Options) (*Reconciler, error) {
	if len(opts.Selector) == 0 {
		return nil, fmt.Errorf("reconciler: empty tag selector would match every VM")
	}
	if opts.Grace <= 0 {
		return nil, fmt.Errorf("reconciler: grace %v must be positive", opts.Grace)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reconciler{
		prov: prov, selector: opts.Selector, owners: owners, grace: opts.Grace,
		interval: opts.Interval, log: opts.Logger.With("component", "reconciler"),
		onDelete: opts.OnDelete, onError: opts.OnError, now: opts.Now,
		firstSeen: map[string]time.Time{},
	}, nil
}

// Run makes a pass every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Orphan is a VM no sandbox owns, as seen by Scan.
type Orphan struct {
	provider.Instance
	// Since is when this reconciler first saw it unowned.
	Since time.Time
}

// Scan lists this node's VMs and returns those no sandbox owns, without
// deleting anything (for status tools and dry runs).
func (r *Reconciler) Scan(ctx context.Context) ([]Orphan, error) {
	vms, err := r.prov.List(ctx, r.selector)
	if err != nil {
		if r.onError != nil {
			r.onError("list", err)
		}
		return nil, fmt.Errorf("reconciler: list VMs %s: %w", provider.FormatTags(r.selector), err)
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []Orphan
	for _, vm := range vms {
		if !provider.Matches(vm.Tags, r.selector) {
			continue // a provider that filters loosely must not make us delete others' VMs
		}
		if r.owners.Owns(vm) {
			continue
		}
		seen[vm.ID] = true
		since, ok := r.firstSeen[vm.ID]
		if !ok {
			since = now
			r.firstSeen[vm.ID] = now
		}
		out = append(out, Orphan{Instance: vm, Since: since})
	}
	for id := range r.firstSeen {
		if !seen[id] {
			delete(r.firstSeen, id) // owned again or gone: the grace starts over
		}
	}
	return out, nil
}

// Pass scans once and deletes every orphan that has been unowned for at
// least the grace period. It returns the VMs it deleted.
func (r *Reconciler) Pass(ctx context.Context) ([]provider.Instance, error) {
	orphans, err := r.Scan(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	var deleted []provider.Instance
	var errs []error
	for _, o := range orphans {
		age := now.Sub(o.Since)
		if age < r.grace {
			r.log.Debug("unowned VM within grace", "vm", o.Name, "vm_id", o.ID, "unowned_for", age)
			continue
		}
		if r.owners.Owns(o.Instance) {
			continue
		}
		log := r.log.With("vm", o.Name, "vm_id", o.ID, "sandbox_id", o.Tags[provider.TagSandbox],
			"pod", o.Tags[provider.TagPodName], "namespace", o.Tags[provider.TagPodNamespace])
		if err := r.prov.Delete(ctx, o.ID); err != nil {
			if r.onError != nil {
				r.onError("delete", err)
			}
			log.Warn("deleting orphan VM failed", "err", err)
			errs = append(errs, fmt.Errorf("delete orphan VM %s (%s): %w", o.Name, o.ID, err))
			continue
		}
		log.Info("deleted orphan VM", "unowned_for", age.Round(time.Second))
		r.mu.Lock()
		delete(r.firstSeen, o.ID)
		r.mu.Unlock()
		if r.onDelete != nil {
			r.onDelete(o.Instance)
		}
		deleted = append(deleted, o.Instance)
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("reconciler: %d of %d deletions failed: %w", len(errs), len(orphans), errs[0])
	}
	return deleted, nil
}
