// Package retry repeats provider calls that failed with a retryable error
// class, with jittered exponential backoff that honours the delay a
// throttled cloud asked for.
package retry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/peerpod/peerpod/provider"
)

// Policy says how often and how long to retry. The zero value is usable:
// see the defaults on each field.
type Policy struct {
	// Attempts is the maximum number of calls (default 5).
	Attempts int
	// Base is the first backoff delay (default 500ms); it doubles each time.
	Base time.Duration
	// Max caps one delay (default 30s), including a cloud's Retry-After.
	Max time.Duration
	// Retryable decides whether an error may be retried (default provider.Retryable).
	Retryable func(error) bool
	// OnRetry, when set, is told about every failed attempt that will be retried.
	OnRetry func(attempt int, err error, delay time.Duration)
}

func (p Policy) withDefaults() Policy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Base <= 0 {
		p.Base = 500 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Retryable == nil {
		p.Retryable = provider.Retryable
	}
	return p
}

// Delay is the wait before attempt n+1 after attempt n (1-based) failed
// with err: the cloud's RetryAfter when it gave one, otherwise "full
// jitter" — a random duration in [d/2, d] where d = Base·2^(n-1) — capped at Max.
func (p Policy) Delay(n int, err error) time.Duration {
	p = p.withDefaults()
	if d, ok := provider.RetryAfter(err); ok {
		return min(d, p.Max)
	}
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d/2 + rand.N(d/2+1)
}

// Do calls op until it succeeds, fails with an error that is not
// retryable, the attempts run out, or ctx ends. The last error is returned,
// wrapped with the attempt count when more than one call was made.
func Do(ctx context.Context, p Policy, op func(ctx context.Context) error) error {
	p = p.withDefaults()
	for n := 1; ; n++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if !p.Retryable(err) || n >= p.Attempts {
			if n > 1 {
				return fmt.Errorf("after %d attempts: %w", n, err)
			}
			return err
		}
		d := p.Delay(n, err)
		if p.OnRetry != nil {
			p.OnRetry(n, err, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("after %d attempts, %w: %w", n, ctx.Err(), err)
		case <-t.C:
		}
	}
}
