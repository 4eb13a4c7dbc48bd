// Package annotations parses the annotations the Kata runtime sends with
// CreateVM (pod identity, VM size, image, initdata) into a Spec, rejecting
// bad values with an error naming the annotation key.
package annotations

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Annotation keys sent by the Kata runtime's remote hypervisor.
const (
	SandboxName      = "io.kubernetes.cri.sandbox-name"
	SandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	SandboxUID       = "io.kubernetes.cri.sandbox-uid"

	hv            = "io.katacontainers.config.hypervisor."
	MachineType   = hv + "machine_type"
	DefaultVCPUs  = hv + "default_vcpus"
	DefaultMemory = hv + "default_memory"
	DefaultGPUs   = hv + "default_gpus"
	GPUModel      = hv + "default_gpu_model"
	Image         = hv + "image"
	Initdata      = hv + "cc_init_data"
)

// Limits on values.
const (
	MaxNameLen      = 253     // Kubernetes object names
	MaxTokenLen     = 256     // machine type, image, GPU model
	MaxVCPUs        = 1024    // sanity bound
	MaxMemoryMiB    = 1 << 24 // 16 TiB
	MaxGPUs         = 64
	MaxInitdataSize = 256 << 10
)

// Spec is what a CreateVM's annotations ask for. Zero values mean "not given".
type Spec struct {
	PodName, PodNamespace, PodUID string
	MachineType                   string
	VCPUs, MemoryMiB, GPUs        int64
	GPUModel                      string
	Image                         string
	// Initdata is the annotation's raw value: initdata TOML text, or base64
	// of gzip of it (callers decode and validate it).
	Initdata string
}

// Error is a bad annotation value; Key names the annotation.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("annotation %s: %s", e.Key, e.Msg) }

// Parse reads the annotations. Unknown keys are ignored (the runtime sends
// many); known keys with empty values count as not given.
func Parse(a map[string]string) (*Spec, error) {
	s := &Spec{}
	var err error
	if s.PodName, err = name(a, SandboxName); err != nil {
		return nil, err
	}
	if s.PodNamespace, err = name(a, SandboxNamespace); err != nil {
		return nil, err
	}
	if s.PodUID, err = name(a, SandboxUID); err != nil {
		return nil, err
	}
	if s.MachineType, err = token(a, MachineType); err != nil {
		return nil, err
	}
	if s.GPUModel, err = token(a, GPUModel); err != nil {
		return nil, err
	}
	if s.Image, err = token(a, Image); err != nil {
		return nil, err
	}
	if s.VCPUs, err = count(a, DefaultVCPUs, MaxVCPUs, true); err != nil {
		return nil, err
	}
	if s.MemoryMiB, err = count(a, DefaultMemory, MaxMemoryMiB, false); err != nil {
		return nil, err
	}
	if s.GPUs, err = count(a, DefaultGPUs, MaxGPUs, false); err != nil {
		return nil, err
	}
	if v := a[Initdata]; strings.TrimSpace(v) != "" {
		if len(v) > MaxInitdataSize {
			return nil, &Error{Initdata, fmt.Sprintf("%d bytes, at most %d allowed", len(v), MaxInitdataSize)}
		}
		if !utf8.ValidString(v) {
			return nil, &Error{Initdata, "not valid UTF-8"}
		}
		s.Initdata = v
	}
	return s, nil
}

// name reads a Kubernetes name-like value: printable, no spaces or slashes.
func name(a map[string]string, key string) (string, error) {
	v := a[key]
	if v == "" {
		return "", nil
	}
	if len(v) > MaxNameLen {
		return "", &Error{key, fmt.Sprintf("%d characters, at most %d allowed", len(v), MaxNameLen)}
	}
	for _, r := range v {
		ok := r == '-' || r == '.' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return "", &Error{key, fmt.Sprintf("%q has character %q outside [A-Za-z0-9._-]", v, r)}
		}
	}
	return v, nil
}

// token reads a short printable value without spaces (instance types, image names or ids).
func token(a map[string]string, key string) (string, error) {
	v := strings.TrimSpace(a[key])
	if v == "" {
		return "", nil
	}
	if len(v) > MaxTokenLen {
		return "", &Error{key, fmt.Sprintf("%d characters, at most %d allowed", len(v), MaxTokenLen)}
	}
	for _, r := range v {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return "", &Error{key, fmt.Sprintf("%q has character %q (printable ASCII without spaces allowed)", v, r)}
		}
	}
	return v, nil
}

// count reads a non-negative integer up to max. With fraction, a decimal
// value (newer runtimes send fractional vCPUs) is rounded up.
func count(a map[string]string, key string, max int64, fraction bool) (int64, error) {
	v := strings.TrimSpace(a[key])
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil && fraction {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 && f <= float64(max) {
			return int64(math.Ceil(f)), nil
		}
	}
	if err != nil {
		return 0, &Error{key, fmt.Sprintf("%q is not a non-negative integer", v)}
	}
	if n < 0 {
		return 0, &Error{key, fmt.Sprintf("%d is negative", n)}
	}
	if n > max {
		return 0, &Error{key, fmt.Sprintf("%d exceeds the limit %d", n, max)}
	}
	return n, nil
}
