// Package ops serves peerpodd's operational HTTP endpoints on PROBE_PORT:
// /healthz, /readyz and /startup for Kubernetes probes, /metrics for
// Prometheus, and /status (JSON) for peerpodctl.
package ops

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
)

// Paths served.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathStartup = "/startup"
	PathMetrics = "/metrics"
	PathStatus  = "/status"
)

// Probes holds the daemon's probe state. The zero value is "starting".
type Probes struct {
	started atomic.Bool
	mu      sync.Mutex
	notOK   map[string]string // readiness problems by component
}

// SetStarted marks start-up done (journal restored, sockets listening).
func (p *Probes) SetStarted() { p.started.Store(true) }

// SetReady records whether component is ready; a reason explains why not.
func (p *Probes) SetReady(component string, ok bool, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notOK == nil {
		p.notOK = map[string]string{}
	}
	if ok {
		delete(p.notOK, component)
	} else {
		p.notOK[component] = reason
	}
}

// Handler returns the mux: metrics is the /metrics handler, status returns
// the /status document (both may be nil). Callers may add routes to the mux.
func Handler(p *Probes, metrics http.Handler, status func() any) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+PathStartup, func(w http.ResponseWriter, r *http.Request) {
		if !p.started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		if !p.started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		problems := make(map[string]string, len(p.notOK))
		for k, v := range p.notOK {
			problems[k] = v
		}
		p.mu.Unlock()
		if len(problems) > 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]any{"ready": false, "problems": problems})
			return
		}
		w.Write([]byte("ok\n"))
	})
	if metrics != nil {
		mux.Handle("GET "+PathMetrics, metrics)
	}
	if status != nil {
		mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(status())
		})
	}
	return mux
}
