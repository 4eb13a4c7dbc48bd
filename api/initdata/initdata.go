// Package initdata parses the Kata/CoCo initdata document: a TOML file with a
// version, a hash algorithm and a [data] table of named files (policy.rego,
// aa.toml, cdh.toml). Its digest, over the uncompressed TOML bytes, is what
// attestation evidence binds.
package initdata

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Annotation is the pod annotation (and CreateVM annotation) that carries
// initdata. On the pod it is base64(gzip(TOML)); in CreateVM the Kata runtime
// passes the decoded TOML text.
const Annotation = "io.katacontainers.config.hypervisor.cc_init_data"

// Version is the only initdata format version this package accepts.
const Version = "0.1.0"

// Well-known keys of the [data] table.
const (
	KeyPolicy = "policy.rego"
	KeyAA     = "aa.toml"
	KeyCDH    = "cdh.toml"
)

// MaxSize bounds the TOML document, compressed or not.
const MaxSize = 8 << 20

// Initdata is a parsed initdata document.
type Initdata struct {
	// Version is the format version ("0.1.0").
	Version string
	// Algorithm is the digest algorithm: "sha256", "sha384" or "sha512".
	Algorithm string
	// Data maps file names (policy.rego, aa.toml, cdh.toml, ...) to contents.
	Data map[string]string
	// Raw is the TOML text exactly as parsed; Digest hashes it.
	Raw []byte
}

type document struct {
	Version   *string        `toml:"version"`
	Algorithm *string        `toml:"algorithm"`
	Data      map[string]any `toml:"data"`
}

// Parse parses and validates an initdata TOML document.
func Parse(text []byte) (*Initdata, error) {
	if len(text) == 0 {
		return nil, errors.New("initdata: document is empty")
	}
	if len(text) > MaxSize {
		return nil, fmt.Errorf("initdata: document is %d bytes, more than %d", len(text), MaxSize)
	}
	var doc document
	dec := toml.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		var serr *toml.StrictMissingError
		if errors.As(err, &serr) && len(serr.Errors) > 0 {
			e := serr.Errors[0]
			row, _ := e.Position()
			return nil, fmt.Errorf("initdata: unknown key %q at line %d (allowed: version, algorithm, data)", strings.Join(e.Key(), "."), row)
		}
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, col := derr.Position()
			return nil, fmt.Errorf("initdata: TOML line %d column %d: %s", row, col, derr.Error())
		}
		return nil, fmt.Errorf("initdata: parse TOML: %w", err)
	}
	if doc.Version == nil {
		return nil, errors.New("initdata: version is missing (want \"0.1.0\")")
	}
	if *doc.Version != Version {
		return nil, fmt.Errorf("initdata: version %q is not supported (want %q)", *doc.Version, Version)
	}
	if doc.Algorithm == nil {
		return nil, errors.New("initdata: algorithm is missing (want sha256, sha384 or sha512)")
	}
	if newHash(*doc.Algorithm) == nil {
		return nil, fmt.Errorf("initdata: algorithm %q is not one of sha256, sha384, sha512", *doc.Algorithm)
	}
	id := &Initdata{Version: *doc.Version, Algorithm: *doc.Algorithm, Data: map[string]string{}, Raw: bytes.Clone(text)}
	for k, v := range doc.Data {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("initdata: data.%q is a %T, want a string", k, v)
		}
		id.Data[k] = s
	}
	return id, nil
}

func newHash(alg string) hash.Hash {
	switch alg {
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// Digest is the hash of Raw (the uncompressed TOML bytes) with Algorithm.
func (id *Initdata) Digest() []byte {
	h := newHash(id.Algorithm)
	h.Write(id.Raw)
	return h.Sum(nil)
}

// Policy returns data."policy.rego", "" when absent.
func (id *Initdata) Policy() string { return id.Data[KeyPolicy] }

// Fit pads digest with zeros or truncates it to n bytes, as Kata does for
// fixed-size launch fields: SNP HOSTDATA (32), TDX MRCONFIGID (48).
func Fit(digest []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, digest)
	return out
}

// DecodeAnnotation turns an annotation value into TOML bytes. It accepts
// base64 of gzip (the pod annotation, what genpolicy writes), base64 of plain
// TOML, or plain TOML (what the Kata runtime passes in CreateVM).
func DecodeAnnotation(s string) ([]byte, error) {
	trimmed := strings.TrimSpace(s)
	if trimmed == "" {
		return nil, errors.New("initdata: annotation is empty")
	}
	if len(trimmed) > MaxSize*2 {
		return nil, fmt.Errorf("initdata: annotation is %d bytes, more than %d", len(trimmed), MaxSize*2)
	}
	raw, err := base64.StdEncoding.DecodeString(trimmed)
	if err != nil {
		// Not base64: plain TOML text (base64 never contains '=' inside, '"' or newlines).
		return []byte(s), nil
	}
	if len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("initdata: annotation gzip: %w", err)
		}
		defer zr.Close()
		out, err := io.ReadAll(io.LimitReader(zr, MaxSize+1))
		if err != nil {
			return nil, fmt.Errorf("initdata: annotation gzip: %w", err)
		}
		if len(out) > MaxSize {
			return nil, fmt.Errorf("initdata: annotation decompresses to more than %d bytes", MaxSize)
		}
		return out, nil
	}
	return raw, nil
}

// EncodeAnnotation returns base64(gzip(text)), the pod annotation value.
func EncodeAnnotation(text []byte) (string, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", fmt.Errorf("initdata: gzip: %w", err)
	}
	if _, err := zw.Write(text); err != nil {
		return "", fmt.Errorf("initdata: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("initdata: gzip: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// Marshal writes an initdata TOML document with the given algorithm and data
// files, keys sorted, values as TOML multi-line literal strings where they
// allow it.
func Marshal(algorithm string, data map[string]string) ([]byte, error) {
	if newHash(algorithm) == nil {
		return nil, fmt.Errorf("initdata: algorithm %q is not one of sha256, sha384, sha512", algorithm)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = %q\nalgorithm = %q\n\n[data]\n", Version, algorithm)
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key, err := toml.Marshal(map[string]string{k: ""})
		if err != nil {
			return nil, fmt.Errorf("initdata: key %q: %w", k, err)
		}
		keyText := strings.TrimSuffix(strings.TrimSpace(string(key)), "= ''")
		keyText = strings.TrimSpace(strings.TrimSuffix(keyText, "= \"\""))
		v := data[k]
		if literalOK(v) {
			fmt.Fprintf(&b, "%s = '''\n%s'''\n", keyText, v)
			continue
		}
		val, err := toml.Marshal(map[string]string{"v": v})
		if err != nil {
			return nil, fmt.Errorf("initdata: value of %q: %w", k, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", keyText, strings.TrimSpace(strings.TrimPrefix(string(val), "v = ")))
	}
	out := []byte(b.String())
	if _, err := Parse(out); err != nil {
		return nil, fmt.Errorf("initdata: marshal produced an invalid document: %w", err)
	}
	return out, nil
}

// literalOK reports whether v can be written as a TOML multi-line literal
// string: no run of three single quotes, and no control character but tab
// and newline.
func literalOK(v string) bool {
	if strings.Contains(v, "'''") {
		return false
	}
	for _, r := range v {
		if (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f {
			return false
		}
	}
	return true
}
