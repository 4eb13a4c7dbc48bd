// Package procprovider is a TEST FIXTURE, not a cloud provider: it
// implements provider.Provider by running each "VM" as a podvm-agent process
// in its own network namespace, joined to the host by a veth pair with a /30
// of its own. It lets tests run the whole path Kata client → peerpodd →
// tunnel → podvm-agent without virtualization. Its state lives in a
// directory and its processes are session leaders that outlive the process
// that started them, so a restarted peerpodd finds them again. It needs root
// and iproute2, and is never selectable from peerpodd's configuration.
package procprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peerpod/peerpod/provider"
)

// Name is what Provider.Name answers.
const Name = "procprovider"

// Config configures a Provider.
type Config struct {
	// StateDir holds one JSON file per VM, user data files, agent logs and
	// the address pool. Reusing a StateDir reuses its VMs.
	StateDir string
	// Command returns the command line of one VM's agent. Default:
	// AgentPath --userdata-file VM.UserData --state-dir VM.AgentDir AgentArgs...
	// It runs in the VM's network namespace and in UTS, IPC and mount
	// namespaces of its own (unshare), so a hostname or mount it makes stays
	// in its "VM".
	Command func(vm *VM) []string
	// AgentPath is the podvm-agent binary (used by the default Command).
	AgentPath string
	// AgentArgs are extra agent flags for the default Command
	// (e.g. --dev-allow-all-policy, --pause-bundle DIR).
	AgentArgs []string
	// Pool is the IPv4 prefix to carve /30s from (one per VM). Default: a random
	// 10.x.y.0/20, chosen once per StateDir and kept there.
	Pool netip.Prefix
	// Env is added to the agent's environment.
	Env []string
}

// Provider runs agent processes as VMs. Safe for concurrent use.
type Provider struct {
	cfg  Config
	pool netip.Prefix

	mu    sync.Mutex             // guards slots and names
	names map[string]*sync.Mutex // per-VM-name lock
}

// VM is one VM's record in StateDir.
type VM struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Tags      map[string]string `json:"tags"`
	Slot      int               `json:"slot"`
	HostIP    netip.Addr        `json:"host_ip"`
	VMIP      netip.Addr        `json:"vm_ip"`
	NetNS     string            `json:"netns"`
	HostVeth  string            `json:"host_veth"`
	VMVeth    string            `json:"vm_veth"`
	PID       int               `json:"pid"`
	StartTime uint64            `json:"start_time"` // /proc/PID/stat field 22, against PID reuse
	Created   time.Time         `json:"created"`
	UserData  string            `json:"userdata_file"`
	AgentDir  string            `json:"agent_dir"`
	Log       string            `json:"log_file"`
}

// New opens (or makes) StateDir and returns a provider over it.
func New(cfg Config) (*Provider, error) {
	if cfg.StateDir == "" {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "procprovider: StateDir is empty")
	}
	if cfg.Command == nil {
		if cfg.AgentPath == "" {
			return nil, provider.Errorf(provider.ErrInvalidConfig, "procprovider: AgentPath or Command is required")
		}
		agent, extra := cfg.AgentPath, cfg.AgentArgs
		cfg.Command = func(vm *VM) []string {
			return append([]string{agent, "--userdata-file", vm.UserData, "--state-dir", vm.AgentDir}, extra...)
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("procprovider: %w", err)
	}
	pool, err := loadPool(cfg.StateDir, cfg.Pool)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, pool: pool, names: map[string]*sync.Mutex{}}
	p.releaseOrphanSlots()
	return p, nil
}

// releaseOrphanSlots frees address slots whose VM record was never written
// (the creating process died between the two).
func (p *Provider) releaseOrphanSlots() {
	slots, _ := filepath.Glob(filepath.Join(p.cfg.StateDir, "slot-*"))
	for _, f := range slots {
		id, err := os.ReadFile(f)
		if err != nil || len(id) == 0 {
			continue
		}
		if _, err := os.Stat(p.statePath(string(id))); errors.Is(err, fs.ErrNotExist) {
			os.Remove(f)
		}
	}
}

func loadPool(dir string, want netip.Prefix) (netip.Prefix, error) {
	path := filepath.Join(dir, "pool")
	if b, err := os.ReadFile(path); err == nil {
		return netip.ParsePrefix(strings.TrimSpace(string(b)))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return netip.Prefix{}, fmt.Errorf("procprovider: %w", err)
	}
	if !want.IsValid() {
		var b [2]byte
		rand.Read(b[:])
		want = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + b[0]%50, (b[1] % 16) * 16, 0}), 20)
	}
	if !want.Addr().Is4() || want.Bits() > 30 {
		return netip.Prefix{}, provider.Errorf(provider.ErrInvalidConfig, "procprovider: pool %s must be IPv4 and hold at least one /30", want)
	}
	if err := os.WriteFile(path, []byte(want.Masked().String()+"\n"), 0o600); err != nil {
		return netip.Prefix{}, fmt.Errorf("procprovider: %w", err)
	}
	return want.Masked(), nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return Name }

