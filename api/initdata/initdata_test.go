package initdata

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"strings"
	"testing"
)

const sample = `version = "0.1.0"
algorithm = "sha384"

[data]
"policy.rego" = '''
package agent_policy
default AllowRequestsFailingPolicy := false
'''
"aa.toml" = '''
[token_configs]
'''
`

func TestParse(t *testing.T) {
	id, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if id.Version != "0.1.0" || id.Algorithm != "sha384" {
		t.Fatalf("got version %q algorithm %q", id.Version, id.Algorithm)
	}
	if !strings.HasPrefix(id.Policy(), "package agent_policy\n") {
		t.Fatalf("Policy() = %q", id.Policy())
	}
	if id.Data[KeyAA] != "[token_configs]\n" {
		t.Fatalf("aa.toml = %q", id.Data[KeyAA])
	}
	want := sha512.Sum384([]byte(sample))
	if !bytes.Equal(id.Digest(), want[:]) {
		t.Fatalf("Digest = %x, want %x", id.Digest(), want)
	}
}

func TestDigestAlgorithms(t *testing.T) {
	for alg, size := range map[string]int{"sha256": 32, "sha384": 48, "sha512": 64} {
		doc := "version = \"0.1.0\"\nalgorithm = \"" + alg + "\"\n[data]\n"
		id, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if len(id.Digest()) != size {
			t.Fatalf("%s digest is %d bytes, want %d", alg, len(id.Digest()), size)
		}
	}
	id, _ := Parse([]byte("version = \"0.1.0\"\nalgorithm = \"sha256\"\n"))
	want := sha256.Sum256([]byte("version = \"0.1.0\"\nalgorithm = \"sha256\"\n"))
	if !bytes.Equal(id.Digest(), want[:]) {
		t.Fatal("sha256 digest is not over the raw bytes")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"empty", "", "empty"},
		{"bad toml", "version = \n", "line 1"},
		{"no version", "algorithm = \"sha256\"\n", "version is missing"},
		{"other version", "version = \"0.2.0\"\nalgorithm = \"sha256\"\n", `version "0.2.0" is not supported`},
		{"no algorithm", "version = \"0.1.0\"\n", "algorithm is missing"},
		{"md5", "version = \"0.1.0\"\nalgorithm = \"md5\"\n", `algorithm "md5"`},
		{"unknown key", "version = \"0.1.0\"\nalgorithm = \"sha256\"\nextra = 1\n", "unknown key"},
		{"non-string data", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = 3\n", `data."policy.rego" is a int64`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestAnnotationRoundTrip(t *testing.T) {
	enc, err := EncodeAnnotation([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, in string }{
		{"base64 gzip", enc},
		{"base64 gzip with newline", enc + "\n"},
		{"plain toml", sample},
		{"base64 plain", base64.StdEncoding.EncodeToString([]byte(sample))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeAnnotation(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != sample {
				t.Fatalf("DecodeAnnotation = %q", got)
			}
		})
	}
	if _, err := DecodeAnnotation("  "); err == nil {
		t.Fatal("empty annotation accepted")
	}
	var buf bytes.Buffer
	buf.Write([]byte{0x1f, 0x8b, 0, 0})
	if _, err := DecodeAnnotation(base64.StdEncoding.EncodeToString(buf.Bytes())); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("broken gzip: %v", err)
	}
}

func TestAnnotationBomb(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(make([]byte, MaxSize+10))
	zw.Close()
	_, err := DecodeAnnotation(base64.StdEncoding.EncodeToString(buf.Bytes()))
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized gzip: %v", err)
	}
}

func TestMarshal(t *testing.T) {
	data := map[string]string{
		KeyPolicy:   "package agent_policy\n\ndefault X := true\n",
		KeyCDH:      "tricky ''' quotes\r\n",
		"other key": "ends with quote'",
	}
	out, err := Marshal("sha512", data)
	if err != nil {
		t.Fatal(err)
	}
	id, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, out)
	}
	for k, v := range data {
		if id.Data[k] != v {
			t.Fatalf("%s = %q, want %q", k, id.Data[k], v)
		}
	}
	if _, err := Marshal("sha1", nil); err == nil {
		t.Fatal("Marshal accepted sha1")
	}
}

func TestFit(t *testing.T) {
	d := bytes.Repeat([]byte{1}, 48)
	if got := Fit(d, 32); len(got) != 32 || got[31] != 1 {
		t.Fatalf("Fit truncate = %x", got)
	}
	if got := Fit(d[:32], 48); len(got) != 48 || got[31] != 1 || got[32] != 0 {
		t.Fatalf("Fit pad = %x", got)
	}
}
