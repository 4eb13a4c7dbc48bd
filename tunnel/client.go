package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClientClosed is returned by a Client's methods after Close.
var ErrClientClosed = errors.New("tunnel: client closed")

// Backoff between failed dials of a Client: doubling from the first to the
// last, each wait drawn at random from its upper half.
const (
	clientMinBackoff = 100 * time.Millisecond
	clientMaxBackoff = 10 * time.Second
)

// Client keeps one session to addr, re-dialling (jittered backoff) when it
// dies. It dials first when a session is first asked for.
type Client struct {
	addr string
	cfg  Config
	log  *slog.Logger

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	sess    *Session
	dialing chan struct{} // closed when the running dial loop ends
	lastErr error
	dialed  bool
	direct  map[*directConn]struct{} // open streams of OpenDirect

	reconnects atomic.Uint64
}

// NewClient returns a client for the tunnel server at addr. Config errors
// show on the first Session or Open.
func NewClient(addr string, cfg Config) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{addr: addr, cfg: cfg, log: log, ctx: ctx, cancel: cancel}
}

// Open starts a stream of kind on the current session (see Session.Open).
// If that session turns out to be dead, Open tries once more on a new one.
func (c *Client) Open(ctx context.Context, kind Kind, meta map[string]string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		s, err := c.Session(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := s.Open(ctx, kind, meta)
		if err == nil || attempt > 0 || s.Err() == nil {
			return conn, err
		}
		c.mu.Lock()
		if c.sess == s {
			c.sess = nil
		}
		c.mu.Unlock()
	}
}

// Session returns the current session, dialling if there is none; it waits
// for a dial in progress until ctx ends.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	if _, err := dialConfig(c.addr, c.cfg); err != nil {
		return nil, err
	}
	for {
		c.mu.Lock()
		if c.ctx.Err() != nil {
			c.mu.Unlock()
			return nil, ErrClientClosed
		}
		if s := c.sess; s != nil {
			select {
			case <-s.Done():
				c.sess = nil
			default:
				c.mu.Unlock()
				return s, nil
			}
		}
		if c.dialing == nil {
			c.startDialLocked()
		}
		wait, lastErr := c.dialing, c.lastErr
		c.mu.Unlock()

		select {
		case <-wait:
		case <-c.ctx.Done():
			return nil, ErrClientClosed
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("tunnel: no session to %s: %w (last dial: %v)", c.addr, ctx.Err(), lastErr)
			}
			return nil, fmt.Errorf("tunnel: no session to %s: %w", c.addr, ctx.Err())
		}
	}
}

// startDialLocked starts the dial loop; c.mu is held.
func (c *Client) startDialLocked() {
	done := make(chan struct{})
	c.dialing = done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		c.dialLoop(done)
	}()
}

// dialLoop dials until it has a session or the client is closed.
func (c *Client) dialLoop(done chan struct{}) {
	backoff := clientMinBackoff
	for {
		s, err := Dial(c.ctx, c.addr, c.cfg)
		c.mu.Lock()
		if c.dialing == done {
			c.dialing = nil
		}
		if err == nil {
			if c.ctx.Err() != nil {
				c.mu.Unlock()
				_ = s.Close()
				return
			}
			if c.dialed {
				c.reconnects.Add(1)
			}
			c.dialed = true
			c.sess, c.lastErr = s, nil
			c.wg.Add(1)
			go c.watch(s)
			c.mu.Unlock()
			return
		}
		c.lastErr = err
		c.dialing = done
		c.mu.Unlock()
		c.log.Warn("tunnel dial failed; retrying", "addr", c.addr, "err", err, "backoff", backoff)

		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, clientMaxBackoff)
		select {
		case <-time.After(wait):
		case <-c.ctx.Done():
			return
		}
	}
}

// watch re-dials when s ends, until the client is closed.
func (c *Client) watch(s *Session) {
	defer c.wg.Done()
	select {
	case <-s.Done():
	case <-c.ctx.Done():
		_ = s.Close()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.sess {
	case s:
		c.sess = nil
	case nil:
	default:
		return // already replaced
	}
	if c.ctx.Err() == nil && c.dialing == nil {
		c.log.Info("tunnel session ended; re-dialling", "addr", c.addr, "err", s.Err())
		c.startDialLocked()
	}
}

// Adopt makes s — a session to the client's address, dialled with its
// configuration (a probe's, say) — the client's current session, as if the
// client had dialled it, so it need not be dialled again. It fails when the
// client is closed or already has a session; s is then left to the caller.
func (c *Client) Adopt(s *Session) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.ctx.Err() != nil:
		return ErrClientClosed
	case c.sess != nil || c.dialing != nil:
		return fmt.Errorf("tunnel: client of %s already has a session", c.addr)
	}
	select {
	case <-s.Done():
		return fmt.Errorf("tunnel: session to %s already ended: %w", c.addr, s.Err())
	default:
	}
	c.dialed = true
	c.sess = s
	c.wg.Add(1)
	go c.watch(s)
	return nil
}

// Reconnects returns how many sessions were dialled after the first.
func (c *Client) Reconnects() uint64 { return c.reconnects.Load() }

// Close ends the current session and stops re-dialling.
func (c *Client) Close() error {
	c.mu.Lock()
	c.cancel()
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	var err error
	if s != nil {
		err = s.Close()
	}
	c.closeDirect()
	c.wg.Wait()
	return err
}