// Pool is the address pool VMs get their /30 from.
func (p *Provider) Pool() netip.Prefix { return p.pool }

// Validate implements provider.Provider: root, iproute2 and the agent.
func (p *Provider) Validate(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return provider.Errorf(provider.ErrInvalidConfig, "procprovider: needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return provider.Errorf(provider.ErrInvalidConfig, "procprovider: iproute2 'ip' not found: %v", err)
	}
	argv := p.cfg.Command(&VM{UserData: "/dev/null", AgentDir: p.cfg.StateDir})
	if _, err := exec.LookPath(argv[0]); err != nil {
		return provider.Errorf(provider.ErrInvalidConfig, "procprovider: agent %s: %v", argv[0], err)
	}
	return nil
}

func (p *Provider) lockName(name string) func() {
	p.mu.Lock()
	m, ok := p.names[name]
	if !ok {
		m = &sync.Mutex{}
		p.names[name] = m
	}
	p.mu.Unlock()
	m.Lock()
	return m.Unlock
}

func idFor(name string) string { return "proc-" + name }

func (p *Provider) statePath(id string) string { return filepath.Join(p.cfg.StateDir, id+".json") }

// Create implements provider.Provider. It is idempotent on req.Name; on
// error everything it made is removed.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	if req.Name == "" || strings.ContainsAny(req.Name, "/\x00") || strings.HasPrefix(req.Name, ".") {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "procprovider: create: bad VM name %q", req.Name)
	}
	if len(req.UserData) == 0 {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "procprovider: create %s: no user data", req.Name)
	}
	unlock := p.lockName(req.Name)
	defer unlock()
	id := idFor(req.Name)
	if vm, err := p.load(id); err == nil {
		if vm.PID != 0 {
			return vm.instance(), nil
		}
		// A create interrupted before its agent started (the caller
		// crashed): undo what it made and start over.
		if err := p.teardown(ctx, vm); err != nil {
			return nil, provider.Classify(provider.ErrTransient, fmt.Errorf("procprovider: create %s: undo interrupted create: %w", req.Name, err))
		}
		p.release(vm)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	vm := &VM{ID: id, Name: req.Name, Tags: req.Tags, Created: time.Now().UTC()}
	sfx := randHex(4)
	vm.NetNS, vm.HostVeth, vm.VMVeth = "ppn-"+sfx, "pph"+sfx, "ppv"+sfx
	vm.UserData = filepath.Join(p.cfg.StateDir, id+".userdata")
	vm.Log = filepath.Join(p.cfg.StateDir, id+".log")
	vm.AgentDir = filepath.Join(p.cfg.StateDir, id+".agent")
	if err := p.allocate(vm); err != nil {
		return nil, err
	}
	// Record the VM before making anything, as a cloud tags a resource when
	// it is created: if the caller dies mid-create, List still finds the
	// half-made VM by its tags and Delete removes its namespace and veth.
	if err := p.save(vm); err != nil {
		p.release(vm)
		return nil, fmt.Errorf("procprovider: create %s: %w", req.Name, err)
	}
	if err := p.start(ctx, vm, req.UserData); err != nil {
		p.teardown(context.WithoutCancel(ctx), vm)
		os.Remove(p.statePath(vm.ID))
		p.release(vm)
		return nil, fmt.Errorf("procprovider: create %s: %w", req.Name, err)
	}
	return vm.instance(), nil
}

func (vm *VM) instance() *provider.Instance {
	return &provider.Instance{ID: vm.ID, Name: vm.Name, IPs: []netip.Addr{vm.VMIP}, Tags: vm.Tags, Created: vm.Created}
}

// allocate reserves a free /30 by creating its slot file exclusively.
func (p *Provider) allocate(vm *VM) error {
	n := 1 << (32 - p.pool.Bits()) / 4
	base := p.pool.Addr().As4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for slot := range n {
		f, err := os.OpenFile(filepath.Join(p.cfg.StateDir, "slot-"+strconv.Itoa(slot)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("procprovider: %w", err)
		}
		f.WriteString(vm.ID)
		f.Close()
		a := b + uint32(slot*4)
		vm.Slot = slot
		vm.HostIP = netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a + 1)})
		vm.VMIP = netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a + 2)})
		return nil
	}
	return provider.Errorf(provider.ErrCapacity, "procprovider: address pool %s is full (%d VMs)", p.pool, n)
}

func (p *Provider) release(vm *VM) {
	os.Remove(filepath.Join(p.cfg.StateDir, "slot-"+strconv.Itoa(vm.Slot)))
}

