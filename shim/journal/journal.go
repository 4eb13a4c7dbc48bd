// Package journal is peerpodd's durable record of sandboxes: one JSON file per
// sandbox under STATE_DIR, replaced atomically and fsynced before every cloud
// call a state change leads to, so a restarted daemon knows what it was doing.
package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// State is where a sandbox is in its lifecycle.
type State string

// Sandbox states, in lifecycle order. A sandbox that is gone has no entry.
const (
	// Created: CreateVM answered; no cloud resource exists yet.
	Created State = "created"
	// Provisioning: the provider is (or may be) creating the VM.
	Provisioning State = "provisioning"
	// Running: the VM's agent answered through the tunnel.
	Running State = "running"
	// Stopping: the VM is being deleted.
	Stopping State = "stopping"
	// Failed: start failed and everything made was deleted; the entry stays
	// as a tombstone so a later StopVM succeeds.
	Failed State = "failed"
)

// States lists every state, for metrics and status output.
var States = []State{Created, Provisioning, Running, Stopping, Failed}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// FormatVersion is the entry format written by this package.
const FormatVersion = 1

// Entry is one sandbox's record. It holds no secret.
type Entry struct {
	// Version is the format version (FormatVersion).
	Version int `json:"version"`
	// SandboxID is the Kata sandbox id; it names the file.
	SandboxID string `json:"sandbox_id"`
	// State is the sandbox's lifecycle state.
	State State `json:"state"`
	// PodName, PodNamespace and PodUID identify the pod (from CreateVM annotations).
	PodName      string `json:"pod_name,omitempty"`
	PodNamespace string `json:"pod_namespace,omitempty"`
	PodUID       string `json:"pod_uid,omitempty"`
	// NetNS is the network namespace path the shim gave at CreateVM.
	NetNS string `json:"netns,omitempty"`
	// AgentSocket is the path of the sandbox's agent socket.
	AgentSocket string `json:"agent_socket"`
	// VMName is the provider VM name (set before the create call).
	VMName string `json:"vm_name,omitempty"`
	// VMID is the provider's id of the VM, once known.
	VMID string `json:"vm_id,omitempty"`
	// VMAddr is the tunnel address (host:port) of the VM, once known.
	VMAddr string `json:"vm_addr,omitempty"`
	// InstanceTypes are the instance types to try, best first.
	InstanceTypes []string `json:"instance_types,omitempty"`
	// InstanceType is the type the provider made.
	InstanceType string `json:"instance_type,omitempty"`
	// VCPUs, MemoryMiB and GPUs are the requested size.
	VCPUs     int64 `json:"vcpus,omitempty"`
	MemoryMiB int64 `json:"memory_mib,omitempty"`
	GPUs      int64 `json:"gpus,omitempty"`
	// Image overrides the provider's pod VM image when non-empty.
	Image string `json:"image,omitempty"`
	// Initdata is the sandbox's initdata TOML text ("" for none).
	Initdata string `json:"initdata,omitempty"`
	// Error is why the sandbox failed (state Failed).
	Error string `json:"error,omitempty"`
	// Created is when CreateVM recorded the sandbox; Updated is the last write.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// ValidID checks that id can name a sandbox and its journal file:
// 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.'.
func ValidID(id string) error {
	if id == "" {
		return errors.New("id is empty")
	}
	if len(id) > 128 {
		return fmt.Errorf("id is %d characters long, at most 128 allowed", len(id))
	}
	if id[0] == '.' {
		return fmt.Errorf("id %q starts with '.'", id)
	}
	for _, r := range id {
		ok := r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return fmt.Errorf("id %q has character %q outside [A-Za-z0-9_.-]", id, r)
		}
	}
	return nil
}

const suffix = ".json"

// Journal is a directory of entries. Writers must serialize calls per
// sandbox; calls for different sandboxes may run concurrently.
type Journal struct {
	dir string
	now func() time.Time

	// Directory fsyncs are shared: a writer waits for the first sync that
	// starts after its rename, so concurrent writers pay for one sync.
	syncMu   sync.Mutex
	syncCond *sync.Cond
	syncGen  uint64 // syncs started
	syncDone uint64 // syncs finished (generation)
	syncing  bool
	syncErr  error
}

// Open makes dir (mode 0700) if needed and returns its journal. Leftover
// temporary files from an interrupted write are removed.
func Open(dir string) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("journal: directory is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	tmps, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("journal: remove leftover %s: %w", t, err)
		}
	}
	j := &Journal{dir: dir, now: time.Now}
	j.syncCond = sync.NewCond(&j.syncMu)
	return j, nil
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

