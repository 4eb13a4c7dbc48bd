package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// DefaultMinVNI is the first VNI handed out (cloud-api-adaptor's default).
const DefaultMinVNI = 555000

// maxVNI is the largest 24-bit VNI.
const maxVNI = 1<<24 - 1

// ErrVNIInUse is returned when a VNI is already used by another sandbox or device.
var ErrVNIInUse = errors.New("VNI already in use")

// VNIs hands out VXLAN network identifiers, one per sandbox, and keeps
// them in a file so a restarted peerpodd never reuses a live one.
type VNIs struct {
	path string
	min  uint32
	mu   sync.Mutex
	m    map[string]uint32 // sandbox id → VNI
}

// OpenVNIs loads (or starts) the allocation file at path.
func OpenVNIs(path string, min uint32) (*VNIs, error) {
	if min == 0 {
		min = DefaultMinVNI
	}
	if min > maxVNI {
		return nil, fmt.Errorf("minimum VNI %d exceeds %d", min, maxVNI)
	}
	v := &VNIs{path: path, min: min, m: map[string]uint32{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("VNI allocations: %w", err)
	default:
		if err := json.Unmarshal(b, &v.m); err != nil {
			return nil, fmt.Errorf("VNI allocations %s: %w", path, err)
		}
	}
	return v, nil
}

// Get returns the sandbox's VNI, allocating the lowest free one.
func (v *VNIs) Get(id string) (uint32, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if n, ok := v.m[id]; ok {
		return n, nil
	}
	used := make(map[uint32]bool, len(v.m))
	for _, n := range v.m {
		used[n] = true
	}
	n := v.min
	for used[n] {
		n++
	}
	if n > maxVNI {
		return 0, errors.New("no VNI left")
	}
	v.m[id] = n
	if err := v.save(); err != nil {
		delete(v.m, id)
		return 0, err
	}
	return n, nil
}

// Has says whether the sandbox holds a VNI.
func (v *VNIs) Has(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.m[id]
	return ok
}

// Release frees the sandbox's VNI.
func (v *VNIs) Release(id string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	n, ok := v.m[id]
	if !ok {
		return nil
	}
	delete(v.m, id)
	if err := v.save(); err != nil {
		v.m[id] = n
		return err
	}
	return nil
}

// InUse lists the allocated VNIs in order.
func (v *VNIs) InUse() []uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]uint32, 0, len(v.m))
	for _, n := range v.m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (v *VNIs) save() error {
	b, err := json.Marshal(v.m)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(v.path), 0o700); err != nil {
		return fmt.Errorf("VNI allocations: %w", err)
	}
	tmp := v.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("VNI allocations: %w", err)
	}
	if err := os.Rename(tmp, v.path); err != nil {
		return fmt.Errorf("VNI allocations: %w", err)
	}
	return nil
}
