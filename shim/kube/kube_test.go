package kube

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"message":"no"}`, http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes/n":
			w.Write([]byte(`{"metadata":{"name":"n"}}`))
		case r.Method == http.MethodPatch && r.Header.Get("Content-Type") == "application/merge-patch+json":
			w.Write([]byte(`{}`))
		default:
			http.Error(w, `{"message":"nodes \"x\" not found"}`, http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	c := &Client{BaseURL: srv.URL, HTTP: srv.Client(), Token: func() (string, error) { return "tok", nil }}
	ctx := context.Background()
	var n struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := c.Get(ctx, "/api/v1/nodes/n", &n); err != nil || n.Metadata.Name != "n" {
		t.Fatalf("Get = %+v, %v", n, err)
	}
	if err := c.Patch(ctx, "/api/v1/nodes/n", "application/merge-patch+json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	err := c.Get(ctx, "/api/v1/nodes/x", &n)
	if !IsNotFound(err) || !strings.Contains(err.Error(), `nodes "x" not found`) {
		t.Fatalf("missing node: %v", err)
	}
	c.Token = func() (string, error) { return "bad", nil }
	if err := c.Get(ctx, "/api/v1/nodes/n", &n); err == nil || IsNotFound(err) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("bad token: %v", err)
	}
}

func TestInClusterOutsideACluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if c, err := InCluster(); c != nil || err != nil {
		t.Fatalf("outside a cluster: %v, %v", c, err)
	}
}
