package provider

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest VM name every supported cloud accepts.
const MaxNameLen = 63

// VMName is the pod VM name for a pod and sandbox:
// "podvm-<pod>-<first 8 of sandbox id>", lower case, at most 63 characters,
// made only of [a-z0-9-], starting with a letter and not ending in '-', so
// it is a valid Azure VM name, EC2 Name tag, libvirt domain name and DNS label.
func VMName(podName, sandboxID string) (string, error) {
	sid := sanitize(sandboxID)
	if sid == "" {
		return "", Errorf(ErrInvalidConfig, "VM name: sandbox id %q has no usable characters", sandboxID)
	}
	if len(sid) > 8 {
		sid = sid[:8]
	}
	pod := sanitize(podName)
	room := MaxNameLen - len("podvm-") - 1 - len(sid)
	if len(pod) > room {
		pod = strings.TrimRight(pod[:room], "-")
	}
	if pod == "" {
		return fmt.Sprintf("podvm-%s", sid), nil
	}
	return fmt.Sprintf("podvm-%s-%s", pod, sid), nil
}

// sanitize lower-cases s, maps every character outside [a-z0-9] to '-',
// folds runs of '-' and trims them from both ends.
func sanitize(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}
