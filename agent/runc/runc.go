// Package runc drives the runc command line: create, start, exec, kill,
// delete and state of containers, with pid files and console sockets.
package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultPath is Debian's runc.
const DefaultPath = "/usr/sbin/runc"

// CrunPath is Debian's crun, which takes runc's command line. Written in
// C, it starts in a fraction of runc's time, which matters most where the
// CPU is emulated.
const CrunPath = "/usr/bin/crun"

// Runc runs one runc binary against one state root.
type Runc struct {
	// Path of the runc binary (DefaultPath when empty).
	Path string
	// Root is runc's state directory (--root); "" means runc's default.
	Root string
}

// IO is the stdio a container or exec process gets. Nil files are /dev/null.
// They must be *os.File so the process inherits them directly and runc can
// exit while the process keeps running.
type IO struct {
	Stdin, Stdout, Stderr *os.File
}

// ErrNotExist is returned for a container runc does not know.
var ErrNotExist = errors.New("container does not exist")

func (r *Runc) path() string {
	if r.Path == "" {
		return DefaultPath
	}
	return r.Path
}

// isRunc reports whether the binary is runc itself (not crun).
func (r *Runc) isRunc() bool { return filepath.Base(r.path()) == "runc" }

func (r *Runc) command(ctx context.Context, args ...string) *exec.Cmd {
	path := r.path()
	var all []string
	if r.Root != "" {
		all = append(all, "--root", r.Root)
	}
	all = append(all, args...)
	cmd := exec.CommandContext(ctx, path, all...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// commandLog is command with runc's messages sent to a JSON log file.
func (r *Runc) commandLog(ctx context.Context, log string, args ...string) *exec.Cmd {
	if log == "" {
		return r.command(ctx, args...)
	}
	return r.command(ctx, append([]string{"--log", log, "--log-format", "json"}, args...)...)
}

// runLog is run, quoting the last error runc logged when it fails.
func (r *Runc) runLog(cmd *exec.Cmd, log string) error {
	err := r.run(cmd)
	if err == nil || log == "" {
		return err
	}
	b, rerr := os.ReadFile(log)
	if rerr != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var e struct{ Level, Msg string }
		if json.Unmarshal([]byte(lines[i]), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			return fmt.Errorf("%s %s: %s", filepath.Base(cmd.Args[0]), describe(cmd.Args[1:]), e.Msg)
		}
	}
	return err
}

// run runs runc and turns a failure into an error carrying runc's message.
func (r *Runc) run(cmd *exec.Cmd) error {
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		what := filepath.Base(cmd.Args[0]) + " " + describe(cmd.Args[1:])
		if unknownContainer(msg) {
			return fmt.Errorf("%s: %w: %s", what, ErrNotExist, lastLine(msg))
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s: %s", what, lastLine(msg))
	}
	return nil
}

// unknownContainer reports whether a runtime's message says it has no
// such container: runc says so, crun fails to open the container's status
// file in its state directory.
func unknownContainer(msg string) bool {
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") ||
		strings.Contains(msg, "/status`: No such file or directory")
}

// describe names a runc invocation by its subcommand and container id,
// skipping global flags.
func describe(args []string) string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "--") {
		i += 2
	}
	if i >= len(args) {
		return strings.Join(args, " ")
	}
	return args[i] + " " + args[len(args)-1]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// CreateOpts are the options of Create.
type CreateOpts struct {
	// PidFile receives the container process's pid.
	PidFile string
	// ConsoleSocket, when set, is a unix socket that receives the pty master (TTY containers).
	ConsoleSocket string
	// IO is the process's stdio (ignored with a console socket).
	IO IO
	// Log is a file runc writes its messages to; errors quote its last one.
	Log string
}

// Create creates container id from bundle; its process waits for Start.
func (r *Runc) Create(ctx context.Context, id, bundle string, o CreateOpts) error {
	args := []string{"create", "--bundle", bundle, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	cmd := r.commandLog(ctx, o.Log, append(args, id)...)
	setIO(cmd, o.IO, o.ConsoleSocket != "")
	return r.runLog(cmd, o.Log)
}

// setIO hands stdio to runc. A stderr file for the process replaces the
// buffer run() reads runc's own messages from: runc writes its errors to the
// log instead when the process owns stderr.
func setIO(cmd *exec.Cmd, io IO, tty bool) {
	if tty {
		return
	}
	if io.Stdin != nil {
		cmd.Stdin = io.Stdin
	}
	if io.Stdout != nil {
		cmd.Stdout = io.Stdout
	}
	if io.Stderr != nil {
		cmd.Stderr = io.Stderr
	}
}

// Start starts the process of a created container.
func (r *Runc) Start(ctx context.Context, id string) error {
	return r.run(r.command(ctx, "start", id))
}

// ExecOpts are the options of Exec.
type ExecOpts struct {
	// PidFile receives the new process's pid.
	PidFile string
	// ConsoleSocket receives the pty master for a TTY process.
	ConsoleSocket string
	// IO is the process's stdio (ignored with a console socket).
	IO IO
	// Log is a file runc writes its messages to; errors quote its last one.
	Log string
}

// Exec starts the process described by processJSON (an OCI process) in
// container id, detached: it returns once the process runs.
func (r *Runc) Exec(ctx context.Context, id, processJSON string, o ExecOpts) error {
	args := []string{"exec", "--detach", "--process", processJSON, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	cmd := r.commandLog(ctx, o.Log, append(args, id)...)
	setIO(cmd, o.IO, o.ConsoleSocket != "")
	return r.runLog(cmd, o.Log)
}

// Kill sends sig to the container's init process, or with all to every process.
func (r *Runc) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	return r.run(r.command(ctx, append(args, id, strconv.Itoa(int(sig)))...))
}

// Delete removes the container; force kills it first if it runs.
func (r *Runc) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	return r.run(r.command(ctx, append(args, id)...))
}

// State is runc's view of a container.
type State struct {
	ID      string `json:"id"`
	Pid     int    `json:"pid"`
	Status  string `json:"status"`
	Bundle  string `json:"bundle"`
	Rootfs  string `json:"rootfs"`
	Created string `json:"created"`
}

// State reports the container's state.
func (r *Runc) State(ctx context.Context, id string) (*State, error) {
	cmd := r.command(ctx, "state", id)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := r.run(cmd); err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		return nil, fmt.Errorf("runc state %s: %w", id, err)
	}
	return &s, nil
}

// ReadPidFile reads a pid file runc wrote.
func ReadPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", filepath.Base(path), err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad pid %q", filepath.Base(path), b)
	}
	return pid, nil
}

// Update applies new resource limits (an OCI LinuxResources JSON document) to a container.
func (r *Runc) Update(ctx context.Context, id string, resources []byte) error {
	// A file, not "-" for stdin: crun's --resources reads a file only.
	f, err := os.CreateTemp("", "resources-*.json")
	if err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(resources)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("update %s: write resources: %w", id, err)
	}
	return r.run(r.command(ctx, "update", "--resources", f.Name(), id))
}
