package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/peerpod/peerpod/agent/ocispec"
	"github.com/peerpod/peerpod/agent/runc"
	"github.com/peerpod/peerpod/agent/stdio"
	pb "github.com/peerpod/peerpod/api/agent"
	"golang.org/x/sys/unix"
)

// Process is a container's init process or an exec'd process.
type Process struct {
	execID string
	pid    int
	io     *stdio.Process
	exited chan struct{}
	status int32 // exit status once exited: the code, or 128+signal
}

// maxFinishedExecs bounds the exec records kept after their processes exit.
const maxFinishedExecs = 32

// startProcess prepares stdio (pipes or a console socket), runs launch
// (runc create or exec) and starts reaping the new process.
func (s *Sandbox) startProcess(ctx context.Context, c *Container, execID string, tty bool, launch func(pidFile, console string, io runc.IO) error) (*Process, error) {
	name := "init"
	if execID != "" {
		name = "exec-" + execID
	}
	pidFile := filepath.Join(c.dir, name+".pid")
	p := &Process{execID: execID, exited: make(chan struct{})}
	var err error
	if tty {
		sock, err := runc.NewConsoleSocket(filepath.Join(c.dir, name+".sock"))
		if err != nil {
			return nil, err
		}
		defer sock.Close()
		type result struct {
			f   *os.File
			err error
		}
		got := make(chan result, 1)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		go func() { f, err := sock.ReceiveMaster(rctx); got <- result{f, err} }()
		if err := launch(pidFile, sock.Path(), runc.IO{}); err != nil {
			cancel()
			if r := <-got; r.f != nil {
				r.f.Close()
			}
			return nil, err
		}
		r := <-got
		if r.err != nil {
			return nil, r.err
		}
		p.io = stdio.NewTTY(r.f, s.cfg.BufferSize)
	} else {
		if p.io, err = stdio.NewPipes(true, s.cfg.BufferSize); err != nil {
			return nil, err
		}
		err = launch(pidFile, "", runc.IO{Stdin: p.io.Child.Stdin, Stdout: p.io.Child.Stdout, Stderr: p.io.Child.Stderr})
		p.io.CloseChild()
		if err != nil {
			p.io.Close()
			return nil, err
		}
	}
	if p.pid, err = runc.ReadPidFile(pidFile); err != nil {
		p.io.Close()
		return nil, err
	}
	go p.reap()
	return p, nil
}

// reap waits for the process (a child of the agent: it is a subreaper) and
// records its exit status.
func (p *Process) reap() {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		switch {
		case err != nil:
			p.status = 255 // not our child: nothing can tell its status
		case ws.Signaled():
			p.status = 128 + int32(ws.Signal())
		default:
			p.status = int32(ws.ExitStatus())
		}
		close(p.exited)
		return
	}
}

// process finds a container's init ("" execID) or exec process.
func (s *Sandbox) process(containerID, execID string) (*Container, *Process, error) {
	c, err := s.container(containerID)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" || execID == containerID {
		// The Kata runtime names a container's init process by the
		// CreateContainer exec id, which is the container id.
		return c, c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("container %s: exec %q: %w", containerID, execID, ErrNotFound)
	}
	return c, p, nil
}

// Exec starts an extra process in a running container.
func (s *Sandbox) Exec(ctx context.Context, req *pb.ExecProcessRequest) error {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return err
	}
	if !idPattern.MatchString(req.ExecId) {
		return fmt.Errorf("container %s: exec id %q: %w", c.id, req.ExecId, ErrInvalid)
	}
	proc := ocispec.Process(req.Process)
	if proc == nil || len(proc.Args) == 0 {
		return fmt.Errorf("container %s: exec %s has no process args: %w", c.id, req.ExecId, ErrInvalid)
	}
	if proc.Cwd == "" {
		proc.Cwd = "/"
	}
	if len(proc.Env) == 0 && c.spec.Process != nil {
		proc.Env = c.spec.Process.Env
	}
	c.mu.Lock()
	if _, ok := c.execs[req.ExecId]; ok {
		c.mu.Unlock()
		return fmt.Errorf("container %s: exec %s: %w", c.id, req.ExecId, ErrAlreadyExists)
	}
	c.execs[req.ExecId] = nil // reserved
	c.mu.Unlock()
	p, err := func() (*Process, error) {
		select {
		case <-c.init.exited:
			return nil, fmt.Errorf("container %s is not running: %w", c.id, ErrPrecondition)
		default:
		}
		b, err := json.Marshal(proc)
		if err != nil {
			return nil, err
		}
		pj := filepath.Join(c.dir, "exec-"+req.ExecId+".json")
		if err := os.WriteFile(pj, b, 0o600); err != nil {
			return nil, err
		}
		defer os.Remove(pj)
		return s.startProcess(ctx, c, req.ExecId, proc.Terminal, func(pidFile, console string, io runc.IO) error {
			return s.rc.Exec(ctx, c.id, pj, runc.ExecOpts{PidFile: pidFile, ConsoleSocket: console, IO: io, Log: filepath.Join(c.dir, "runc-exec.log")})
		})
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.execs, req.ExecId)
		return fmt.Errorf("container %s: exec %s: %w", c.id, req.ExecId, err)
	}
	c.execs[req.ExecId] = p
	c.pruneExecsLocked()
	return nil
}

