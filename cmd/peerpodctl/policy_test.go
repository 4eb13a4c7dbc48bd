package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/api/initdata"
)

func runCmd(t *testing.T, cmd *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func TestInitdataDigestCmd(t *testing.T) {
	dir := t.TempDir()
	doc := "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\n'''\n"
	plain := filepath.Join(dir, "initdata.toml")
	if err := os.WriteFile(plain, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	anno, _ := initdata.EncodeAnnotation([]byte(doc))
	encoded := filepath.Join(dir, "anno.txt")
	if err := os.WriteFile(encoded, []byte(anno), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(doc))
	want := "sha256 " + hex.EncodeToString(sum[:]) + "\n"
	for _, f := range []string{plain, encoded} {
		out, _, err := runCmd(t, newInitdataCmd(), "digest", f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, want) || !strings.Contains(out, "snp host_data "+hex.EncodeToString(sum[:])) {
			t.Fatalf("output %q", out)
		}
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("version = \"9\"\nalgorithm = \"sha256\"\n"), 0o600)
	if _, _, err := runCmd(t, newInitdataCmd(), "digest", bad); err == nil || !strings.Contains(err.Error(), `version "9"`) {
		t.Fatalf("bad version: %v", err)
	}
}

func TestPolicyGenerateCmd(t *testing.T) {
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	y := "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: app\n    image: \"registry.example/app@sha256:" + strings.Repeat("a", 64) + "\"\n    command: [/app]\n"
	if err := os.WriteFile(pod, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	rego := filepath.Join(dir, "policy.rego")
	out, stderr, err := runCmd(t, newPolicyCmd(), "generate", "-f", pod, "--offline", "-o", rego)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "warning:") {
		t.Fatalf("no offline warning: %q", stderr)
	}
	prefix := "    " + initdata.Annotation + ": "
	var value string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			value = strings.TrimPrefix(l, prefix)
		}
	}
	text, err := initdata.DecodeAnnotation(value)
	if err != nil {
		t.Fatalf("annotation in %q: %v", out, err)
	}
	id, err := initdata.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(rego)
	if err != nil || string(written) != id.Policy() {
		t.Fatalf("-o file differs from the policy in the annotation (%v)", err)
	}
	if !strings.Contains(out, hex.EncodeToString(id.Digest())) {
		t.Fatalf("digest not printed: %q", out)
	}
	if _, _, err := runCmd(t, newPolicyCmd(), "generate"); err == nil || !strings.Contains(err.Error(), "-f is required") {
		t.Fatalf("missing -f: %v", err)
	}
}
