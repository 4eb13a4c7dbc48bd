// Package daemon assembles peerpodd from its parts: configuration, node CA,
// journal, sandbox manager, hypervisor API server, agent sockets, reconciler,
// probes and metrics. cmd/peerpodd constructs the provider and calls Run;
// tests run the same daemon in-process.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/peerpod/peerpod/podnet"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/events"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/kube"
	"github.com/peerpod/peerpod/shim/metrics"
	"github.com/peerpod/peerpod/shim/nodecap"
	"github.com/peerpod/peerpod/shim/ops"
	"github.com/peerpod/peerpod/shim/pool"
	"github.com/peerpod/peerpod/shim/pullsecrets"
	"github.com/peerpod/peerpod/shim/reconcile"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/shim/sandbox"
	"github.com/peerpod/peerpod/shim/service"
	"github.com/peerpod/peerpod/shim/tlsca"
	"github.com/peerpod/peerpod/tunnel"
)

// Sub-directories of STATE_DIR.
const (
	JournalDir = "sandboxes"
	CADir      = "ca"
	// VNIFile keeps the VXLAN VNIs handed out (TUNNEL_TYPE=vxlan).
	VNIFile = "podnet-vni.json"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Config   *config.Config
	Provider provider.Provider
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// ProbeAddr overrides ":PROBE_PORT" (tests use "127.0.0.1:0").
	ProbeAddr string
	// Secrets supplies each VM's secrets (default: none).
	Secrets sandbox.SecretsFunc
	// Retry overrides the provider retry policy.
	Retry retry.Policy
	// Tunnel overrides tunnel defaults (timeouts, windows).
	Tunnel tunnel.Config
	// Kubernetes uses the in-cluster API server, when there is one, to
	// publish kata.peerpods.io/vm = PEERPODS_LIMIT_PER_NODE on the node and
	// to read pods' image pull secrets (unless Secrets is set). cmd/peerpodd
	// sets it; tests leave it off so they never touch a cluster they happen
	// to run in.
	Kubernetes bool
}

// Daemon is one running peerpodd.
type Daemon struct {
	cfg     *config.Config
	prov    provider.Provider
	log     *slog.Logger
	metrics *metrics.Metrics
	journal *journal.Journal
	mgr     *sandbox.Manager
	rec     *reconcile.Reconciler
	probes  ops.Probes
	opts    Options

	started   chan struct{}
	probeAddr string
	nodecap   *nodecap.Advertiser
	podnet    *podnet.Node
}

