package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/peerpod/peerpod/provider"
)

// Error codes EC2 answers when an instance type cannot be had now; Create
// moves on to the next candidate type on these.
var capacityCodes = map[string]bool{
	"InsufficientInstanceCapacity": true,
	"InsufficientHostCapacity":     true,
	"InsufficientCapacity":         true,
	"Unsupported":                  true,
	"InstanceLimitExceeded":        true,
	"VcpuLimitExceeded":            true,
}

var throttleCodes = map[string]bool{
	"RequestLimitExceeded":  true,
	"Throttling":            true,
	"ThrottlingException":   true,
	"RequestThrottled":      true,
	"EC2ThrottledException": true,
}

// Codes that mean the configuration (or the credentials) is wrong.
var invalidCodes = map[string]bool{
	"MissingParameter":            true,
	"UnauthorizedOperation":       true,
	"AuthFailure":                 true,
	"InvalidClientTokenId":        true,
	"SignatureDoesNotMatch":       true,
	"OptInRequired":               true,
	"Blocked":                     true,
	"InvalidBlockDeviceMapping":   true,
	"InvalidUserData.Malformed":   true,
	"IdempotentParameterMismatch": true,
	"InvalidInstanceID.Malformed": true,
	"InvalidInstanceType":         true,
}

var invalidPrefixes = []string{
	"InvalidParameter", "InvalidAMIID.", "InvalidSubnetID.", "InvalidGroup.", "InvalidGroupId.",
	"InvalidKeyPair.", "InvalidLaunchTemplateName.", "InvalidLaunchTemplateId.", "InvalidVpcID.",
}

var conflictCodes = map[string]bool{"IncorrectInstanceState": true, "IncorrectState": true}

// classify wraps an SDK error in the provider error class that fits it.
// The SDK's own messages never carry credentials; we add none.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf(format+": %w", append(args, err)...)
	if class := classOf(err); class != nil {
		return &provider.Error{Class: class, Err: wrapped}
	}
	return wrapped
}

func classOf(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // the caller's own deadline; its error tells
	}
	if code := apiCode(err); code != "" {
		switch {
		case throttleCodes[code]:
			return provider.ErrThrottled
		case capacityCodes[code]:
			return provider.ErrCapacity
		case invalidCodes[code]:
			return provider.ErrInvalidConfig
		case conflictCodes[code]:
			return provider.ErrConflict
		}
		for _, p := range invalidPrefixes {
			if strings.HasPrefix(code, p) {
				return provider.ErrInvalidConfig
			}
		}
		if strings.HasSuffix(code, ".NotFound") || strings.HasSuffix(code, "NotFoundException") {
			return provider.ErrNotFound
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		// Status 0: the request was sent but no answer came back.
		if st := re.HTTPStatusCode(); st == 0 || st >= 500 {
			return provider.ErrTransient
		}
		return nil
	}
	// No HTTP answer at all: a connection or timeout failure.
	var ne net.Error
	var se *smithy.OperationError
	if errors.As(err, &ne) || errors.As(err, &se) {
		return provider.ErrTransient
	}
	return nil
}

// apiCode is the EC2 error code of err, "" if it has none.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
