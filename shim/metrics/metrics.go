// Package metrics holds peerpodd's Prometheus metrics, in a registry of its
// own (no global default registry), and the HTTP handler that exposes them.
package metrics

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerpod/peerpod/provider"
)

// Metrics are the node daemon's metrics. Create them with New.
type Metrics struct {
	// Registry holds every metric below plus the Go and process collectors.
	Registry *prometheus.Registry
	// Sandboxes counts sandboxes by state ("created", "running", ...).
	Sandboxes *prometheus.GaugeVec
	// VMCreateSeconds is how long provider.Create took, by provider.
	VMCreateSeconds *prometheus.HistogramVec
	// AgentReadySeconds is how long from StartVM until the agent answered
	// Health.Check through the tunnel, by provider.
	AgentReadySeconds *prometheus.HistogramVec
	// CloudErrors counts failed provider calls by provider, operation and class.
	CloudErrors *prometheus.CounterVec
	// TunnelReconnects counts tunnel re-dials to pod VMs; its value comes
	// from the function given to SetReconnectSource.
	TunnelReconnects prometheus.CounterFunc
	// ReconcilerDeletions counts orphan VMs the reconciler deleted, by provider.
	ReconcilerDeletions *prometheus.CounterVec
	// StartFailures counts StartVM calls that failed, by provider and cause class.
	StartFailures *prometheus.CounterVec
	// WarmVMs counts the warm pool's VMs by state (booting, ready).
	WarmVMs *prometheus.GaugeVec
	// WarmStarts counts StartVM calls by how the warm pool served them.
	WarmStarts *prometheus.CounterVec

	reconnects atomic.Pointer[func() uint64]
}

// SetReconnectSource sets the function that reports the total number of
// tunnel reconnects (monotonic) for TunnelReconnects.
func (m *Metrics) SetReconnectSource(f func() uint64) { m.reconnects.Store(&f) }

// New makes the metrics in a fresh registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Sandboxes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "peerpod", Name: "sandboxes",
			Help: "Sandboxes known to this node, by lifecycle state.",
		}, []string{"state"}),
		VMCreateSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "peerpod", Name: "vm_create_seconds",
			Help:    "Time taken by the provider to create a pod VM.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600},
		}, []string{"provider"}),
		AgentReadySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "peerpod", Name: "agent_ready_seconds",
			Help:    "Time from StartVM until the pod VM's agent answered Health.Check through the tunnel.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600},
		}, []string{"provider"}),
		CloudErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "peerpod", Name: "cloud_api_errors_total",
			Help: "Failed provider calls, by provider, operation and error class.",
		}, []string{"provider", "op", "class"}),
		ReconcilerDeletions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "peerpod", Name: "reconciler_deletions_total",
			Help: "Orphan pod VMs (no journal entry) deleted by the reconciler.",
		}, []string{"provider"}),
		StartFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "peerpod", Name: "start_failures_total",
			Help: "StartVM calls that failed, by provider and cause.",
		}, []string{"provider", "cause"}),
		WarmVMs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "peerpod", Name: "warm_vms",
			Help: "VMs of the node's warm pool not yet taken by a sandbox, by state (booting, ready).",
		}, []string{"state"}),
		WarmStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "peerpod", Name: "warm_pool_starts_total",
			Help: "StartVM calls by how the warm pool served them: hit (a warm VM took the sandbox), empty (none left), unfit (the pod asked for another size or image), refused (a warm VM failed to take it; a new VM was booted).",
		}, []string{"result"}),
	}
	m.TunnelReconnects = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "peerpod", Name: "tunnel_reconnects_total",
		Help: "Tunnel sessions to pod VMs re-dialled after they ended.",
	}, func() float64 {
		if f := m.reconnects.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.Registry.MustRegister(
		m.Sandboxes, m.VMCreateSeconds, m.AgentReadySeconds, m.CloudErrors,
		m.TunnelReconnects, m.ReconcilerDeletions, m.StartFailures, m.WarmVMs, m.WarmStarts,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ClassLabel is the "class" label value for a provider error.
func ClassLabel(err error) string {
	switch provider.ClassOf(err) {
	case provider.ErrNotFound:
		return "not_found"
	case provider.ErrThrottled:
		return "throttled"
	case provider.ErrCapacity:
		return "capacity"
	case provider.ErrInvalidConfig:
		return "invalid_config"
	case provider.ErrTransient:
		return "transient"
	case provider.ErrConflict:
		return "conflict"
	}
	return "unclassified"
}
