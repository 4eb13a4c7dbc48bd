// Package proxy serves a sandbox's agent socket: every connection the Kata
// runtime makes on it becomes one stream to the pod VM (a tunnel stream of
// kind agent), and bytes are copied both ways unchanged — nothing is decoded.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// OpenFunc opens one stream to the VM's agent. It may wait (for example
// until the VM is up) but must honour ctx.
type OpenFunc func(ctx context.Context) (net.Conn, error)

// Proxy is one listening agent socket.
type Proxy struct {
	path        string
	ln          *net.UnixListener
	open        OpenFunc
	openTimeout time.Duration
	log         *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	active int
}

// Options tune a Proxy.
type Options struct {
	// OpenTimeout bounds how long a new connection waits for its stream
	// (default 30s, the runtime's agent dial timeout).
	OpenTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Listen creates the socket at path (its directory is made with mode 0700;
// a stale socket file left by a previous process is replaced) and starts
// accepting connections.
func Listen(path string, open OpenFunc, opts Options) (*Proxy, error) {
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("agent socket %s: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("agent socket %s: remove stale socket: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{path: path, ln: ln, open: open, openTimeout: opts.OpenTimeout, log: opts.Logger,
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Path is the socket's path.
func (p *Proxy) Path() string { return p.path }

// Active is the number of connections being proxied.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	var delay time.Duration
	for {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off and retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("agent socket accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.ctx.Err() != nil {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) handle(local *net.UnixConn) {
	defer p.wg.Done()
	if !p.track(local, true) {
		local.Close()
		return
	}
	p.mu.Lock()
	p.active++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.active--
		p.mu.Unlock()
		p.track(local, false)
	}()
	ctx, cancel := context.WithTimeout(p.ctx, p.openTimeout)
	remote, err := p.open(ctx)
	cancel()
	if err != nil {
		p.log.Warn("agent connection refused: no stream to the VM", "err", err)
		local.Close()
		return
	}
	if !p.track(remote, true) {
		local.Close()
		remote.Close()
		return
	}
	defer p.track(remote, false)
	Splice(local, remote)
}

// Close stops accepting, cuts every proxied connection, waits for them and
// removes the socket file.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.cancel()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("agent socket %s: %w", p.path, err)
	}
	return nil
}

type closeWriter interface{ CloseWrite() error }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Splice copies a→b and b→a until both directions end, then closes both.
// When one side's reader reaches EOF the other side's writer is half-closed
// (CloseWrite) so a peer waiting for EOF sees it; an error in either
// direction closes both at once.
func Splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(b, a)
	}()
	pipe(a, b)
	<-done
	a.Close()
	b.Close()
}

// pipe copies src to dst; on a clean EOF it half-closes dst, otherwise it
// closes both so the other direction ends too.
func pipe(dst, src net.Conn) {
	bp := bufPool.Get().(*[]byte)
	// Hide ReaderFrom/WriterTo so the pooled buffer is used.
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
	bufPool.Put(bp)
	if err == nil {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}
