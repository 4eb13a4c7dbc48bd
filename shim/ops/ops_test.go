package ops

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProbes(t *testing.T) {
	var p Probes
	srv := httptest.NewServer(Handler(&p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("m 1\n")) }),
		func() any { return map[string]int{"sandboxes": 2} }))
	t.Cleanup(srv.Close)
	steps := []struct {
		do               func()
		healthz, startup int
		readyz           int
		readyBody        string
	}{
		{func() {}, 200, 503, 503, "starting"},
		{p.SetStarted, 200, 200, 200, "ok"},
		{func() { p.SetReady("provider", false, "credentials rejected") }, 200, 200, 503, "credentials rejected"},
		{func() { p.SetReady("provider", true, "") }, 200, 200, 200, "ok"},
	}
	for i, s := range steps {
		s.do()
		if c, _ := get(t, srv, PathHealthz); c != s.healthz {
			t.Errorf("step %d healthz %d", i, c)
		}
		if c, _ := get(t, srv, PathStartup); c != s.startup {
			t.Errorf("step %d startup %d", i, c)
		}
		if c, b := get(t, srv, PathReadyz); c != s.readyz || !strings.Contains(b, s.readyBody) {
			t.Errorf("step %d readyz %d %q", i, c, b)
		}
	}
	if c, b := get(t, srv, PathMetrics); c != 200 || b != "m 1\n" {
		t.Errorf("metrics %d %q", c, b)
	}
	if c, b := get(t, srv, PathStatus); c != 200 || !strings.Contains(b, `"sandboxes": 2`) {
		t.Errorf("status %d %q", c, b)
	}
}
