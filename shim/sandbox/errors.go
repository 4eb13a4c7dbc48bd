package sandbox

import (
	"errors"
	"fmt"
)

// Error kinds returned by the Manager; the hypervisor service maps them to
// ttrpc status codes.
var (
	// ErrNotFound: no sandbox has the id.
	ErrNotFound = errors.New("sandbox not found")
	// ErrExists: CreateVM for an id already in use past "created".
	ErrExists = errors.New("sandbox already exists")
	// ErrState: the call does not fit the sandbox's state.
	ErrState = errors.New("sandbox state forbids the call")
	// ErrLimit: CreateVM for a sandbox beyond Options.MaxSandboxes.
	ErrLimit = errors.New("the node's peer-pod limit is reached")
)

// InvalidError is a bad request field; Field names it (the request field
// "id", or an annotation key).
type InvalidError struct {
	Field string
	Msg   string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Msg) }

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}