// pruneExecsLocked forgets the oldest finished execs beyond maxFinishedExecs.
func (c *Container) pruneExecsLocked() {
	var done []string
	for id, p := range c.execs {
		if p == nil {
			continue
		}
		select {
		case <-p.exited:
			done = append(done, id)
		default:
		}
	}
	for i := 0; len(done)-i > maxFinishedExecs; i++ {
		c.execs[done[i]].io.Close()
		delete(c.execs, done[i])
	}
}

// Signal sends sig to a process; execID "" signals every process of the
// container, the container id (the init's exec id) its init process only.
func (s *Sandbox) Signal(ctx context.Context, containerID, execID string, sig syscall.Signal) error {
	c, p, err := s.process(containerID, execID)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("container %s: exec %s is starting: %w", containerID, execID, ErrPrecondition)
	}
	all := execID == ""
	select {
	case <-p.exited:
		if !all {
			return nil // nothing left to signal
		}
		// The init is gone, but in a shared pid namespace its children may not be.
	default:
	}
	if all || execID == containerID {
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		if err := s.rc.Kill(ctx, containerID, sig, all && started); err != nil {
			select {
			case <-p.exited:
				return nil // it exited meanwhile (or before: nothing was left)
			default:
			}
			return fmt.Errorf("container %s: signal %d: %w", containerID, sig, err)
		}
		return nil
	}
	if err := unix.Kill(p.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("container %s: exec %s: signal %d: %w", containerID, execID, sig, err)
	}
	return nil
}

// Wait waits for a process to exit and returns its exit status.
func (s *Sandbox) Wait(ctx context.Context, containerID, execID string) (int32, error) {
	_, p, err := s.process(containerID, execID)
	if err != nil {
		return 0, err
	}
	if p == nil {
		return 0, fmt.Errorf("container %s: exec %s is starting: %w", containerID, execID, ErrPrecondition)
	}
	select {
	case <-p.exited:
		return p.status, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// ReadOutput reads up to max bytes of a process's stdout (or stderr); an
// empty result means the stream ended.
func (s *Sandbox) ReadOutput(ctx context.Context, containerID, execID string, stderr bool, max uint32) ([]byte, error) {
	_, p, err := s.process(containerID, execID)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("container %s: exec %s is starting: %w", containerID, execID, ErrPrecondition)
	}
	buf := p.io.Stdout
	if stderr {
		buf = p.io.Stderr
	}
	b, err := buf.Read(ctx, int(max))
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	return b, err
}

// WriteStdin writes to a process's stdin.
func (s *Sandbox) WriteStdin(ctx context.Context, containerID, execID string, data []byte) (int, error) {
	_, p, err := s.process(containerID, execID)
	if err != nil {
		return 0, err
	}
	if p == nil {
		return 0, fmt.Errorf("container %s: exec %s is starting: %w", containerID, execID, ErrPrecondition)
	}
	n, err := p.io.WriteStdin(ctx, data)
	if errors.Is(err, stdio.ErrStdinClosed) {
		return n, fmt.Errorf("container %s: %w: %w", containerID, err, ErrPrecondition)
	}
	return n, err
}

// CloseStdin closes a process's stdin.
func (s *Sandbox) CloseStdin(containerID, execID string) error {
	_, p, err := s.process(containerID, execID)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("container %s: exec %s is starting: %w", containerID, execID, ErrPrecondition)
	}
	return p.io.CloseStdin()
}

// ResizeTTY sets a TTY process's window size.
func (s *Sandbox) ResizeTTY(containerID, execID string, rows, cols uint32) error {
	_, p, err := s.process(containerID, execID)
	if err != nil {
		return err
	}
	if p == nil || p.io.Master() == nil {
		return fmt.Errorf("container %s: process %q has no terminal: %w", containerID, execID, ErrPrecondition)
	}
	return runc.Resize(p.io.Master(), uint16(rows), uint16(cols))
}
