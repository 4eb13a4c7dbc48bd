package sandbox

import "errors"

// Error classes; the service maps them to ttrpc status codes.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrInvalid       = errors.New("invalid argument")
	ErrPrecondition  = errors.New("failed precondition")
)
