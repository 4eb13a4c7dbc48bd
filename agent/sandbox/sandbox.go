// Package sandbox holds the pod inside the VM: the sandbox (hostname, DNS,
// shared storages, cgroup parent), its containers run with runc from images
// pulled in the VM, their processes, stdio and OOM events.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/peerpod/peerpod/agent/cgroups"
	"github.com/peerpod/peerpod/agent/copyfile"
	"github.com/peerpod/peerpod/agent/image"
	"github.com/peerpod/peerpod/agent/runc"
	pb "github.com/peerpod/peerpod/api/agent"
	"golang.org/x/sys/unix"
)

// KataRoot is the VM directory the Kata runtime's paths live under.
const KataRoot = "/run/kata-containers"

// Config configures a Sandbox. Zero fields take the documented defaults.
type Config struct {
	// StateDir holds bundles, rootfs mounts and runc state (default /run/peerpod/agent).
	StateDir string
	// KataRoot is the local directory standing for /run/kata-containers
	// (default KataRoot; tests use a temporary directory).
	KataRoot string
	// PauseBundle is the pause bundle directory used for image "pause" (default /pause_bundle).
	PauseBundle string
	// Runc is the runc binary (default runc.DefaultPath).
	Runc string
	// Images pulls and caches images (default: a store under StateDir/images).
	Images *image.Store
	// Cgroups is the cgroup layout (default: detected at /sys/fs/cgroup).
	Cgroups *cgroups.Manager
	// CgroupParent is the cgroup all sandboxes live under (default /peerpod).
	CgroupParent string
	// SetHostname makes CreateSandbox set the VM's own hostname (the VM's agent
	// does; tests must not).
	SetHostname bool
	// BufferSize bounds each process's buffered stdout and stderr (default stdio.DefaultBufferSize).
	BufferSize int
	// NetNS returns the pod network namespace containers join ("" or nil:
	// the VM's own), e.g. agent/podnet's Manager.NetNS.
	NetNS func() string
	// ReapOrphans makes the sandbox reap zombie children it did not start
	// (the agent is PID 1 in the VM); stop it with Close.
	ReapOrphans bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.StateDir == "" {
		c.StateDir = "/run/peerpod/agent"
	}
	if c.KataRoot == "" {
		c.KataRoot = KataRoot
	}
	if c.PauseBundle == "" {
		c.PauseBundle = "/pause_bundle"
	}
	if c.Runc == "" {
		c.Runc = runc.DefaultPath
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "/peerpod"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Cgroups == nil {
		m, err := cgroups.Detect("")
		if err != nil {
			return err
		}
		c.Cgroups = m
	}
	if c.Images == nil {
		st, err := image.NewStore(filepath.Join(c.StateDir, "images"))
		if err != nil {
			return err
		}
		c.Images = st
	}
	return nil
}

// Sandbox is the pod of this VM.
type Sandbox struct {
	cfg    Config
	rc     *runc.Runc
	shared *copyfile.Writer
	log    *slog.Logger
	oom    chan string
	stop   chan struct{}
	once   sync.Once

	mu         sync.Mutex
	created    bool
	id         string
	hostname   string
	pidns      bool
	cgroupPath string
	storages   []string // sandbox storage mount points, in mount order
	containers map[string]*Container
	pausePid   int
}

// New prepares the sandbox state. The agent becomes a child subreaper so
// that container processes, orphaned when runc exits, are its children.
func New(cfg Config) (*Sandbox, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "runc"), filepath.Join(cfg.StateDir, "containers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("sandbox: become subreaper: %w", err)
	}
	s := &Sandbox{
		cfg:        cfg,
		rc:         &runc.Runc{Path: cfg.Runc, Root: filepath.Join(cfg.StateDir, "runc")},
		log:        cfg.Logger,
		oom:        make(chan string, 128),
		stop:       make(chan struct{}),
		containers: map[string]*Container{},
	}
	s.shared = &copyfile.Writer{Dir: s.local(copyfile.Prefix)}
	if cfg.ReapOrphans {
		go s.reapOrphans(s.stop)
	}
	return s, nil
}

// Close stops the sandbox's background work (the orphan reaper).
func (s *Sandbox) Close() {
	s.once.Do(func() { close(s.stop) })
}

// Images is the sandbox's image store (to set registry credentials).
func (s *Sandbox) Images() *image.Store { return s.cfg.Images }

// Shared is the CopyFile writer for the shared containers directory.
func (s *Sandbox) Shared() *copyfile.Writer { return s.shared }

// local maps a path of the Kata runtime under /run/kata-containers to its local place.
func (s *Sandbox) local(p string) string {
	if p == KataRoot || strings.HasPrefix(p, KataRoot+"/") {
		return filepath.Join(s.cfg.KataRoot, strings.TrimPrefix(p, KataRoot))
	}
	return p
}

