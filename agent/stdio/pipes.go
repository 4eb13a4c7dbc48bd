package stdio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Process is the agent's end of one process's stdio: pipes, or a pty master.
type Process struct {
	// Child are the files the process inherits (nil for a TTY process); the
	// caller closes them with CloseChild once runc has handed them over.
	Child struct{ Stdin, Stdout, Stderr *os.File }

	stdinMu sync.Mutex
	stdin   *os.File // nil once closed or when the process has no stdin
	master  *os.File // pty master, TTY processes only

	Stdout, Stderr *Buffer
}

// NewPipes makes pipes for a non-TTY process; withStdin adds a stdin pipe.
func NewPipes(withStdin bool, bufSize int) (*Process, error) {
	p := &Process{Stdout: NewBuffer(bufSize), Stderr: NewBuffer(bufSize)}
	var opened []*os.File
	fail := func(err error) (*Process, error) {
		for _, f := range opened {
			f.Close()
		}
		return nil, fmt.Errorf("stdio pipes: %w", err)
	}
	if withStdin {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		opened = append(opened, r, w)
		p.Child.Stdin, p.stdin = r, w
	}
	or, ow, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	opened = append(opened, or, ow)
	er, ew, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	p.Child.Stdout, p.Child.Stderr = ow, ew
	go p.Stdout.Fill(or)
	go p.Stderr.Fill(er)
	return p, nil
}

// NewTTY wraps a pty master: output is read from it, stdin written to it.
// Stderr of a TTY process is part of its stdout, so Stderr ends at once.
func NewTTY(master *os.File, bufSize int) *Process {
	p := &Process{Stdout: NewBuffer(bufSize), Stderr: NewBuffer(1), master: master, stdin: master}
	p.Stderr.CloseWrite()
	go p.Stdout.Fill(master)
	return p
}

// Master is the pty master of a TTY process, nil otherwise.
func (p *Process) Master() *os.File { return p.master }

// CloseChild closes the agent's copies of the child's ends.
func (p *Process) CloseChild() {
	for _, f := range []*os.File{p.Child.Stdin, p.Child.Stdout, p.Child.Stderr} {
		if f != nil {
			f.Close()
		}
	}
}

// ErrStdinClosed is returned by WriteStdin after CloseStdin or without stdin.
var ErrStdinClosed = errors.New("stdin is closed")

// WriteStdin writes data to the process's stdin, giving up when ctx ends.
func (p *Process) WriteStdin(ctx context.Context, data []byte) (int, error) {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return 0, ErrStdinClosed
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = p.stdin.SetWriteDeadline(dl)
	} else {
		_ = p.stdin.SetWriteDeadline(time.Time{})
	}
	n, err := p.stdin.Write(data)
	if err != nil {
		return n, fmt.Errorf("write stdin: %w", err)
	}
	return n, nil
}

// CloseStdin closes the process's stdin (for a pty, sends end-of-file).
func (p *Process) CloseStdin() error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return nil
	}
	if p.master != nil {
		// A pty has no half-close: EOT at the start of a line is end-of-file.
		_, err := p.master.Write([]byte{4})
		p.stdin = nil
		return err
	}
	err := p.stdin.Close()
	p.stdin = nil
	return err
}

// Close releases everything: stdin, the pty master.
func (p *Process) Close() {
	_ = p.CloseStdin()
	if p.master != nil {
		p.master.Close()
	}
}
