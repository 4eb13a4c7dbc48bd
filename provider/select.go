package provider

import (
	"fmt"
	"slices"
	"strings"
)

// SelectInstanceTypes chooses the instance types to try for a pod, best first.
// The first is the choice; the rest are fallbacks for when the cloud reports
// ErrCapacity for the ones before them.
//
// The order of precedence is:
//  1. explicit (the machine_type annotation): it must be allowed; no fallbacks.
//  2. want has any of vCPUs, memory or GPUs set: every allowed type that fits,
//     smallest first (fewest GPUs, then least memory, then fewest vCPUs, then
//     name). Types with GPUs are only chosen when GPUs are asked for.
//  3. otherwise def, followed by the allowed types at least as large.
//
// The allowed types are allow plus def; with an empty allow list only def is
// allowed, as cloud-api-adaptor does. types describes the sizes the provider
// knows; a type missing from it cannot be checked for fit and is skipped in
// case 2 (and returned alone in case 3). The result does not depend on the
// order of types or allow.
func SelectInstanceTypes(types []InstanceType, want Resources, explicit string, allow []string, def string) ([]string, error) {
	if want.VCPUs < 0 || want.MemoryMiB < 0 || want.GPUs < 0 {
		return nil, Errorf(ErrInvalidConfig, "instance type: negative resources requested (%d vCPUs, %d MiB, %d GPUs)", want.VCPUs, want.MemoryMiB, want.GPUs)
	}
	allowed := map[string]bool{}
	for _, a := range allow {
		if a = strings.TrimSpace(a); a != "" {
			allowed[a] = true
		}
	}
	if def != "" {
		allowed[def] = true
	}
	if explicit != "" {
		if !allowed[explicit] {
			return nil, Errorf(ErrInvalidConfig, "instance type %q (machine_type annotation) is not in the allowed list [%s]", explicit, strings.Join(sortedKeys(allowed), ", "))
		}
		return []string{explicit}, nil
	}
	known := map[string]InstanceType{}
	for _, t := range types {
		if allowed[t.Name] {
			known[t.Name] = t
		}
	}
	if want == (Resources{}) {
		if def == "" {
			return nil, Errorf(ErrInvalidConfig, "instance type: no default instance type configured")
		}
		d, ok := known[def]
		if !ok {
			return []string{def}, nil
		}
		rest := fitting(known, Resources{VCPUs: d.VCPUs, MemoryMiB: d.MemoryMiB, GPUs: d.GPUs})
		out := []string{def}
		for _, t := range rest {
			if t.Name != def {
				out = append(out, t.Name)
			}
		}
		return out, nil
	}
	fits := fitting(known, want)
	if len(fits) == 0 {
		return nil, Errorf(ErrInvalidConfig, "instance type: none of the allowed types [%s] fits %d vCPUs, %d MiB memory, %d GPUs", strings.Join(sortedKeys(allowed), ", "), want.VCPUs, want.MemoryMiB, want.GPUs)
	}
	out := make([]string, len(fits))
	for i, t := range fits {
		out[i] = t.Name
	}
	return out, nil
}

// fitting returns the types in known that satisfy want, smallest first.
func fitting(known map[string]InstanceType, want Resources) []InstanceType {
	var fits []InstanceType
	for _, t := range known {
		if Fits(t, want) {
			fits = append(fits, t)
		}
	}
	slices.SortFunc(fits, CompareSize)
	return fits
}

// Fits reports whether t satisfies want. A type with GPUs fits only a request for GPUs.
func Fits(t InstanceType, want Resources) bool {
	if want.GPUs == 0 && t.GPUs > 0 {
		return false
	}
	return t.VCPUs >= want.VCPUs && t.MemoryMiB >= want.MemoryMiB && t.GPUs >= want.GPUs
}

// CompareSize orders instance types smallest first: GPUs, memory, vCPUs, then name.
func CompareSize(a, b InstanceType) int {
	switch {
	case a.GPUs != b.GPUs:
		return cmpInt(a.GPUs, b.GPUs)
	case a.MemoryMiB != b.MemoryMiB:
		return cmpInt(a.MemoryMiB, b.MemoryMiB)
	case a.VCPUs != b.VCPUs:
		return cmpInt(a.VCPUs, b.VCPUs)
	}
	return strings.Compare(a.Name, b.Name)
}

func cmpInt(a, b int64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ParseList parses a comma-separated list config value ("a, b,c"), dropping empty items.
func ParseList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// String renders r for logs.
func (r Resources) String() string {
	return fmt.Sprintf("%d vCPUs, %d MiB, %d GPUs", r.VCPUs, r.MemoryMiB, r.GPUs)
}