func (s *Sandbox) dir() string { return filepath.Join(s.cfg.StateDir, "sandbox") }

// CgroupPath is the sandbox's cgroup ("" before CreateSandbox).
func (s *Sandbox) CgroupPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cgroupPath
}

// Create sets the sandbox up: hostname, DNS, storages, pid namespace choice.
func (s *Sandbox) Create(ctx context.Context, req *pb.CreateSandboxRequest) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created {
		return fmt.Errorf("sandbox %s: %w", s.id, ErrAlreadyExists)
	}
	id := req.SandboxId
	if id == "" {
		id = fmt.Sprintf("sandbox-%08x", rand.Uint32())
	}
	if strings.ContainsAny(id, "/") || id == "." || id == ".." {
		return fmt.Errorf("sandbox id %q: %w", id, ErrInvalid)
	}
	if len(req.KernelModules) > 0 {
		return fmt.Errorf("sandbox %s: kernel modules cannot be loaded in a pod VM: %w", id, ErrInvalid)
	}
	var mounted []string
	defer func() {
		if err != nil {
			for i := len(mounted) - 1; i >= 0; i-- {
				_ = unix.Unmount(mounted[i], unix.MNT_DETACH)
			}
			_ = os.RemoveAll(s.dir())
		}
	}()
	if err := os.MkdirAll(s.dir(), 0o755); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	hostname := req.Hostname
	if hostname == "" {
		hostname = "localhost"
	}
	if err := os.WriteFile(filepath.Join(s.dir(), "hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("sandbox %s: hostname: %w", id, err)
	}
	if s.cfg.SetHostname {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("sandbox %s: set hostname: %w", id, err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir(), "resolv.conf"), resolvConf(req.Dns), 0o644); err != nil {
		return fmt.Errorf("sandbox %s: resolv.conf: %w", id, err)
	}
	for _, st := range req.Storages {
		mp, err := s.mountStorage(st)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", id, err)
		}
		if mp != "" {
			mounted = append(mounted, mp)
		}
	}
	if err := os.MkdirAll(s.shared.Dir, 0o755); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	s.created, s.id, s.hostname, s.pidns = true, id, hostname, req.SandboxPidns
	s.cgroupPath = filepath.Join(s.cfg.CgroupParent, id)
	s.storages = mounted
	s.log.Info("sandbox created", "sandbox", id, "hostname", hostname, "storages", len(mounted), "pidns", req.SandboxPidns)
	return nil
}

// resolvConf renders the runtime's DNS lines; a bare address is a nameserver.
func resolvConf(lines []string) []byte {
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if !strings.ContainsAny(l, " \t") {
			l = "nameserver " + l
		}
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

// Destroy removes every container (killing its processes), unmounts the
// sandbox storages and removes its cgroups and files. The sandbox can then
// be created again.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.mu.Lock()
	if !s.created && len(s.containers) == 0 {
		s.mu.Unlock()
		return nil // nothing to tear down
	}
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := s.RemoveContainer(ctx, id, 0); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.storages) - 1; i >= 0; i-- {
		if err := unix.Unmount(s.storages[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", s.storages[i], err))
		}
	}
	s.storages = nil
	if s.cgroupPath != "" {
		if err := s.cfg.Cgroups.Remove(s.cgroupPath); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range []string{s.dir(), s.shared.Dir, s.local(KataRoot + "/sandbox")} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	s.log.Info("sandbox destroyed", "sandbox", s.id, "errors", len(errs))
	s.created, s.id, s.cgroupPath, s.pausePid = false, "", "", 0
	return errors.Join(errs...)
}

// OOMEvent waits for the next container OOM kill and returns the container's id.
func (s *Sandbox) OOMEvent(ctx context.Context) (string, error) {
	select {
	case id := <-s.oom:
		return id, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (s *Sandbox) reportOOM(id string) {
	select {
	case s.oom <- id:
	default:
		s.log.Warn("OOM event dropped: no one is collecting them", "container", id)
	}
}

// GuestDetails answers GetGuestDetails.
func (s *Sandbox) GuestDetails(req *pb.GuestDetailsRequest, version string) *pb.GuestDetailsResponse {
	resp := &pb.GuestDetailsResponse{AgentDetails: &pb.AgentDetails{
		Version:         version,
		InitDaemon:      os.Getpid() == 1,
		StorageHandlers: []string{"image_guest_pull", "ephemeral", "local"},
	}}
	if req.MemBlockSize {
		if b, err := os.ReadFile("/sys/devices/system/memory/block_size_bytes"); err == nil {
			var v uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%x", &v); err == nil {
				resp.MemBlockSizeBytes = v
			}
		}
	}
	return resp
}
