package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The binary stops at start-up with a message naming each bad key.
func TestBadConfigStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "peerpodd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CLOUD_PROVIDER=azure", "PROXY_TIMEOUT=soon", "TLS_SKIP_VERIFY=true"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	for _, key := range []string{"ATTESTER", "NODE_NAME", "PROXY_TIMEOUT", "TLS_SKIP_VERIFY"} {
		if !strings.Contains(string(out), key) {
			t.Errorf("output does not name %s:\n%s", key, out)
		}
	}
}
