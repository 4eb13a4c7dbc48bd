package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/provider"
)

func TestDo(t *testing.T) {
	fast := Policy{Attempts: 4, Base: time.Millisecond, Max: 5 * time.Millisecond}
	cases := []struct {
		name      string
		errs      []error // returned by successive calls; nil = success
		wantCalls int
		wantErr   string
	}{
		{"ok first", []error{nil}, 1, ""},
		{"throttled then ok", []error{provider.Errorf(provider.ErrThrottled, "slow down"), nil}, 2, ""},
		{"transient thrice then ok", []error{provider.Errorf(provider.ErrTransient, "a"), provider.Errorf(provider.ErrTransient, "b"), provider.Errorf(provider.ErrTransient, "c"), nil}, 4, ""},
		{"not retryable", []error{provider.Errorf(provider.ErrInvalidConfig, "bad image")}, 1, "bad image"},
		{"capacity not retried", []error{provider.Errorf(provider.ErrCapacity, "no room")}, 1, "no room"},
		{"attempts run out", []error{provider.Errorf(provider.ErrTransient, "1"), provider.Errorf(provider.ErrTransient, "2"), provider.Errorf(provider.ErrTransient, "3"), provider.Errorf(provider.ErrTransient, "4"), nil}, 4, "after 4 attempts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := 0
			err := Do(context.Background(), fast, func(context.Context) error {
				calls++
				return c.errs[calls-1]
			})
			if calls != c.wantCalls {
				t.Errorf("calls = %d, want %d", calls, c.wantCalls)
			}
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("err = %v, want %q", err, c.wantErr)
			}
		})
	}
}

func TestDelayHonoursRetryAfter(t *testing.T) {
	p := Policy{Base: time.Millisecond, Max: time.Minute}
	err := &provider.Error{Class: provider.ErrThrottled, RetryAfter: 7 * time.Second, Err: errors.New("429")}
	if d := p.Delay(1, err); d != 7*time.Second {
		t.Fatalf("Delay = %v, want the 7s the cloud asked for", d)
	}
	p.Max = 2 * time.Second
	if d := p.Delay(1, err); d != 2*time.Second {
		t.Fatalf("Delay = %v, want capped at 2s", d)
	}
}

func TestDelayJitterBounds(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for n := 1; n <= 8; n++ {
		want := min(100*time.Millisecond<<(n-1), time.Second)
		for range 50 {
			d := p.Delay(n, errors.New("x"))
			if d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestDoStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Do(ctx, Policy{Attempts: 100, Base: time.Hour}, func(context.Context) error {
		calls++
		cancel()
		return provider.Errorf(provider.ErrTransient, "down")
	})
	if calls != 1 || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "down") {
		t.Fatalf("calls=%d err=%v", calls, err)
	}
}
