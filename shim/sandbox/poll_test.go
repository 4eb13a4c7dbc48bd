package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestNextAgentPoll(t *testing.T) {
	refused := fmt.Errorf("tunnel: dial 10.0.0.2:15150: %w",
		&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	other := errors.New("tunnel: TLS handshake with 10.0.0.2:15150: EOF")
	unreachable := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
	tests := []struct {
		name string
		prev time.Duration
		err  error
		want time.Duration
	}{
		{"first failure backs off from the minimum", 0, other, agentPollMin},
		{"refused is probed again soon", 0, refused, agentPollRefused},
		{"refused after a long pause", agentPollMax, refused, agentPollRefused},
		{"other failure after refused", agentPollRefused, other, agentPollMin},
		{"doubles", agentPollMin, unreachable, 2 * agentPollMin},
		{"capped", agentPollMax, other, agentPollMax},
		{"capped from just below", agentPollMax - time.Millisecond, other, agentPollMax},
		{"no TCP answer yet is probed again soon", agentPollMax, fmt.Errorf("%w: i/o timeout", errAgentUnreachable), agentPollRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextAgentPoll(tc.prev, tc.err); got != tc.want {
				t.Errorf("nextAgentPoll(%v, %v) = %v, want %v", tc.prev, tc.err, got, tc.want)
			}
		})
	}
}

func TestAgentReachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := agentReachable(context.Background(), addr, time.Second); err != nil {
		t.Fatalf("listening port: %v", err)
	}
	ln.Close()
	err = agentReachable(context.Background(), addr, time.Second)
	if !errors.Is(err, errAgentUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("closed port: err = %v, want errAgentUnreachable wrapping ECONNREFUSED", err)
	}
	if got := nextAgentPoll(agentPollMax, err); got != agentPollRefused {
		t.Fatalf("pause after a refused connect = %v, want %v", got, agentPollRefused)
	}
}
