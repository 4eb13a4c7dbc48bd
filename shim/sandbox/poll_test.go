package sandbox

import (
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextAgentPoll(tc.prev, tc.err); got != tc.want {
				t.Errorf("nextAgentPoll(%v, %v) = %v, want %v", tc.prev, tc.err, got, tc.want)
			}
		})
	}
}
