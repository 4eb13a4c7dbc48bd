// Package pool keeps a node's warm pod VMs: VMs of the default size booted
// ahead of any pod, with user data that names no sandbox (see
// tunnel/provision). A StartVM whose pod fits takes one and hands it the
// sandbox instead of waiting for a VM to boot; the pool then boots a
// replacement. Warm VMs carry the node's tags and provider.TagWarm, so the
// pool finds (and deletes) the ones a previous run left behind.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/peerpod/peerpod/provider"
)

// Options configure a Pool. Fields without a default are required.
type Options struct {
	// Provider makes the VMs.
	Provider provider.Provider
	// Size is how many warm VMs to keep (WARM_POOL_SIZE); 0 disables the pool.
	Size int
	// Template is every warm VM's request: instance types, resources and
	// image. Name, SandboxID (the name), Tags and UserData are set per VM.
	Template provider.CreateRequest
	// UserData encodes the warm user data for the VM called name.
	UserData func(name string) ([]byte, error)
	// Port is the VMs' tunnel port, probed to tell a booted VM.
	Port int
	// ClusterID, NodeName and Tags go on every VM, as on sandboxes' VMs.
	ClusterID, NodeName string
	Tags                map[string]string
	// Taken reports whether a sandbox owns vm (journalled by an earlier
	// run); the pool leaves such VMs alone when it cleans up at start.
	Taken func(vm provider.Instance) bool
	// BootTimeout is how long a warm VM may take to answer on Port before
	// it is replaced (default 5m).
	BootTimeout time.Duration
	// CheckInterval is how often a booted warm VM's port is checked
	// (default 30s).
	CheckInterval time.Duration
	// Reachable tells whether a VM's tunnel port (host:port) answers
	// (default: a TCP connect bounded to 250 ms).
	Reachable func(ctx context.Context, addr string) bool
	// RetryMin and RetryMax bound the pause after a failed create
	// (defaults 1s and 5m, doubling).
	RetryMin, RetryMax time.Duration
	// OnChange is called after the pool changes (for metrics): how many
	// VMs are booting and how many are ready.
	OnChange func(booting, ready int)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// VM is a warm VM handed to a sandbox.
type VM struct {
	provider.Instance
	// Addr is the VM's tunnel address (host:port).
	Addr string
	// Ready tells whether the VM answered on its port before it was taken.
	Ready bool
}

type warmVM struct {
	VM
	cancel context.CancelFunc // stops its boot watch
}

// Pool is a node's warm pool. Create it with New, run it with Run.
type Pool struct {
	opts Options
	log  *slog.Logger

	mu  sync.Mutex
	vms map[string]*warmVM // by provider ID
	// handing are the VMs taken and not yet handed over (Handed), with
	// when they were taken.
	handing map[string]time.Time
	wake    chan struct{}
	closed  bool
	wg      sync.WaitGroup
}

// New checks opts and returns a pool that does nothing until Run.
func New(opts Options) (*Pool, error) {
	switch {
	case opts.Provider == nil:
		return nil, errors.New("warm pool: no provider")
	case opts.Size < 0:
		return nil, fmt.Errorf("warm pool: size %d is negative", opts.Size)
	case opts.UserData == nil:
		return nil, errors.New("warm pool: no user data function")
	case opts.Port <= 0:
		return nil, fmt.Errorf("warm pool: port %d", opts.Port)
	case opts.NodeName == "":
		return nil, errors.New("warm pool: no node name to tag its VMs with")
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = 5 * time.Minute
	}
	if opts.Reachable == nil {
		opts.Reachable = reachable
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 30 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(5*time.Minute, opts.RetryMin)
	}
	if opts.Taken == nil {
		opts.Taken = func(provider.Instance) bool { return false }
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Pool{opts: opts, log: log.With("component", "warm-pool"), vms: map[string]*warmVM{},
		handing: map[string]time.Time{}, wake: make(chan struct{}, 1)}, nil
}

// Selector is the tags of this node's warm VMs.
func (p *Pool) Selector() map[string]string {
	t := provider.NodeSelector(p.opts.ClusterID, p.opts.NodeName)
	t[provider.TagWarm] = "true"
	return t
}

// Run deletes the warm VMs an earlier run left (those no sandbox took),
// then keeps Size VMs booted, one create at a time, until ctx ends. It then
// deletes the VMs still in the pool (bounded by drainTimeout).
func (p *Pool) Run(ctx context.Context) {
	if p.opts.Size == 0 {
		return
	}
	p.cleanup(ctx)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		p.mu.Lock()
		short := p.opts.Size - len(p.vms)
		wait := p.handoverWait()
		p.mu.Unlock()
		if short > 0 && wait > 0 {
			// A VM being handed over would share the host with a boot
			// started now (libvirt: the same CPUs); refill after it.
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-p.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if short > 0 {
			if err := p.add(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				backoff = min(max(2*backoff, p.opts.RetryMin), p.opts.RetryMax)
				p.log.Warn("warm VM not made; trying again later", "err", err, "retry_in", backoff)
				if !sleep(ctx, backoff) {
					break
				}
			} else {
				backoff = 0
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		}
	}
	p.drain()
}

const drainTimeout = 2 * time.Minute

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cleanup deletes this node's warm VMs that no sandbox took.
func (p *Pool) cleanup(ctx context.Context) {
	sel := p.Selector()
	vms, err := p.opts.Provider.List(ctx, sel)
	if err != nil {
		p.log.Warn("listing warm VMs left by an earlier run failed; the reconciler will find them", "err", err)
		return
	}
	for _, vm := range vms {
		if !provider.Matches(vm.Tags, sel) || p.opts.Taken(vm) {
			continue
		}
		if err := p.opts.Provider.Delete(ctx, vm.ID); err != nil {
			p.log.Warn("deleting a warm VM left by an earlier run failed; the reconciler will retry", "vm", vm.Name, "vm_id", vm.ID, "err", err)
			continue
		}
		p.log.Info("deleted a warm VM left by an earlier run", "vm", vm.Name, "vm_id", vm.ID)
	}
}

// add makes one warm VM and watches it boot.
func (p *Pool) add(ctx context.Context) error {
	name := fmt.Sprintf("podvm-warm-%08x", rand.Uint32())
	ud, err := p.opts.UserData(name)
	if err != nil {
		return fmt.Errorf("warm VM %s: user data: %w", name, err)
	}
	req := p.opts.Template
	// No sandbox yet: the VM's unique name stands in where providers key
	// their idempotency on it (EC2's client token). No sandbox tag is set.
	req.Name, req.SandboxID, req.UserData = name, name, ud
	req.Tags = provider.Tags(provider.Owner{ClusterID: p.opts.ClusterID, Node: p.opts.NodeName}, p.opts.Tags)
	req.Tags[provider.TagWarm] = "true"
	start := time.Now()
	inst, err := p.opts.Provider.Create(ctx, req)
	if err != nil {
		return fmt.Errorf("create warm VM %s: %w", name, err)
	}
	if len(inst.IPs) == 0 {
		p.delete(inst.ID, name, "it has no IP address")
		return fmt.Errorf("warm VM %s (%s) has no IP address", name, inst.ID)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &warmVM{VM: VM{Instance: *inst, Addr: net.JoinHostPort(inst.IPs[0].String(), strconv.Itoa(p.opts.Port))}, cancel: cancel}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		cancel()
		p.delete(inst.ID, name, "the pool is closing")
		return ctx.Err()
	}
	p.vms[inst.ID] = w
	p.wg.Add(1)
	p.mu.Unlock()
	p.changed()
	p.log.Info("warm VM created", "vm", name, "vm_id", inst.ID, "addr", w.Addr, "took", time.Since(start).Round(time.Millisecond))
	go p.watch(wctx, w, start)
	return nil
}

// watch waits for w to answer on its port, then keeps checking it every
// CheckInterval. One that does not answer within BootTimeout, or stops
// answering for checkFailures checks in a row, is deleted (and so replaced):
// a take must not find a dead VM.
func (p *Pool) watch(ctx context.Context, w *warmVM, start time.Time) {
	defer p.wg.Done()
	deadline := time.Now().Add(p.opts.BootTimeout)
	for !p.opts.Reachable(ctx, w.Addr) {
		if time.Now().After(deadline) {
			p.retire(w, fmt.Sprintf("it did not answer on its port within %v", p.opts.BootTimeout))
			return
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return // taken or closing
		}
	}
	p.mu.Lock()
	w.Ready = true
	p.mu.Unlock()
	p.changed()
	p.log.Info("warm VM ready", "vm", w.Name, "after", time.Since(start).Round(time.Millisecond))
	failed := 0
	for sleep(ctx, p.opts.CheckInterval) {
		if p.opts.Reachable(ctx, w.Addr) {
			failed = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if failed++; failed == checkFailures {
			p.retire(w, fmt.Sprintf("it stopped answering on its port (%d checks)", checkFailures))
			return
		}
	}
}

// checkFailures is how many failed checks in a row retire a booted warm VM.
const checkFailures = 3

func reachable(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 250 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// retire deletes w unless it was taken meanwhile.
func (p *Pool) retire(w *warmVM, why string) {
	if p.remove(w.ID) {
		p.delete(w.ID, w.Name, why)
	}
}

// remove takes the VM with id out of the pool; false if it was not there.
func (p *Pool) remove(id string) bool {
	p.mu.Lock()
	_, ok := p.vms[id]
	delete(p.vms, id)
	p.mu.Unlock()
	if ok {
		p.changed()
		p.poke()
	}
	return ok
}

func (p *Pool) delete(id, name, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := p.opts.Provider.Delete(ctx, id); err != nil {
		p.log.Warn("deleting warm VM failed; the reconciler will retry", "vm", name, "vm_id", id, "why", why, "err", err)
		return
	}
	p.log.Info("warm VM deleted", "vm", name, "vm_id", id, "why", why)
}

func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pool) changed() {
	if p.opts.OnChange != nil {
		st := p.Status()
		p.opts.OnChange(st.Booting, st.Ready)
	}
}

// Status is the pool's state, for /status.
type Status struct {
	// Size is how many warm VMs the pool keeps.
	Size int `json:"size"`
	// Booting and Ready count its VMs not yet taken.
	Booting int `json:"booting"`
	Ready   int `json:"ready"`
}

// Status reports the pool's size and its VMs.
func (p *Pool) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Size: p.opts.Size}
	for _, w := range p.vms {
		if w.Ready {
			st.Ready++
		} else {
			st.Booting++
		}
	}
	return st
}

// Fits reports whether a sandbox's VM request can be served by a warm VM:
// the same instance types and image, and the same size once the
// provider's defaults are applied.
func (p *Pool) Fits(types []string, res provider.Resources, image string) bool {
	t := p.opts.Template
	if p.opts.Size == 0 || image != t.Image || !slices.Equal(types, t.InstanceTypes) {
		return false
	}
	if len(t.InstanceTypes) > 0 {
		return res.GPUs == t.Resources.GPUs // the instance type sets the rest
	}
	if s, ok := p.opts.Provider.(provider.Sizer); ok {
		return s.ResolveResources(res) == s.ResolveResources(t.Resources)
	}
	return res == t.Resources
}

// Take hands out a warm VM, a booted one first; false when the pool has
// none. The caller owns the VM from now on (deleting it is the caller's
// job) and calls Handed once it has handed the VM its sandbox, or given
// up: the pool boots the replacement then (or after MaxHandover), so the
// boot does not compete with the handover for the host.
func (p *Pool) Take() (VM, bool) {
	p.mu.Lock()
	var pick *warmVM
	for _, w := range p.vms {
		if pick == nil || (w.Ready && !pick.Ready) || (w.Ready == pick.Ready && w.Created.Before(pick.Created)) {
			pick = w
		}
	}
	if pick == nil || p.closed {
		p.mu.Unlock()
		return VM{}, false
	}
	delete(p.vms, pick.ID)
	p.handing[pick.ID] = time.Now()
	vm := pick.VM
	p.mu.Unlock()
	pick.cancel()
	p.changed()
	p.poke()
	return vm, true
}

// MaxHandover bounds how long a take holds back its replacement when the
// taker does not call Handed.
const MaxHandover = 30 * time.Second

// Handed tells the pool that the VM with id, taken earlier, is handed over
// (or given up): its replacement may boot.
func (p *Pool) Handed(id string) {
	p.mu.Lock()
	_, ok := p.handing[id]
	delete(p.handing, id)
	p.mu.Unlock()
	if ok {
		p.poke()
	}
}

// handoverWait is how long the oldest handover in progress may still hold
// refills back (0: none does); p.mu is held.
func (p *Pool) handoverWait() time.Duration {
	var wait time.Duration
	for id, at := range p.handing {
		left := MaxHandover - time.Since(at)
		if left <= 0 {
			delete(p.handing, id)
			continue
		}
		wait = max(wait, left)
	}
	return wait
}

// Owns reports whether vm is one of the pool's own (not yet taken) VMs.
func (p *Pool) Owns(vm provider.Instance) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.vms[vm.ID]
	return ok
}

// drain deletes every VM still in the pool; Take returns nothing from now on.
func (p *Pool) drain() {
	p.mu.Lock()
	p.closed = true
	vms := make([]*warmVM, 0, len(p.vms))
	for _, w := range p.vms {
		vms = append(vms, w)
	}
	p.vms = map[string]*warmVM{}
	p.mu.Unlock()
	for _, w := range vms {
		w.cancel()
	}
	p.wg.Wait()
	var wg sync.WaitGroup
	for _, w := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.delete(w.ID, w.Name, "peerpodd is stopping")
		}()
	}
	wg.Wait()
	p.changed()
}
