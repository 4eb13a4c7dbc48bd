package policy

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxPrints bounds the policy print output carried by a denial.
const maxPrints = 4096

// DeniedError is a policy denial. On the ttrpc wire it is PermissionDenied
// with the message "<Request> is blocked by policy rule <Rule>: <reason>: <prints>".
type DeniedError struct {
	Method  string // RPC name, e.g. "ReadStdout"
	Request string // request message name, e.g. "ReadStreamRequest"
	Rule    string // data.agent_policy.<Request>, "" without a policy
	Reason  string
	Prints  string // the policy's print() output for this decision, tail-truncated
}

func (d *DeniedError) Error() string {
	var b strings.Builder
	b.WriteString(d.Request)
	if d.Method != "" && d.Method+"Request" != d.Request {
		fmt.Fprintf(&b, " (%s)", d.Method)
	}
	b.WriteString(" is blocked by policy")
	if d.Rule != "" {
		b.WriteString(" rule " + d.Rule)
	}
	if d.Reason != "" {
		b.WriteString(": " + d.Reason)
	}
	if d.Prints != "" {
		b.WriteString(": " + d.Prints)
	}
	return b.String()
}

// GRPCStatus makes ttrpc send PermissionDenied.
func (d *DeniedError) GRPCStatus() *status.Status {
	return status.New(codes.PermissionDenied, d.Error())
}

// IsDenied reports whether err is a policy denial. The agent answers a
// denied ReadStdout/ReadStderr with empty data rather than an error.
func IsDenied(err error) bool {
	var d *DeniedError
	return errors.As(err, &d)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