// start makes the namespace and veth pair, writes the user data and starts
// the agent, then records the VM.
func (p *Provider) start(ctx context.Context, vm *VM, userData []byte) error {
	host, peer := vm.HostIP.String()+"/30", vm.VMIP.String()+"/30"
	steps := [][]string{
		{"netns", "add", vm.NetNS},
		{"link", "add", vm.HostVeth, "type", "veth", "peer", "name", vm.VMVeth},
		{"link", "set", vm.VMVeth, "netns", vm.NetNS},
		{"addr", "add", host, "dev", vm.HostVeth},
		{"link", "set", vm.HostVeth, "up"},
		{"-n", vm.NetNS, "link", "set", "lo", "up"},
		{"-n", vm.NetNS, "addr", "add", peer, "dev", vm.VMVeth},
		{"-n", vm.NetNS, "link", "set", vm.VMVeth, "up"},
		{"-n", vm.NetNS, "route", "add", "default", "via", vm.HostIP.String()},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if err := os.WriteFile(vm.UserData, userData, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(vm.AgentDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(vm.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	argv := append([]string{"netns", "exec", vm.NetNS, "unshare", "--uts", "--ipc", "--mount", "--"}, p.cfg.Command(vm)...)
	// Not CommandContext: the agent must outlive this call and its caller.
	cmd := exec.Command("ip", argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Dir = p.cfg.StateDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	vm.PID = cmd.Process.Pid
	go cmd.Wait() // reap it while we are its parent
	if st, err := startTime(vm.PID); err == nil {
		vm.StartTime = st
	}
	return p.save(vm)
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// teardown kills the agent and removes the namespace, veth and files.
func (p *Provider) teardown(ctx context.Context, vm *VM) error {
	var errs []error
	if vm.PID > 0 {
		if st, err := startTime(vm.PID); err == nil && (vm.StartTime == 0 || st == vm.StartTime) {
			syscall.Kill(-vm.PID, syscall.SIGKILL) // the whole session's process group
			syscall.Kill(vm.PID, syscall.SIGKILL)
			waitGone(vm.PID, vm.StartTime, 10*time.Second)
		}
	}
	// Whatever else runs in the VM's network namespace (containers the
	// agent started in sessions of their own) goes too.
	if vm.NetNS != "" {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", vm.NetNS).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
					waitGone(pid, 0, 5*time.Second)
				}
			}
		}
	}
	if vm.HostVeth != "" && linkExists(vm.HostVeth) {
		if err := ip(ctx, "link", "del", vm.HostVeth); err != nil && linkExists(vm.HostVeth) {
			errs = append(errs, err)
		}
	}
	if vm.NetNS != "" {
		if _, err := os.Stat(filepath.Join("/run/netns", vm.NetNS)); err == nil {
			if err := ip(ctx, "netns", "del", vm.NetNS); err != nil {
				errs = append(errs, err)
			}
		}
	}
	os.Remove(vm.UserData)
	if vm.AgentDir != "" {
		if err := os.RemoveAll(vm.AgentDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// startTime reads field 22 of /proc/PID/stat; a zombie counts as gone.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("bad stat")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fs.ErrNotExist
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func waitGone(pid int, st uint64, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		cur, err := startTime(pid)
		if err != nil || (st != 0 && cur != st) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Alive reports whether the VM's agent process is running.
func (vm *VM) Alive() bool {
	st, err := startTime(vm.PID)
	return err == nil && (vm.StartTime == 0 || st == vm.StartTime)
}

// Delete implements provider.Provider; a missing VM is not an error.
func (p *Provider) Delete(ctx context.Context, id string) error {
	vm, err := p.load(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock := p.lockName(vm.Name)
	defer unlock()
	if err := p.teardown(ctx, vm); err != nil {
		return provider.Classify(provider.ErrTransient, fmt.Errorf("procprovider: delete %s: %w", id, err))
	}
	if err := os.Remove(p.statePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("procprovider: delete %s: %w", id, err)
	}
	p.release(vm)
	return nil
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Instance, error) {
	vms, err := p.VMs()
	if err != nil {
		return nil, err
	}
	var out []provider.Instance
	for _, vm := range vms {
		if provider.Matches(vm.Tags, tags) {
			out = append(out, *vm.instance())
		}
	}
	return out, nil
}

// VMs returns every VM record in StateDir.
func (p *Provider) VMs() ([]VM, error) {
	files, err := filepath.Glob(filepath.Join(p.cfg.StateDir, "proc-*.json"))
	if err != nil {
		return nil, err
	}
	var out []VM
	for _, f := range files {
		vm, err := p.load(strings.TrimSuffix(filepath.Base(f), ".json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *vm)
	}
	return out, nil
}

// DeleteAll removes every VM (test cleanup).
func (p *Provider) DeleteAll(ctx context.Context) error {
	vms, err := p.VMs()
	if err != nil {
		return err
	}
	var errs []error
	for _, vm := range vms {
		errs = append(errs, p.Delete(ctx, vm.ID))
	}
	return errors.Join(errs...)
}

func (p *Provider) load(id string) (*VM, error) {
	b, err := os.ReadFile(p.statePath(id))
	if err != nil {
		return nil, err
	}
	var vm VM
	if err := json.Unmarshal(b, &vm); err != nil {
		return nil, fmt.Errorf("procprovider: %s: %w", p.statePath(id), err)
	}
	return &vm, nil
}

func (p *Provider) save(vm *VM) error {
	b, err := json.MarshalIndent(vm, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.statePath(vm.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.statePath(vm.ID))
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
