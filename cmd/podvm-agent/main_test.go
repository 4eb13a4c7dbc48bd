package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/agent/policy"
	pb "github.com/peerpod/peerpod/api/agent"
)

// TestReadyAuthorizer: agent requests wait for the VM's set-up and the policy
// engine, and are decided by the engine; a set-up or policy failure denies.
func TestReadyAuthorizer(t *testing.T) {
	noPolicy := func() (*policy.Engine, error) { return policy.New(context.Background(), "", policy.Options{}) }
	ok := func(context.Context) error { return nil }
	tests := []struct {
		name    string
		ready   func(context.Context) error
		build   func() (*policy.Engine, error)
		req     func() (string, error)
		wantErr string
	}{
		{name: "no policy allows guest details", ready: ok, build: noPolicy},
		{name: "no policy denies a container", ready: ok, build: noPolicy, wantErr: "no policy is loaded"},
		{name: "policy does not compile", ready: ok, build: func() (*policy.Engine, error) { return nil, errors.New("rego parse error") }, wantErr: "initdata policy: rego parse error"},
		{name: "modules failed", ready: func(context.Context) error { return errors.New("load overlay.ko") }, build: noPolicy, wantErr: "pod VM not set up: load overlay.ko"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newReadyAuthorizer(tc.ready, tc.build)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			if strings.Contains(tc.name, "container") {
				err = a.Authorize(ctx, "CreateContainer", &pb.CreateContainerRequest{})
			} else {
				err = a.Authorize(ctx, "GetGuestDetails", &pb.GuestDetailsRequest{})
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Authorize err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestReadyAuthorizerWaits: a request waits while the modules load and ends
// with the caller's context.
func TestReadyAuthorizerWaits(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	a := newReadyAuthorizer(func(ctx context.Context) error {
		select {
		case <-block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, func() (*policy.Engine, error) { return policy.New(context.Background(), "", policy.Options{}) })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := a.Authorize(ctx, "GetGuestDetails", &pb.GuestDetailsRequest{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Authorize while set-up runs: err = %v, want the context's deadline", err)
	}
}

func TestWarmUpPolicyDecides(t *testing.T) {
	// The warm-up policy must compile and allow its own sample request,
	// or the warm-up exercises only the error paths.
	e, err := policy.New(context.Background(), warmUpPolicy, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.CreateContainerRequest{ContainerId: "warm-up", OCI: &pb.Spec{
		Process: &pb.Process{Args: []string{"/bin/sh", "-c", "true"}, Env: []string{"PATH=/bin"}},
		Mounts:  []*pb.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
	}}
	if err := e.Authorize(context.Background(), "CreateContainerRequest", req); err != nil {
		t.Fatalf("warm-up request denied: %v", err)
	}
	req.OCI.Process.Args = []string{"/bin/evil"}
	if err := e.Authorize(context.Background(), "CreateContainerRequest", req); err == nil {
		t.Fatal("warm-up policy allowed other args")
	}
}
