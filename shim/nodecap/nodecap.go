// Package nodecap advertises the node's peer-pod capacity to Kubernetes as
// cloud-api-adaptor does: the extended resource kata.peerpods.io/vm =
// PEERPODS_LIMIT_PER_NODE in the node's status capacity, and the owner
// annotation kata.peerpods.io/caa-owner = this daemon's pod UID, so that on
// shutdown only the owning daemon withdraws them (rolling restarts stay
// safe).
package nodecap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/peerpod/peerpod/shim/kube"
)

// Names used on the node object.
const (
	Resource        = "kata.peerpods.io/vm"
	OwnerAnnotation = "kata.peerpods.io/caa-owner"
)

// Advertiser patches one node.
type Advertiser struct {
	// Kube is the API client.
	Kube *kube.Client
	// Node, Owner and Limit are the node name, this daemon's pod UID and the capacity.
	Node, Owner string
	Limit       int
	Log         *slog.Logger
}

// New returns an Advertiser for node; owner is this daemon's pod UID.
func New(k *kube.Client, node, owner string, limit int, log *slog.Logger) (*Advertiser, error) {
	if owner == "" {
		return nil, errors.New("POD_UID: is required in a cluster (set it from the downward API metadata.uid)")
	}
	return &Advertiser{Kube: k, Node: node, Owner: owner, Limit: limit, Log: log}, nil
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

func (a *Advertiser) nodePath(sub string) string {
	return "/api/v1/nodes/" + url.PathEscape(a.Node) + sub
}

func (a *Advertiser) patch(ctx context.Context, sub, ctype string, body []byte) error {
	return a.Kube.Patch(ctx, a.nodePath(sub), ctype, body)
}

func (a *Advertiser) currentOwner(ctx context.Context) (string, error) {
	var n struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := a.Kube.Get(ctx, a.nodePath(""), &n); err != nil {
		return "", err
	}
	return n.Metadata.Annotations[OwnerAnnotation], nil
}