// New prepares a daemon: opens the journal and the node CA and builds the
// manager and reconciler. Nothing listens until Run.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	if cfg == nil || opts.Provider == nil {
		return nil, errors.New("daemon: config and provider are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var k *kube.Client
	if opts.Kubernetes {
		var err error
		if k, err = kube.InCluster(); err != nil {
			return nil, err
		}
		if k == nil {
			log.Info("not running in a Kubernetes cluster: node capacity not published, no image pull secrets")
		} else if opts.Secrets == nil {
			opts.Secrets = (&pullsecrets.Source{Kube: k, Log: log}).Secrets
		}
	}
	j, err := journal.Open(filepath.Join(cfg.StateDir, JournalDir))
	if err != nil {
		return nil, fmt.Errorf("STATE_DIR: %w", err)
	}
	var ca *tlsca.CA
	if cfg.CertFile != "" {
		ca, err = tlsca.FromFiles(cfg.CACertFile, cfg.CertFile, cfg.CertKey)
	} else {
		ca, err = tlsca.LoadOrCreate(filepath.Join(cfg.StateDir, CADir), "peerpodd "+cfg.NodeName)
	}
	if err != nil {
		return nil, err
	}
	var vnis *podnet.VNIs
	if cfg.TunnelType == podnet.ModeVXLAN {
		if vnis, err = podnet.OpenVNIs(filepath.Join(cfg.StateDir, VNIFile), 0); err != nil {
			return nil, fmt.Errorf("STATE_DIR: %w", err)
		}
	}
	pn, err := podnet.NewNode(podnet.Options{Mode: cfg.TunnelType, VXLANPort: cfg.VXLANPort, VNIs: vnis, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("TUNNEL_TYPE: %w", err)
	}
	m := metrics.New()
	mgr, err := sandbox.New(sandbox.Options{
		Provider: opts.Provider, Journal: j, Credentials: ca, PodsDir: cfg.PodsDir, MaxSandboxes: cfg.PodsLimit,
		WarmPoolSize: cfg.WarmPoolSize,
		Attester:     cfg.Attester, DefaultInitdata: cfg.Initdata, ProxyTimeout: cfg.ProxyTimeout,
		ForwarderPort: cfg.ForwarderPort, ClusterID: cfg.ClusterID, NodeName: cfg.NodeName, Tags: cfg.Tags,
		Metrics: m, Logger: log, Retry: opts.Retry, Secrets: opts.Secrets, Tunnel: opts.Tunnel, Events: podEvents(k, cfg.NodeName, log),
		PodNetwork: pn,
	})
	if err != nil {
		return nil, err
	}
	pname := opts.Provider.Name()
	rec, err := reconcile.New(opts.Provider, mgr, reconcile.Options{
		Selector: mgr.Selector(), Grace: cfg.ReconcileGrace, Interval: cfg.ReconcileInterval, Logger: log,
		OnDelete: func(provider.Instance) { m.ReconcilerDeletions.WithLabelValues(pname).Inc() },
		OnError: func(op string, err error) {
			m.CloudErrors.WithLabelValues(pname, "reconcile_"+op, metrics.ClassLabel(err)).Inc()
		},
	})
	if err != nil {
		return nil, err
	}
	var adv *nodecap.Advertiser
	if k != nil {
		if adv, err = nodecap.New(k, cfg.NodeName, cfg.PodUID, cfg.PodsLimit, log); err != nil {
			return nil, err
		}
	}
	return &Daemon{cfg: cfg, prov: opts.Provider, log: log, metrics: m, journal: j, mgr: mgr, rec: rec,
		opts: opts, started: make(chan struct{}), nodecap: adv, podnet: pn}, nil
}

// Manager is the sandbox manager.
func (d *Daemon) Manager() *sandbox.Manager { return d.mgr }

// Metrics are the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// Reconciler is the orphan-VM reconciler.
func (d *Daemon) Reconciler() *reconcile.Reconciler { return d.rec }

// Started is closed once the daemon serves the hypervisor socket.
func (d *Daemon) Started() <-chan struct{} { return d.started }

// ProbeAddr is the probe server's address, valid once Started.
func (d *Daemon) ProbeAddr() string { return d.probeAddr }

// Status is the /status document.
type Status struct {
	Node      string           `json:"node"`
	Cluster   string           `json:"cluster,omitempty"`
	Provider  string           `json:"provider"`
	Attester  string           `json:"attester"`
	Sandboxes []sandbox.Status `json:"sandboxes"`
	// WarmPool is the warm pool's state (absent without one).
	WarmPool *pool.Status `json:"warm_pool,omitempty"`
}

// VMStatus is one provider VM in the /vms document.
type VMStatus struct {
	provider.Instance
	Owned bool `json:"owned"`
}

// Status reports the daemon's sandboxes.
func (d *Daemon) Status() Status {
	return Status{Node: d.cfg.NodeName, Cluster: d.cfg.ClusterID, Provider: d.prov.Name(), Attester: d.cfg.Attester,
		Sandboxes: d.mgr.Status(), WarmPool: d.mgr.WarmPool()}
}

// Run restores the journal, serves the hypervisor API, the agent sockets and
// the probes, runs the reconciler and keeps the warm pool until ctx ends. On
// return pod VMs are left running (a restarted daemon picks them up); warm
// VMs no pod took are deleted.
func (d *Daemon) Run(ctx context.Context) error {
	log := d.log
	log.Info("peerpodd starting", "config", d.cfg)
	for _, w := range d.cfg.Warnings {
		log.Warn(w)
	}
	probeAddr := d.opts.ProbeAddr
	if probeAddr == "" {
		probeAddr = ":" + strconv.Itoa(d.cfg.ProbePort)
	}
	pln, err := net.Listen("tcp", probeAddr)
	if err != nil {
		return fmt.Errorf("PROBE_PORT: %w", err)
	}
	d.probeAddr = pln.Addr().String()
	mux := ops.Handler(&d.probes, d.metrics.Handler(), func() any { return d.Status() })
	mux.HandleFunc("GET /vms", d.serveVMs)
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := hsrv.Serve(pln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("probe server failed", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hsrv.Shutdown(sctx)
		wg.Wait()
	}()

	start := time.Now()
	if err := d.mgr.Restore(ctx); err != nil {
		log.Error("journal restore incomplete", "err", err)
	}
	defer d.podnet.Close() // after the manager: pod devices stay for the next start
	defer d.mgr.Close()
	log.Info("journal restored", "sandboxes", len(d.mgr.Status()), "took", time.Since(start).Round(time.Millisecond))
	d.mgr.StartWarmPool()

	ln, err := service.Listen(d.cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("REMOTE_HYPERVISOR_ENDPOINT: %w", err)
	}
	svc := service.New(d.mgr, log)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- service.Serve(sctx, ln, svc) }()

	if d.nodecap != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.nodecap.Run(sctx) }()
		defer func() {
			wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := d.nodecap.Withdraw(wctx); err != nil {
				log.Warn("withdrawing peer-pod capacity failed", "err", err)
			}
		}()
	}
	wg.Add(3)
	go func() { defer wg.Done(); d.rec.Run(sctx) }()
	go func() { defer wg.Done(); d.sweep(sctx) }()
	go func() { defer wg.Done(); d.validate(sctx) }()

	d.probes.SetStarted()
	close(d.started)
	log.Info("peerpodd ready", "endpoint", d.cfg.Endpoint, "probe_addr", d.probeAddr)

	select {
	case <-ctx.Done():
		stop()
		<-errc
		log.Info("peerpodd stopping; pod VMs are left running, warm VMs are deleted")
		return nil
	case err := <-errc:
		stop()
		return err
	}
}