func (j *Journal) path(id string) string { return filepath.Join(j.dir, id+suffix) }

// Put writes e durably: a temporary file is written and fsynced, renamed over
// the entry's file, and the directory is fsynced. When Put returns nil the
// entry survives a crash; on error the previous entry (if any) is intact.
func (j *Journal) Put(e *Entry) error {
	if err := ValidID(e.SandboxID); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if !e.State.Valid() {
		return fmt.Errorf("journal: sandbox %s: unknown state %q", e.SandboxID, e.State)
	}
	e.Version = FormatVersion
	e.Updated = j.now().UTC()
	if e.Created.IsZero() {
		e.Created = e.Updated
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: sandbox %s: encode: %w", e.SandboxID, err)
	}
	f, err := os.CreateTemp(j.dir, ".tmp-"+e.SandboxID+"-*")
	if err != nil {
		return fmt.Errorf("journal: sandbox %s: %w", e.SandboxID, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("journal: sandbox %s: %w", e.SandboxID, err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: sandbox %s: %w", e.SandboxID, err)
	}
	if err := os.Rename(tmp, j.path(e.SandboxID)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: sandbox %s: %w", e.SandboxID, err)
	}
	return j.syncDir()
}

// Remove deletes a sandbox's entry durably. A missing entry is not an error.
func (j *Journal) Remove(id string) error {
	if err := ValidID(id); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := os.Remove(j.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: sandbox %s: %w", id, err)
	}
	return j.syncDir()
}

// syncDir makes the directory's entries durable. A caller needs a sync
// that started after its own rename; one in flight may have started before,
// so it waits for the next one, which a single caller runs for everyone.
func (j *Journal) syncDir() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	want := j.syncGen + 1 // the next sync to start covers our rename
	if j.syncing {
		want++ // the one running may have started before our rename
	}
	for j.syncDone < want {
		if !j.syncing {
			j.syncing = true
			j.syncGen++
			gen := j.syncGen
			j.syncMu.Unlock()
			err := j.fsyncDir()
			j.syncMu.Lock()
			j.syncing = false
			j.syncDone, j.syncErr = gen, err
			j.syncCond.Broadcast()
			continue
		}
		j.syncCond.Wait()
	}
	return j.syncErr
}

func (j *Journal) fsyncDir() error {
	d, err := os.Open(j.dir)
	if err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", j.dir, err)
	}
	return nil
}

// Get reads one entry; errors.Is(err, fs.ErrNotExist) when there is none.
func (j *Journal) Get(id string) (*Entry, error) {
	if err := ValidID(id); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return readEntry(j.path(id))
}

// Load reads every entry; see ReadDir.
func (j *Journal) Load() ([]*Entry, error) { return ReadDir(j.dir) }

// ReadDir reads every entry of the journal in dir without modifying
// anything (for status tools), sorted by creation time. Unreadable or
// corrupt files are reported together in the error, after the good entries
// are returned.
func ReadDir(dir string) ([]*Entry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []*Entry
	var errs []error
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, suffix) {
			continue
		}
		e, err := readEntry(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if want := strings.TrimSuffix(name, suffix); e.SandboxID != want {
			errs = append(errs, fmt.Errorf("journal: %s: holds sandbox %q", name, e.SandboxID))
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].Created.Equal(out[b].Created) {
			return out[a].Created.Before(out[b].Created)
		}
		return out[a].SandboxID < out[b].SandboxID
	})
	return out, errors.Join(errs...)
}

func readEntry(path string) (*Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	if e.Version != FormatVersion {
		return nil, fmt.Errorf("journal: %s: format version %d, want %d", path, e.Version, FormatVersion)
	}
	if err := ValidID(e.SandboxID); err != nil {
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	if !e.State.Valid() {
		return nil, fmt.Errorf("journal: %s: unknown state %q", path, e.State)
	}
	return &e, nil
}

// OwnsVM reports whether the sandbox e may own the VM with the given
// provider id and name: its state is one that can have a VM (provisioning,
// running, stopping) and the id or name matches (or the id is not known yet).
// Callers match the VM's sandbox tag to e.SandboxID first.
func (e *Entry) OwnsVM(vmID, vmName string) bool {
	switch e.State {
	case Provisioning, Running, Stopping:
		return e.VMID == "" || e.VMID == vmID || (e.VMName != "" && e.VMName == vmName)
	}
	return false
}
