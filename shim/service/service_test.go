package service

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/sandbox"
)

func TestCode(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{&sandbox.InvalidError{Field: "id", Msg: "is empty"}, codes.InvalidArgument},
		{fmt.Errorf("x: %w", sandbox.ErrNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", sandbox.ErrExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", sandbox.ErrState), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", sandbox.ErrLimit), codes.ResourceExhausted},
		{fmt.Errorf("create: %w", provider.Errorf(provider.ErrCapacity, "no room")), codes.ResourceExhausted},
		{fmt.Errorf("create: %w", provider.Errorf(provider.ErrThrottled, "429")), codes.Unavailable},
		{fmt.Errorf("create: %w", provider.Errorf(provider.ErrInvalidConfig, "bad image")), codes.InvalidArgument},
		{&sandbox.AgentTimeoutError{VM: "v", Timeout: time.Second}, codes.DeadlineExceeded},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{errors.New("disk on fire"), codes.Internal},
	}
	for _, c := range cases {
		if got := Code(c.err); got != c.want {
			t.Errorf("Code(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestCodeAgentTimeoutWins(t *testing.T) {
	err := fmt.Errorf("start: %w", &sandbox.AgentTimeoutError{VM: "v", Timeout: time.Second, Last: context.Canceled})
	if got := Code(err); got != codes.DeadlineExceeded {
		t.Fatalf("Code = %v", got)
	}
}
