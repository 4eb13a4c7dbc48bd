package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/peerpod/peerpod/provider"
)

// capacityCodes are the ARM error codes meaning "this size cannot be had
// here right now": another size may succeed.
var capacityCodes = map[string]bool{
	"skunotavailable":                       true,
	"allocationfailed":                      true,
	"zonalallocationfailed":                 true,
	"overconstrainedallocationrequest":      true,
	"overconstrainedzonalallocationrequest": true,
	"quotaexceeded":                         true,
}

// armError is an ARM error response in short form: the operation, the HTTP
// status, the error code and the service's message. It unwraps to the
// *azcore.ResponseError.
type armError struct {
	status  int
	code    string
	message string
	err     *azcore.ResponseError
}

func (e *armError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.status)
	if e.code != "" {
		s += " " + e.code
	}
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

func (e *armError) Unwrap() error { return e.err }

// classify wraps err from an Azure call into a classified provider error.
// op describes the call ("create VM podvm-x-1234 (Standard_DC2as_v5)").
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *provider.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return provider.Classify(provider.ErrTransient, fmt.Errorf("%s: %w", op, err))
	}
	var authErr *azidentity.AuthenticationFailedError
	var credErr *azidentity.AuthenticationRequiredError
	if errors.As(err, &authErr) || errors.As(err, &credErr) {
		return provider.Classify(provider.ErrInvalidConfig, fmt.Errorf("%s: Azure credentials: %w", op, err))
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		// Credential-chain errors are plain errors naming "credential".
		if strings.Contains(strings.ToLower(err.Error()), "credential") {
			return provider.Classify(provider.ErrInvalidConfig, fmt.Errorf("%s: Azure credentials: %w", op, err))
		}
		return provider.Classify(provider.ErrTransient, fmt.Errorf("%s: %w", op, err))
	}
	ae := &armError{status: re.StatusCode, code: re.ErrorCode, err: re}
	if re.RawResponse != nil {
		code, msg := errorBody(re.RawResponse)
		if ae.code == "" {
			ae.code = code
		}
		ae.message = msg
	}
	wrapped := fmt.Errorf("%s: %w", op, ae)
	code := strings.ToLower(ae.code)
	msg := strings.ToLower(ae.message)
	switch {
	case capacityCodes[code],
		code == "operationnotallowed" && strings.Contains(msg, "quota"):
		return provider.Classify(provider.ErrCapacity, wrapped)
	case re.StatusCode == http.StatusTooManyRequests || strings.HasSuffix(code, "throttled") || code == "toomanyrequests":
		return &provider.Error{Class: provider.ErrThrottled, RetryAfter: retryAfter(re.RawResponse), Err: wrapped}
	case re.StatusCode == http.StatusNotFound || code == "notfound" || code == "resourcenotfound":
		return provider.Classify(provider.ErrNotFound, wrapped)
	case re.StatusCode == http.StatusConflict:
		return provider.Classify(provider.ErrConflict, wrapped)
	case re.StatusCode == http.StatusBadRequest, re.StatusCode == http.StatusUnauthorized,
		re.StatusCode == http.StatusForbidden, code == "invalidparameter", code == "badrequest":
		return provider.Classify(provider.ErrInvalidConfig, wrapped)
	case re.StatusCode >= 500 || re.StatusCode == http.StatusRequestTimeout:
		return provider.Classify(provider.ErrTransient, wrapped)
	case re.StatusCode >= 400:
		return provider.Classify(provider.ErrInvalidConfig, wrapped)
	}
	// A failed long-running operation may carry a 200 status and only a code.
	return provider.Classify(provider.ErrTransient, wrapped)
}

// errorBody reads the ARM error body {"error":{"code":..,"message":..}}.
func errorBody(resp *http.Response) (code, message string) {
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return "", ""
	}
	var v struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &v) != nil {
		return "", ""
	}
	if v.Error != nil {
		return v.Error.Code, v.Error.Message
	}
	return v.Code, v.Message
}

// retryAfter reads the delay a throttled response asked for: retry-after-ms,
// x-ms-retry-after-ms, or Retry-After in seconds or as an HTTP date.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	for _, h := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := resp.Header.Get(h); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
