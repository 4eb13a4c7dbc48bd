package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/peerpod/peerpod/agent/image"
	"github.com/peerpod/peerpod/agent/ocispec"
	"github.com/peerpod/peerpod/agent/pause"
	"github.com/peerpod/peerpod/agent/runc"
	pb "github.com/peerpod/peerpod/api/agent"
	"golang.org/x/sys/unix"
)

// Container is one container of the sandbox.
type Container struct {
	id         string
	dir        string // bundle directory
	rootfs     string
	mounted    bool     // rootfs is an overlay mount
	storages   []string // mount points of the container's own storages
	cgroupPath string
	spec       *specs.Spec
	init       *Process
	stopOOM    context.CancelFunc

	mu      sync.Mutex
	started bool
	execs   map[string]*Process
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// container finds id.
func (s *Sandbox) container(id string) (*Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok || c == nil {
		return nil, fmt.Errorf("container %q: %w", id, ErrNotFound)
	}
	return c, nil
}

// CreateContainer makes a container from the request: its rootfs from the
// image_guest_pull storage (pulled in the VM, or the pause bundle), an OCI
// bundle from the spec, and runc create. A failure leaves nothing behind.
func (s *Sandbox) CreateContainer(ctx context.Context, req *pb.CreateContainerRequest) (err error) {
	id := req.ContainerId
	if !idPattern.MatchString(id) {
		return fmt.Errorf("container id %q: %w", id, ErrInvalid)
	}
	s.mu.Lock()
	if !s.created {
		s.mu.Unlock()
		return fmt.Errorf("container %s: no sandbox (CreateSandbox first): %w", id, ErrPrecondition)
	}
	if _, ok := s.containers[id]; ok {
		s.mu.Unlock()
		return fmt.Errorf("container %s: %w", id, ErrAlreadyExists)
	}
	s.containers[id] = nil // reserved while being created
	sandboxCgroup, pidns, pausePid := s.cgroupPath, s.pidns || req.SandboxPidns, s.pausePid
	s.mu.Unlock()

	c := &Container{
		id:         id,
		dir:        filepath.Join(s.cfg.StateDir, "containers", id),
		cgroupPath: filepath.Join(sandboxCgroup, id),
		execs:      map[string]*Process{},
	}
	c.rootfs = filepath.Join(c.dir, "rootfs")
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			s.mu.Lock()
			delete(s.containers, id)
			s.mu.Unlock()
		}
	}()
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(c.dir) })

	// Rootfs.
	src, extra, err := imageSource(req.Storages)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	for _, st := range extra {
		mp, err := s.mountStorage(st)
		if err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
		if mp != "" {
			c.storages = append(c.storages, mp)
			undo = append(undo, func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })
		}
	}
	var imgCfg *image.Image
	var layers []string
	var pauseProc *specs.Process
	isPause := src == "pause"
	if isPause {
		b, err := pause.LoadBundle(s.cfg.PauseBundle)
		if err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
		layers, pauseProc = []string{b.Rootfs}, b.Process
	} else {
		img, err := s.cfg.Images.Pull(ctx, src)
		if err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
		imgCfg, layers = img, img.Layers
	}
	c.mounted, err = image.Mount(layers, c.rootfs, filepath.Join(c.dir, "scratch"))
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if c.mounted {
		undo = append(undo, func() { _ = image.Unmount(c.rootfs) })
	}

	// Bundle.
	spec, err := s.prepareSpec(c, req, imgCfg, pauseProc, pidns && !isPause, pausePid)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	c.spec = spec
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("container %s: bundle: %w", id, err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("container %s: bundle: %w", id, err)
	}

	// runc create.
	p, err := s.startProcess(ctx, c, "", spec.Process.Terminal, func(pidFile, console string, io runc.IO) error {
		return s.rc.Create(ctx, id, c.dir, runc.CreateOpts{PidFile: pidFile, ConsoleSocket: console, IO: io, Log: filepath.Join(c.dir, "runc.log")})
	})
	if err != nil {
		_ = s.rc.Delete(context.WithoutCancel(ctx), id, true)
		_ = s.cfg.Cgroups.Remove(c.cgroupPath)
		return fmt.Errorf("container %s: %w", id, err)
	}
	c.init = p
	oomCtx, stop := context.WithCancel(context.Background())
	c.stopOOM = stop
	if err := s.cfg.Cgroups.WatchOOM(oomCtx, c.cgroupPath, func() { s.reportOOM(id) }); err != nil {
		s.log.Warn("OOM events unavailable", "container", id, "err", err)
	}
	s.mu.Lock()
	s.containers[id] = c
	if isPause {
		s.pausePid = p.pid
	}
	s.mu.Unlock()
	s.log.Info("container created", "container", id, "image", src, "pid", p.pid)
	return nil
}

