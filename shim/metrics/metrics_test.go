package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerExposesOwnMetrics(t *testing.T) {
	m := New()
	m.Sandboxes.WithLabelValues("running").Set(3)
	m.VMCreateSeconds.WithLabelValues("proc").Observe(1.5)
	m.CloudErrors.WithLabelValues("proc", "create", "throttled").Inc()
	m.ReconcilerDeletions.WithLabelValues("proc").Inc()
	m.SetReconnectSource(func() uint64 { return 2 })
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`peerpod_sandboxes{state="running"} 3`,
		`peerpod_vm_create_seconds_count{provider="proc"} 1`,
		`peerpod_cloud_api_errors_total{class="throttled",op="create",provider="proc"} 1`,
		`peerpod_reconciler_deletions_total{provider="proc"} 1`,
		`peerpod_tunnel_reconnects_total 2`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
