package nodecap

import (
	"context"
	"encoding/json"
	"github.com/peerpod/peerpod/shim/kube"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// apiNode is a stand-in API server holding one node. It applies merge
// patches to metadata and JSON patches (add, remove, test) to the paths
// the advertiser uses, and checks the bearer token.
type apiNode struct {
	mu          sync.Mutex
	annotations map[string]string
	capacity    map[string]string
	requests    []string
}

func (n *apiNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.requests = append(n.requests, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, `{"message":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	status := strings.HasSuffix(r.URL.Path, "/status")
	if strings.TrimSuffix(r.URL.Path, "/status") != "/api/v1/nodes/node-1" {
		http.Error(w, `{"message":"nodes not found"}`, http.StatusNotFound)
		return
	}
	switch {
	case r.Method == http.MethodGet:
	case r.Header.Get("Content-Type") == "application/merge-patch+json":
		var p struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		json.Unmarshal(body, &p)
		for k, v := range p.Metadata.Annotations {
			n.annotations[k] = v
		}
	case r.Header.Get("Content-Type") == "application/json-patch+json":
		var ops []struct{ Op, Path, Value string }
		if err := json.Unmarshal(body, &ops); err != nil {
			http.Error(w, `{"message":"bad patch"}`, http.StatusBadRequest)
			return
		}
		for _, op := range ops {
			var m map[string]string
			var key string
			switch {
			case strings.HasPrefix(op.Path, "/metadata/annotations/"):
				m, key = n.annotations, strings.TrimPrefix(op.Path, "/metadata/annotations/")
			case status && strings.HasPrefix(op.Path, "/status/capacity/"):
				m, key = n.capacity, strings.TrimPrefix(op.Path, "/status/capacity/")
			default:
				http.Error(w, `{"message":"path not allowed"}`, http.StatusUnprocessableEntity)
				return
			}
			key = strings.NewReplacer("~1", "/", "~0", "~").Replace(key)
			switch op.Op {
			case "test":
				if m[key] != op.Value {
					http.Error(w, `{"message":"test failed"}`, http.StatusUnprocessableEntity)
					return
				}
			case "add":
				m[key] = op.Value
			case "remove":
				delete(m, key)
			}
		}
	default:
		http.Error(w, `{"message":"unsupported"}`, http.StatusUnsupportedMediaType)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"annotations": n.annotations}, "status": map[string]any{"capacity": n.capacity}})
}

func setup(t *testing.T) (*apiNode, func(owner string) *Advertiser) {
	node := &apiNode{annotations: map[string]string{}, capacity: map[string]string{"cpu": "4"}}
	srv := httptest.NewTLSServer(node)
	t.Cleanup(srv.Close)
	return node, func(owner string) *Advertiser {
		return &Advertiser{Kube: &kube.Client{BaseURL: srv.URL, HTTP: srv.Client(), Token: func() (string, error) { return "tok", nil }},
			Node: "node-1", Owner: owner, Limit: 10}
	}
}

func TestAdvertiseAndWithdraw(t *testing.T) {
	node, adv := setup(t)
	ctx := context.Background()
	old, cur := adv("uid-old"), adv("uid-new")
	if err := old.Advertise(ctx); err != nil {
		t.Fatal(err)
	}
	if node.capacity[Resource] != "10" || node.annotations[OwnerAnnotation] != "uid-old" {
		t.Fatalf("after advertise: %v %v", node.capacity, node.annotations)
	}
	// A rolling restart: the new daemon takes over, then the old one stops.
	if err := cur.Advertise(ctx); err != nil {
		t.Fatal(err)
	}
	if err := old.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	if node.capacity[Resource] != "10" || node.annotations[OwnerAnnotation] != "uid-new" {
		t.Fatalf("the old daemon withdrew the new one's capacity: %v %v", node.capacity, node.annotations)
	}
	if err := cur.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := node.capacity[Resource]; ok || node.annotations[OwnerAnnotation] != "" || node.capacity["cpu"] != "4" {
		t.Fatalf("after withdraw: %v %v", node.capacity, node.annotations)
	}
}

func TestErrorsNameTheCall(t *testing.T) {
	_, adv := setup(t)
	a := adv("uid")
	a.Kube.Token = func() (string, error) { return "wrong", nil }
	err := a.Advertise(context.Background())
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "node-1") {
		t.Fatalf("err = %v", err)
	}
	b := adv("uid")
	b.Node = "other"
	if err := b.Advertise(context.Background()); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewNeedsOwner(t *testing.T) {
	if _, err := New(&kube.Client{}, "n", "", 10, nil); err == nil || !strings.Contains(err.Error(), "POD_UID") {
		t.Fatalf("err = %v", err)
	}
}
