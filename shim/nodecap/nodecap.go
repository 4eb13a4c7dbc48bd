// Package nodecap advertises the node's peer-pod capacity to Kubernetes as
// cloud-api-adaptor does: the extended resource kata.peerpods.io/vm =
// PEERPODS_LIMIT_PER_NODE in the node's status capacity, and the owner
// annotation kata.peerpods.io/caa-owner = this daemon's pod UID, so that on
// shutdown only the owning daemon withdraws them (rolling restarts stay
// safe). It speaks the API server's REST API directly with the pod's
// service-account token.
package nodecap

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Names used on the node object.
const (
	Resource        = "kata.peerpods.io/vm"
	OwnerAnnotation = "kata.peerpods.io/caa-owner"
)

// In-cluster service-account files.
const (
	saDir     = "/var/run/secrets/kubernetes.io/serviceaccount"
	tokenFile = saDir + "/token"
	caFile    = saDir + "/ca.crt"
)

// Advertiser patches one node. Create it with New or InCluster.
type Advertiser struct {
	// BaseURL is the API server ("https://host:port").
	BaseURL string
	// Client makes the requests (TLS to the API server).
	Client *http.Client
	// Token returns the bearer token (re-read each time: projected tokens rotate).
	Token func() (string, error)
	// Node, Owner and Limit are the node name, this daemon's pod UID and the capacity.
	Node, Owner string
	Limit       int
	Log         *slog.Logger
}

// InCluster returns an Advertiser using the pod's service account, or nil
// (and no error) when not running in a cluster.
func InCluster(node, owner string, limit int, log *slog.Logger) (*Advertiser, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, nil
	}
	if owner == "" {
		return nil, errors.New("POD_UID: is required in a cluster (set it from the downward API metadata.uid)")
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("service account CA %s: no certificate", caFile)
	}
	return &Advertiser{
		BaseURL: "https://" + net.JoinHostPort(host, port),
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}},
		Token: func() (string, error) {
			b, err := os.ReadFile(tokenFile)
			return strings.TrimSpace(string(b)), err
		},
		Node: node, Owner: owner, Limit: limit, Log: log,
	}, nil
}

func escape(key string) string { // JSON pointer token (RFC 6901)
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// Advertise sets the owner annotation, then the capacity.
func (a *Advertiser) Advertise(ctx context.Context) error {
	meta, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{OwnerAnnotation: a.Owner}}})
	if err := a.patch(ctx, "", "application/merge-patch+json", meta); err != nil {
		return fmt.Errorf("node %s: annotate owner: %w", a.Node, err)
	}
	capPatch, _ := json.Marshal([]map[string]any{
		{"op": "add", "path": "/status/capacity/" + escape(Resource), "value": strconv.Itoa(a.Limit)},
	})
	if err := a.patch(ctx, "/status", "application/json-patch+json", capPatch); err != nil {
		return fmt.Errorf("node %s: set %s capacity: %w", a.Node, Resource, err)
	}
	a.logger().Info("advertised peer-pod capacity", "node", a.Node, "resource", Resource, "limit", a.Limit)
	return nil
}

// Withdraw removes the capacity and the owner annotation, but only while
// the annotation still names this daemon (a newer daemon may have taken over).
func (a *Advertiser) Withdraw(ctx context.Context) error {
	owner, err := a.currentOwner(ctx)
	if err != nil {
		return fmt.Errorf("node %s: %w", a.Node, err)
	}
	if owner != a.Owner {
		a.logger().Info("not withdrawing peer-pod capacity: another daemon owns the node", "owner", owner)
		return nil
	}
	test := map[string]any{"op": "test", "path": "/metadata/annotations/" + escape(OwnerAnnotation), "value": a.Owner}
	capPatch, _ := json.Marshal([]map[string]any{test, {"op": "remove", "path": "/status/capacity/" + escape(Resource)}})
	if err := a.patch(ctx, "/status", "application/json-patch+json", capPatch); err != nil {
		return fmt.Errorf("node %s: remove %s capacity: %w", a.Node, Resource, err)
	}
	metaPatch, _ := json.Marshal([]map[string]any{test, {"op": "remove", "path": "/metadata/annotations/" + escape(OwnerAnnotation)}})
	if err := a.patch(ctx, "", "application/json-patch+json", metaPatch); err != nil {
		return fmt.Errorf("node %s: remove owner annotation: %w", a.Node, err)
	}
	a.logger().Info("withdrew peer-pod capacity", "node", a.Node)
	return nil
}

// Run advertises, retrying with backoff until it succeeds or ctx ends.
func (a *Advertiser) Run(ctx context.Context) {
	backoff := time.Second
	for {
		err := a.Advertise(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		a.logger().Warn("advertising peer-pod capacity failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
}

func (a *Advertiser) logger() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

func (a *Advertiser) nodeURL(sub string) string {
	return a.BaseURL + "/api/v1/nodes/" + url.PathEscape(a.Node) + sub
}

func (a *Advertiser) do(req *http.Request) ([]byte, error) {
	tok, err := a.Token()
	if err != nil {
		return nil, fmt.Errorf("service account token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := a.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
		}
		json.Unmarshal(body, &st)
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, st.Message)
	}
	return body, nil
}

func (a *Advertiser) patch(ctx context.Context, sub, ctype string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, a.nodeURL(sub), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	_, err = a.do(req)
	return err
}

func (a *Advertiser) currentOwner(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.nodeURL(""), nil)
	if err != nil {
		return "", err
	}
	body, err := a.do(req)
	if err != nil {
		return "", err
	}
	var n struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return "", fmt.Errorf("decode node: %w", err)
	}
	return n.Metadata.Annotations[OwnerAnnotation], nil
}
