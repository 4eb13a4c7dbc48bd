package events

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/shim/kube"
)

// The API server itself is exercised in test/k8s; this checks the document.
func TestPostDocument(t *testing.T) {
	var got map[string]any
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	r := &Recorder{Kube: &kube.Client{BaseURL: srv.URL, HTTP: srv.Client(), Token: func() (string, error) { return "tok", nil }},
		Node: "n1", Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	tests := []struct {
		ev       Event
		wantType string
	}{
		{Event{Namespace: "shop", Pod: "web", PodUID: "u1", Reason: ReasonReady, Message: "ready in 2s"}, "Normal"},
		{Event{Namespace: "shop", Pod: "web", Reason: ReasonFailed, Warning: true, Message: "boom"}, "Warning"},
	}
	for _, tc := range tests {
		if err := r.Post(context.Background(), tc.ev); err != nil {
			t.Fatal(err)
		}
		obj := got["involvedObject"].(map[string]any)
		if path != "/api/v1/namespaces/shop/events" || got["type"] != tc.wantType || got["reason"] != tc.ev.Reason ||
			obj["name"] != "web" || obj["kind"] != "Pod" || got["lastTimestamp"] != "2026-01-02T03:04:05Z" ||
			!strings.HasPrefix(got["metadata"].(map[string]any)["name"].(string), "web.") {
			t.Errorf("posted %s %v", path, got)
		}
	}
	r.Kube.Token = func() (string, error) { return "wrong", nil }
	if err := r.Post(context.Background(), tests[0].ev); err == nil || !strings.Contains(err.Error(), "PeerPodVMReady") {
		t.Errorf("refused post: %v", err)
	}
	// Emit without a pod does nothing; with one it posts in the background.
	r.Emit(Event{Reason: ReasonCreated})
	r.Emit(tests[0].ev)
	r.Wait()
}
