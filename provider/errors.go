package provider

import (
	"errors"
	"fmt"
	"time"
)

// Error classes. Providers wrap cloud errors so that errors.Is(err, ErrX)
// holds for exactly one class; callers decide to retry or give up on the class.
var (
	// ErrNotFound: the VM or resource does not exist.
	ErrNotFound = errors.New("not found")
	// ErrThrottled: the cloud rate-limited the call; retry after a delay.
	ErrThrottled = errors.New("throttled")
	// ErrCapacity: the instance type is out of capacity or quota; try another.
	ErrCapacity = errors.New("out of capacity")
	// ErrInvalidConfig: the configuration or request is wrong; retrying won't help.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrTransient: a passing failure (timeout, 5xx); retry with backoff.
	ErrTransient = errors.New("transient failure")
	// ErrConflict: the resource is in a state that forbids the call right now.
	ErrConflict = errors.New("conflict")
)

// Error is a classified provider error.
type Error struct {
	// Class is one of the Err* sentinels above.
	Class error
	// RetryAfter is the delay the cloud asked for (throttling), zero if none.
	RetryAfter time.Duration
	// Err is the underlying error.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Class.Error()
	}
	return fmt.Sprintf("%v: %v", e.Class, e.Err)
}

// Unwrap returns both the class and the cause so errors.Is works on either.
func (e *Error) Unwrap() []error { return []error{e.Class, e.Err} }

// Classify wraps err with class. A nil err gives nil.
func Classify(class error, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: class, Err: err}
}

// Errorf makes a classified error from a format string.
func Errorf(class error, format string, args ...any) error {
	return &Error{Class: class, Err: fmt.Errorf(format, args...)}
}

// RetryAfter reports the delay a throttled error asked for, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var pe *Error
	if errors.As(err, &pe) && pe.RetryAfter > 0 {
		return pe.RetryAfter, true
	}
	return 0, false
}

// ClassOf returns the class of err, or nil when it is not classified.
func ClassOf(err error) error {
	for _, c := range []error{ErrNotFound, ErrThrottled, ErrCapacity, ErrInvalidConfig, ErrConflict, ErrTransient} {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}

// Retryable reports whether a call that failed with err may succeed if repeated.
func Retryable(err error) bool {
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrTransient) || errors.Is(err, ErrConflict)
}
