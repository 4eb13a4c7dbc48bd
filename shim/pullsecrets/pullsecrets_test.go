package pullsecrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/kube"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// apiServer serves fixed objects by path; anything else is 404.
func apiServer(t *testing.T, objects map[string]any, fail map[string]int) *kube.Client {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, ok := fail[r.URL.Path]; ok {
			http.Error(w, `{"message":"injected"}`, code)
			return
		}
		obj, ok := objects[r.URL.Path]
		if !ok {
			http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(obj)
	}))
	t.Cleanup(srv.Close)
	return &kube.Client{BaseURL: srv.URL, HTTP: srv.Client(), Token: func() (string, error) { return "t", nil }}
}

const (
	podPath = "/api/v1/namespaces/shop/pods/web-0"
	saPath  = "/api/v1/namespaces/shop/serviceaccounts/builder"
)

func objects() map[string]any {
	return map[string]any{
		podPath: map[string]any{"spec": map[string]any{"serviceAccountName": "builder",
			"imagePullSecrets": []map[string]string{{"name": "pod-creds"}, {"name": "missing"}}}},
		saPath: map[string]any{"imagePullSecrets": []map[string]string{{"name": "sa-creds"}, {"name": "pod-creds"}, {"name": "opaque"}, {"name": "legacy"}}},
		"/api/v1/namespaces/shop/secrets/pod-creds": map[string]any{"type": "kubernetes.io/dockerconfigjson",
			"data": map[string]string{".dockerconfigjson": b64(`{"auths":{"r1.example":{"auth":"cG9kOnNlY3JldA=="}}}`)}},
		"/api/v1/namespaces/shop/secrets/sa-creds": map[string]any{"type": "kubernetes.io/dockerconfigjson",
			"data": map[string]string{".dockerconfigjson": b64(`{"auths":{"r1.example":{"auth":"c2E6b3RoZXI="},"r2.example":{"auth":"c2E6c2VjcmV0"}}}`)}},
		"/api/v1/namespaces/shop/secrets/opaque": map[string]any{"type": "Opaque", "data": map[string]string{"password": b64("NOT-A-PULL-SECRET")}},
		"/api/v1/namespaces/shop/secrets/legacy": map[string]any{"type": "kubernetes.io/dockercfg",
			"data": map[string]string{".dockercfg": b64(`{"r3.example":{"auth":"bGVnYWN5Onh4"}}`)}},
	}
}

func TestSecrets(t *testing.T) {
	var logs bytes.Buffer
	s := &Source{Kube: apiServer(t, objects(), nil), Log: slog.New(slog.NewJSONHandler(&logs, nil))}
	sec, err := s.Secrets(context.Background(), journal.Entry{SandboxID: "s", PodName: "web-0", PodNamespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(sec.AuthJSON, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"r1.example": "cG9kOnNlY3JldA==", "r2.example": "c2E6c2VjcmV0", "r3.example": "bGVnYWN5Onh4"}
	if len(doc.Auths) != len(want) {
		t.Fatalf("auths %v", doc.Auths)
	}
	for reg, auth := range want {
		if doc.Auths[reg].Auth != auth {
			t.Errorf("%s: auth %q, want %q (pod secrets win over the service account's)", reg, doc.Auths[reg].Auth, auth)
		}
	}
	for _, leak := range []string{"cG9kOnNlY3JldA==", "c2E6c2VjcmV0", "NOT-A-PULL-SECRET", "Tk9ULUEtUFVMTC1TRUNSRVQ="} {
		if strings.Contains(logs.String(), leak) {
			t.Fatalf("a secret reached the log: %s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"secret":"missing"`) || !strings.Contains(logs.String(), `"secret":"opaque"`) {
		t.Fatalf("skipped secrets not named in the log: %s", logs.String())
	}
}

func TestNoSecretsAndErrors(t *testing.T) {
	ctx := context.Background()
	plain := map[string]any{podPath: map[string]any{"spec": map[string]any{}}}
	s := &Source{Kube: apiServer(t, plain, nil)}
	sec, err := s.Secrets(ctx, journal.Entry{PodName: "web-0", PodNamespace: "shop"})
	if err != nil || len(sec.AuthJSON) != 0 {
		t.Fatalf("pod without pull secrets: %s, %v", sec.AuthJSON, err)
	}
	if sec, err := s.Secrets(ctx, journal.Entry{PodName: "gone", PodNamespace: "shop"}); err != nil || len(sec.AuthJSON) != 0 {
		t.Fatalf("missing pod: %v", err)
	}
	if sec, err := s.Secrets(ctx, journal.Entry{}); err != nil || len(sec.AuthJSON) != 0 {
		t.Fatalf("no pod name: %v", err)
	}
	broken := &Source{Kube: apiServer(t, objects(), map[string]int{saPath: http.StatusForbidden})}
	if _, err := broken.Secrets(ctx, journal.Entry{PodName: "web-0", PodNamespace: "shop"}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("API failure: %v", err)
	}
}
