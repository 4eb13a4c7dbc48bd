// Package sandbox is the node side of a pod's lifecycle: CreateVM records
// the sandbox and opens its agent socket, StartVM makes the VM through the
// provider and waits until its agent answers through the attested tunnel,
// StopVM deletes everything. Every transition is journalled before the cloud
// call it leads to, and Restore picks the work up after a restart.
package sandbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/metrics"
	"github.com/peerpod/peerpod/shim/pool"
	"github.com/peerpod/peerpod/shim/proxy"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/tunnel"
)

// AgentSocketName is the agent socket's file name inside PODS_DIR/<id>/.
const AgentSocketName = "agent.ttrpc"

// Credentials are the node's tunnel credentials (tlsca.CA implements it).
type Credentials interface {
	// CertPEM is the CA certificate pod VMs must trust for client certs.
	CertPEM() []byte
	// ClientTLS is the TLS config for dialling VMs (see tlsca.CA.ClientTLS).
	ClientTLS() *tls.Config
}

// InstanceTypePolicy is implemented by providers with instance types: the
// allowed types and the default (for provider.SelectInstanceTypes).
type InstanceTypePolicy interface {
	InstanceTypePolicy() (allow []string, def string)
}

// SecretsFunc returns the secrets to send to a sandbox's VM once attested.
type SecretsFunc func(ctx context.Context, e journal.Entry) (*userdata.Secrets, error)

