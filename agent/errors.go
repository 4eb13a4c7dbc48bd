package agent

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func denyf(method, format string, args ...any) error {
	return status.Errorf(codes.PermissionDenied, "%s: %s", method, fmt.Sprintf(format, args...))
}