// imageSource finds the image named by the image_guest_pull storage and
// returns the other storages.
func imageSource(storages []*pb.Storage) (string, []*pb.Storage, error) {
	var src string
	var extra []*pb.Storage
	for _, st := range storages {
		if st.Driver != DriverImageGuestPull {
			extra = append(extra, st)
			continue
		}
		if src != "" {
			return "", nil, fmt.Errorf("two %s storages: %w", DriverImageGuestPull, ErrInvalid)
		}
		if st.Source == "" {
			return "", nil, fmt.Errorf("%s storage without a source image: %w", DriverImageGuestPull, ErrInvalid)
		}
		src = st.Source
	}
	if src == "" {
		return "", nil, fmt.Errorf("no %s storage names the image: %w", DriverImageGuestPull, ErrInvalid)
	}
	return src, extra, nil
}

// StartContainer starts a created container's process.
func (s *Sandbox) StartContainer(ctx context.Context, id string) error {
	c, err := s.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return fmt.Errorf("container %s: already started: %w", id, ErrPrecondition)
	}
	if err := s.rc.StartFifo(ctx, id, c.init.exited); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	c.started = true
	return nil
}

// RemoveContainer kills what still runs in the container, deletes it and its
// rootfs, cgroup and files. timeout (seconds, 0 = a default of 10) bounds the
// wait for its processes to exit after SIGKILL.
func (s *Sandbox) RemoveContainer(ctx context.Context, id string, timeout uint32) error {
	c, err := s.container(id)
	if err != nil {
		return err
	}
	wait := 10 * time.Second
	if timeout > 0 {
		wait = time.Duration(timeout) * time.Second
	}
	ctx = context.WithoutCancel(ctx)
	select {
	case <-c.init.exited:
	default:
		_ = s.rc.Kill(ctx, id, syscall.SIGKILL, true)
		select {
		case <-c.init.exited:
		case <-time.After(wait):
			return fmt.Errorf("container %s: processes did not exit %v after SIGKILL", id, wait)
		}
	}
	var errs []error
	if err := s.rc.Delete(ctx, id, true); err != nil && !errors.Is(err, runc.ErrNotExist) {
		errs = append(errs, err)
	}
	c.stopOOM()
	c.mu.Lock()
	for _, p := range c.execs {
		p.io.Close()
	}
	c.mu.Unlock()
	c.init.io.Close()
	if c.mounted {
		if err := image.Unmount(c.rootfs); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(c.storages) - 1; i >= 0; i-- {
		if err := unix.Unmount(c.storages[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", c.storages[i], err))
		}
	}
	if err := s.cfg.Cgroups.Remove(c.cgroupPath); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("container %s: remove: %w", id, err)
	}
	s.mu.Lock()
	delete(s.containers, id)
	if s.pausePid == c.init.pid {
		s.pausePid = 0
	}
	s.mu.Unlock()
	s.log.Info("container removed", "container", id)
	return nil
}

// Stats reads the container's cgroup statistics.
func (s *Sandbox) Stats(id string) (*pb.StatsContainerResponse, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	st, err := s.cfg.Cgroups.Stats(c.cgroupPath)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	return &pb.StatsContainerResponse{CgroupStats: st}, nil
}

// terminationLogLimit is Kubernetes' bound on a termination message.
const terminationLogLimit = 4096

// TerminationLog reads the container's termination message: the file
// mounted at its termination message path.
func (s *Sandbox) TerminationLog(id string) (string, error) {
	c, err := s.container(id)
	if err != nil {
		return "", err
	}
	dest := c.spec.Annotations["io.kubernetes.container.terminationMessagePath"]
	if dest == "" {
		dest = "/dev/termination-log"
	}
	for _, m := range c.spec.Mounts {
		if m.Destination != dest {
			continue
		}
		f, err := os.Open(m.Source)
		if err != nil {
			return "", fmt.Errorf("container %s: termination log: %w", id, err)
		}
		defer f.Close()
		buf := make([]byte, terminationLogLimit)
		n, _ := f.Read(buf)
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("container %s: no termination log mounted at %s: %w", id, dest, ErrNotFound)
}

// UpdateContainer applies new resource limits to a running container.
func (s *Sandbox) UpdateContainer(ctx context.Context, id string, res *pb.LinuxResources) error {
	c, err := s.container(id)
	if err != nil {
		return err
	}
	if res == nil {
		return fmt.Errorf("container %s: update without resources: %w", id, ErrInvalid)
	}
	b, err := json.Marshal(ocispec.Resources(res))
	if err != nil {
		return fmt.Errorf("container %s: update: %w", id, err)
	}
	if err := s.rc.Update(ctx, c.id, b); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}
