// Package events posts Kubernetes Events on the pods peerpodd runs (VM
// created, ready, failed, deleted, with how long each took), so `kubectl
// describe pod` shows what happened to the pod's VM.
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/peerpod/peerpod/shim/kube"
)

// Reasons of the events peerpodd posts.
const (
	ReasonCreated = "PeerPodVMCreated"
	ReasonReady   = "PeerPodVMReady"
	ReasonFailed  = "PeerPodVMFailed"
	ReasonDeleted = "PeerPodVMDeleted"
)

// Component is the event source's component.
const Component = "peerpodd"

// postTimeout bounds one event post.
const postTimeout = 10 * time.Second

// Event is one event on a pod.
type Event struct {
	Namespace, Pod, PodUID string
	// Reason is one of the Reason constants; Warning marks failures.
	Reason  string
	Warning bool
	Message string
}

// Recorder posts events in the background: a slow or failing API server
// never holds up a sandbox; a post that fails is logged and dropped.
type Recorder struct {
	Kube *kube.Client
	// Node is the reporting node (the event's source host).
	Node string
	Log  *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time

	wg sync.WaitGroup
}

// Emit posts ev in the background.
func (r *Recorder) Emit(ev Event) {
	if ev.Namespace == "" || ev.Pod == "" {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), postTimeout)
		defer cancel()
		if err := r.Post(ctx, ev); err != nil {
			r.logger().Warn("posting pod event failed", "pod", ev.Namespace+"/"+ev.Pod, "reason", ev.Reason, "err", err)
		}
	}()
}

// Wait waits for the events being posted.
func (r *Recorder) Wait() { r.wg.Wait() }

// Post posts ev now.
func (r *Recorder) Post(ctx context.Context, ev Event) error {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	ts := now().UTC().Format(time.RFC3339)
	suffix := make([]byte, 8)
	rand.Read(suffix)
	typ := "Normal"
	if ev.Warning {
		typ = "Warning"
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata": map[string]any{"name": ev.Pod + "." + hex.EncodeToString(suffix), "namespace": ev.Namespace},
		"involvedObject": map[string]any{
			"apiVersion": "v1", "kind": "Pod", "namespace": ev.Namespace, "name": ev.Pod, "uid": ev.PodUID,
		},
		"reason": ev.Reason, "message": ev.Message, "type": typ,
		"source":         map[string]any{"component": Component, "host": r.Node},
		"firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
		"reportingComponent": Component, "reportingInstance": Component + "-" + r.Node,
	})
	if err != nil {
		return err
	}
	path := "/api/v1/namespaces/" + url.PathEscape(ev.Namespace) + "/events"
	if err := r.Kube.Post(ctx, path, body, nil); err != nil {
		return fmt.Errorf("event %s on pod %s/%s: %w", ev.Reason, ev.Namespace, ev.Pod, err)
	}
	return nil
}

func (r *Recorder) logger() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}