// Options configure a Manager. Fields without a default are required.
type Options struct {
	Provider    provider.Provider
	Journal     *journal.Journal
	Credentials Credentials
	// PodsDir holds the agent sockets (PODS_DIR).
	PodsDir string
	// WarmPoolSize is how many warm VMs to keep booted ahead of pods
	// (WARM_POOL_SIZE; see StartWarmPool). They do not count against
	// MaxSandboxes. 0: none.
	WarmPoolSize int
	// MaxSandboxes is the most sandboxes that may have a VM, or be about
	// to, at once (PEERPODS_LIMIT_PER_NODE); a CreateVM beyond it fails
	// with ErrLimit. Failed sandboxes' tombstones do not count. 0: no limit.
	MaxSandboxes int
	// Attester is the evidence kind VMs must present (fake, tdx, snp, az-snp-vtpm).
	Attester string
	// DefaultInitdata is the initdata TOML used when a pod has none (INITDATA).
	DefaultInitdata string
	// ProxyTimeout bounds the wait for the agent after the VM is made (default 5m).
	ProxyTimeout time.Duration
	// ForwarderPort is the VM's tunnel port (default userdata.DefaultListenPort).
	ForwarderPort int
	// ClusterID, NodeName and Tags go on every VM.
	ClusterID, NodeName string
	Tags                map[string]string
	// Metrics defaults to a fresh metrics.New().
	Metrics *metrics.Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Retry is the policy for provider calls (zero value: retry's defaults).
	Retry retry.Policy
	// Secrets defaults to sending empty secrets.
	Secrets SecretsFunc
	// DeleteTimeout bounds one VM deletion, retries included (default 10m).
	DeleteTimeout time.Duration
	// TombstoneTTL is how long a failed sandbox's record is kept for a
	// later StopVM (default 1h).
	TombstoneTTL time.Duration
	// Tunnel is the base tunnel configuration; TLS, Verifier and Logger are set per VM.
	Tunnel tunnel.Config
	// AgentOpenTimeout bounds how long a connection on an agent socket waits
	// for the VM to be ready (default 30s, the runtime's dial timeout).
	AgentOpenTimeout time.Duration
	// PodNetwork, when set, attaches each sandbox's pod network namespace
	// (from CreateVM) to its VM on StartVM and detaches it on StopVM.
	PodNetwork PodNetwork
	// Events, when set, is told of the VM's transitions (reason
	// PeerPodVMCreated, PeerPodVMReady, PeerPodVMFailed, PeerPodVMDeleted)
	// to post them on the pod; it must not block.
	Events EventFunc
}

// EventFunc receives a sandbox's VM transitions; warning marks failures.
type EventFunc func(e journal.Entry, reason string, warning bool, message string)

func (mg *Manager) event(e journal.Entry, reason string, warning bool, format string, a ...any) {
	if mg.opts.Events != nil {
		mg.opts.Events(e, reason, warning, fmt.Sprintf(format, a...))
	}
}

// Manager owns every sandbox of the node. It is safe for concurrent use;
// calls for one sandbox are serialized, calls for different ones run in parallel.
type Manager struct {
	opts  Options
	prov  provider.Provider
	pname string
	log   *slog.Logger
	m     *metrics.Metrics

	typesOnce sync.Mutex
	types     []provider.InstanceType
	typesOK   bool

	bg     sync.WaitGroup
	ctx    context.Context // ends on Close: background work stops
	cancel context.CancelFunc

	ops sync.WaitGroup // lifecycle calls in flight

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	closed    bool
	pool      *pool.Pool // nil until StartWarmPool has made it
	// reconnects of tunnel clients already closed, so the total stays monotonic.
	pastReconnects atomic.Uint64
}

// New checks opts and makes a Manager with no sandboxes; call Restore next.
func New(opts Options) (*Manager, error) {
	switch {
	case opts.Provider == nil:
		return nil, errors.New("sandbox: no provider")
	case opts.Journal == nil:
		return nil, errors.New("sandbox: no journal")
	case opts.Credentials == nil:
		return nil, errors.New("sandbox: no tunnel credentials")
	case opts.PodsDir == "" || !filepath.IsAbs(opts.PodsDir):
		return nil, fmt.Errorf("sandbox: pods dir %q is not an absolute path", opts.PodsDir)
	case opts.NodeName == "":
		return nil, errors.New("sandbox: node name is empty")
	}
	switch opts.Attester {
	case userdata.AttesterFake, userdata.AttesterTDX, userdata.AttesterSNP, userdata.AttesterAzSNPVTPM:
	default:
		return nil, fmt.Errorf("sandbox: attester %q is not fake, tdx, snp or az-snp-vtpm", opts.Attester)
	}
	if opts.ProxyTimeout <= 0 {
		opts.ProxyTimeout = 5 * time.Minute
	}
	if opts.ForwarderPort == 0 {
		opts.ForwarderPort = userdata.DefaultListenPort
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DeleteTimeout <= 0 {
		opts.DeleteTimeout = 10 * time.Minute
	}
	if opts.TombstoneTTL <= 0 {
		opts.TombstoneTTL = time.Hour
	}
	if opts.AgentOpenTimeout <= 0 {
		opts.AgentOpenTimeout = 30 * time.Second
	}
	if opts.Secrets == nil {
		opts.Secrets = func(context.Context, journal.Entry) (*userdata.Secrets, error) { return &userdata.Secrets{}, nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	mg := &Manager{
		opts: opts, prov: opts.Provider, pname: opts.Provider.Name(), log: opts.Logger, m: opts.Metrics,
		ctx: ctx, cancel: cancel, sandboxes: map[string]*sandbox{},
	}
	mg.m.SetReconnectSource(mg.Reconnects)
	mg.updateGauge()
	return mg, nil
}

// sandbox is one pod's runtime state. mu serializes lifecycle calls; the
// fields under stateMu may be read by the proxy and status at any time.
type sandbox struct {
	id   string
	log  *slog.Logger
	mu   sync.Mutex
	past *atomic.Uint64 // the manager's pastReconnects

	stateMu sync.Mutex
	entry   journal.Entry // last written entry
	proxy   *proxy.Proxy
	client  *tunnel.Client
	ready   chan struct{} // closed when client is set
	gone    chan struct{} // closed when the sandbox is stopped or failed
}

// state is the sandbox's current lifecycle state.
func (s *sandbox) state() journal.State {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.entry.State
}

// liveLocked counts the sandboxes that have, or may get, a VM; mg.mu is held.
func (mg *Manager) liveLocked() int {
	n := 0
	for _, s := range mg.sandboxes {
		if s.state() != journal.Failed {
			n++
		}
	}
	return n
}

func (s *sandbox) snapshot() journal.Entry {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	e := s.entry
	e.InstanceTypes = slices.Clone(e.InstanceTypes)
	return e
}

func sandboxLogger(base *slog.Logger, e *journal.Entry) *slog.Logger {
	pod := e.PodName
	if e.PodNamespace != "" {
		pod = e.PodNamespace + "/" + e.PodName
	}
	return base.With("sandbox_id", e.SandboxID, "pod", pod)
}

func (mg *Manager) socketPath(id string) string {
	return filepath.Join(mg.opts.PodsDir, id, AgentSocketName)
}

func (mg *Manager) get(id string) (*sandbox, error) {
	if id == "" {
		return nil, invalid("id", "is empty")
	}
	mg.mu.Lock()
	defer mg.mu.Unlock()
	s, ok := mg.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	return s, nil
}

// put writes e to the journal and, once durable, makes it the sandbox's state.
func (mg *Manager) put(s *sandbox, e journal.Entry) error {
	if err := mg.opts.Journal.Put(&e); err != nil {
		return err
	}
	s.stateMu.Lock()
	s.entry = e
	s.stateMu.Unlock()
	mg.updateGauge()
	return nil
}

func (mg *Manager) updateGauge() {
	counts := map[journal.State]int{}
	mg.mu.Lock()
	for _, s := range mg.sandboxes {
		s.stateMu.Lock()
		counts[s.entry.State]++
		s.stateMu.Unlock()
	}
	mg.mu.Unlock()
	for _, st := range journal.States {
		mg.m.Sandboxes.WithLabelValues(string(st)).Set(float64(counts[st]))
	}
}

// cloudError counts a failed provider call.
func (mg *Manager) cloudError(op string, err error) {
	mg.m.CloudErrors.WithLabelValues(mg.pname, op, metrics.ClassLabel(err)).Inc()
}

// retryPolicy returns the retry policy with logging and metrics for op.
func (mg *Manager) retryPolicy(log *slog.Logger, op string) retry.Policy {
	p := mg.opts.Retry
	inner := p.OnRetry
	p.OnRetry = func(n int, err error, d time.Duration) {
		mg.cloudError(op, err)
		log.Warn("provider call failed; retrying", "op", op, "attempt", n, "err", err, "retry_in", d)
		if inner != nil {
			inner(n, err, d)
		}
	}
	return p
}

// Status is one sandbox as status tools see it.
type Status struct {
	journal.Entry
	// Connections is the number of open agent connections.
	Connections int `json:"connections"`
	// TunnelReconnects counts the tunnel's re-dials.
	TunnelReconnects uint64 `json:"tunnel_reconnects"`
}

// Status lists every sandbox, oldest first.
func (mg *Manager) Status() []Status {
	mg.mu.Lock()
	all := make([]*sandbox, 0, len(mg.sandboxes))
	for _, s := range mg.sandboxes {
		all = append(all, s)
	}
	mg.mu.Unlock()
	out := make([]Status, 0, len(all))
	for _, s := range all {
		st := Status{Entry: s.snapshot()}
		s.stateMu.Lock()
		if s.proxy != nil {
			st.Connections = s.proxy.Active()
		}
		if s.client != nil {
			st.TunnelReconnects = s.client.Reconnects()
		}
		s.stateMu.Unlock()
		st.Initdata = "" // large and not needed for status
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return compareStrings(a.SandboxID, b.SandboxID)
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// PodName is "namespace/name" of a sandbox's pod ("" when unknown), for logs.
func (mg *Manager) PodName(id string) string {
	mg.mu.Lock()
	s, ok := mg.sandboxes[id]
	mg.mu.Unlock()
	if !ok {
		return ""
	}
	e := s.snapshot()
	if e.PodNamespace == "" {
		return e.PodName
	}
	return e.PodNamespace + "/" + e.PodName
}

// Owns reports whether vm belongs to a sandbox that may have a VM
// (provisioning, running or stopping) or to the warm pool, for the reconciler.
func (mg *Manager) Owns(vm provider.Instance) bool {
	if vm.Tags[provider.TagWarm] == "true" {
		if p := mg.warmPool(); p != nil && p.Owns(vm) {
			return true
		}
		return mg.ownsTakenWarm(vm)
	}
	id := vm.Tags[provider.TagSandbox]
	mg.mu.Lock()
	s, ok := mg.sandboxes[id]
	mg.mu.Unlock()
	if !ok {
		return false
	}
	e := s.snapshot()
	return e.OwnsVM(vm.ID, vm.Name)
}

// Reconnects is the total of tunnel re-dials over all VMs.
func (mg *Manager) Reconnects() uint64 {
	mg.mu.Lock()
	total := mg.pastReconnects.Load()
	all := make([]*sandbox, 0, len(mg.sandboxes))
	for _, s := range mg.sandboxes {
		all = append(all, s)
	}
	mg.mu.Unlock()
	for _, s := range all {
		s.stateMu.Lock()
		if s.client != nil {
			total += s.client.Reconnects()
		}
		s.stateMu.Unlock()
	}
	return total
}

// Close stops serving agent sockets and tunnels and waits for background
// work, leaving VMs and the journal as they are (a daemon shutdown or
// restart must not disturb running pods).
func (mg *Manager) Close() error {
	mg.mu.Lock()
	if mg.closed {
		mg.mu.Unlock()
		return nil
	}
	mg.closed = true
	all := make([]*sandbox, 0, len(mg.sandboxes))
	for _, s := range mg.sandboxes {
		all = append(all, s)
	}
	mg.mu.Unlock()
	mg.cancel()
	mg.ops.Wait() // in-flight calls end promptly: their work is bound to mg.ctx
	for _, s := range all {
		s.stateMu.Lock()
		p, c := s.proxy, s.client
		s.stateMu.Unlock()
		if p != nil {
			p.Close()
		}
		if c != nil {
			c.Close()
		}
	}
	mg.bg.Wait()
	return nil
}

// begin registers a lifecycle call; the returned func ends it. It fails
// once the manager is closing.
func (mg *Manager) begin(id string) (func(), error) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.closed {
		return nil, fmt.Errorf("sandbox %s: %w: peerpodd is shutting down", id, ErrState)
	}
	mg.ops.Add(1)
	return mg.ops.Done, nil
}

// bound returns ctx ended also when the manager closes.
func (mg *Manager) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(mg.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// goBackground runs f unless the manager is closed.
func (mg *Manager) goBackground(f func(ctx context.Context)) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	if mg.closed {
		return
	}
	mg.bg.Add(1)
	go func() {
		defer mg.bg.Done()
		f(mg.ctx)
	}()
}