// validate checks the provider's configuration, marking readiness.
func (d *Daemon) validate(ctx context.Context) {
	for {
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := d.prov.Validate(vctx)
		cancel()
		if err == nil {
			d.probes.SetReady("provider", true, "")
			return
		}
		if ctx.Err() != nil {
			return
		}
		d.probes.SetReady("provider", false, err.Error())
		d.log.Error("provider validation failed", "provider", d.prov.Name(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}

func (d *Daemon) sweep(ctx context.Context) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.mgr.Sweep()
		}
	}
}

func (d *Daemon) serveVMs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	vms, err := d.prov.List(ctx, d.mgr.Selector())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out := make([]VMStatus, 0, len(vms))
	for _, vm := range vms {
		out = append(out, VMStatus{Instance: vm, Owned: d.mgr.Owns(vm)})
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// podEvents posts the sandboxes' VM transitions as Events on their pods
// (nil outside a cluster).
func podEvents(k *kube.Client, node string, log *slog.Logger) sandbox.EventFunc {
	if k == nil {
		return nil
	}
	rec := &events.Recorder{Kube: k, Node: node, Log: log}
	return func(e journal.Entry, reason string, warning bool, msg string) {
		rec.Emit(events.Event{Namespace: e.PodNamespace, Pod: e.PodName, PodUID: e.PodUID, Reason: reason, Warning: warning, Message: msg})
	}
}
