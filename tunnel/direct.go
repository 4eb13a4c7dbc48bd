package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// DialStream opens one stream of kind on a connection of its own: a new TCP
// connection to addr with the same TLS 1.3 mutual authentication and
// Verifier as Dial, ALPN peerpod-stream/1, and the stream's header, status
// and payload directly on TLS, with no yamux in between (SPEC.md, "Direct
// streams"). It suits a stream that carries bulk or latency-bound traffic
// for a long time (the pod network's frames): each write goes from the
// caller's goroutine to the socket, and each read from the socket to the
// caller, with no hand-off to a session goroutine and no window to wait
// for. Like Session.Open it does not wait for the peer: a refused stream
// shows as a *RefusedError from the first Read.
func DialStream(ctx context.Context, addr string, cfg Config, kind Kind, meta map[string]string) (net.Conn, error) {
	cfg, err := dialConfig(addr, cfg)
	if err != nil {
		return nil, err
	}
	hdr, err := encodeHeader(Header{Kind: kind, Meta: meta}, cfg.MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	conn, err := dialTLS(hctx, addr, cfg, alpnDirect)
	if err != nil {
		return nil, err
	}
	c := newDirectConn(conn, kind)
	c.statusSent = true // the opener sends no status
	if d, ok := hctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(d)
	}
	_, err = c.Write(hdr)
	_ = conn.SetWriteDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("tunnel: send %q stream header to %s: %w", kind, addr, err)
	}
	cfg.Logger.Debug("tunnel direct stream open", "peer", addr, "kind", kind)
	return &directClient{directConn: c, status: statusGate{kind: kind}}, nil
}

// OpenDirect opens a stream of kind on a connection of its own to the
// client's server (see DialStream). The stream does not depend on the
// client's session, and Close closes it.
func (c *Client) OpenDirect(ctx context.Context, kind Kind, meta map[string]string) (net.Conn, error) {
	if c.ctx.Err() != nil {
		return nil, ErrClientClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	conn, err := DialStream(ctx, c.addr, c.cfg, kind, meta)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, ErrClientClosed
		}
		return nil, err
	}
	dc := conn.(*directClient)
	dc.onClose = func() {
		c.mu.Lock()
		delete(c.direct, dc.directConn)
		c.mu.Unlock()
	}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		_ = dc.Close()
		return nil, ErrClientClosed
	}
	if c.direct == nil {
		c.direct = map[*directConn]struct{}{}
	}
	c.direct[dc.directConn] = struct{}{}
	c.mu.Unlock()
	return dc, nil
}

// closeDirect closes the client's direct streams; c.mu is not held.
func (c *Client) closeDirect() {
	c.mu.Lock()
	conns := make([]*directConn, 0, len(c.direct))
	for dc := range c.direct {
		conns = append(conns, dc)
	}
	c.mu.Unlock()
	for _, dc := range conns {
		_ = dc.Close()
	}
}

// serveDirect reads the header of the one stream on conn and hands the
// stream to its route, or refuses it.
func (s *Server) serveDirect(ctx context.Context, conn *tls.Conn, log *slog.Logger) {
	c := newDirectConn(conn, "")
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	h, err := readHeader(conn, s.cfg.MaxHeaderSize)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		var he *headerError
		switch {
		case errors.As(err, &he):
			s.refuseDirect(c, log, he.code, he.msg)
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.refuseDirect(c, log, statusHeaderTimeout, fmt.Sprintf("no header within %v", s.cfg.HeaderTimeout))
		default:
			log.Debug("tunnel direct stream ended before its header", "err", err)
			_ = c.Close()
		}
		return
	}
	c.kind = h.Kind
	r := s.lookup(h.Kind)
	if r == nil {
		s.refuseDirect(c, log, statusUnknownKind, fmt.Sprintf("no handler for %q", h.Kind))
		return
	}
	log.Debug("tunnel direct stream open", "kind", h.Kind)
	sc := &directServer{directConn: c, header: h}
	// The stream ends with the server, as a session's streams do.
	stop := context.AfterFunc(ctx, func() { _ = sc.Close() })
	if r.handler != nil {
		defer stop()
		defer sc.Close()
		r.handler(ctx, sc, h)
		return
	}
	select {
	case r.listener.conns <- sc:
	case <-r.listener.closed:
		stop()
		s.refuseDirect(c, log, statusUnavailable, fmt.Sprintf("listener for %q closed", h.Kind))
	case <-ctx.Done():
		_ = sc.Close()
	}
}

// refuseDirect tells the opener why its stream is not served and closes
// the connection.
func (s *Server) refuseDirect(c *directConn, log *slog.Logger, code byte, reason string) {
	log.Info("tunnel stream refused", "reason", reason)
	c.writeMu.Lock()
	c.statusSent = true // the refusal is the status
	c.writeMu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(s.cfg.ConnectionWriteTimeout))
	_, _ = c.Write(refusal(code, reason))
	_ = c.Close()
}

// directBatchSize bounds the bytes of TLS records a direct stream gathers
// before a system call: a direct stream's writes are large batches.
const directBatchSize = 256 << 10

// directConn is a stream alone on a TLS connection. Each Write gathers the
// TLS records it makes and sends them in as few system calls as it can.
type directConn struct {
	*tls.Conn
	raw  *batchConn // under the TLS, when it is one
	kind Kind

	writeMu    sync.Mutex
	statusSent bool // the serving side's accept status went out

	closeOnce sync.Once
	closeErr  error
	onClose   func()
}

func newDirectConn(conn *tls.Conn, kind Kind) *directConn {
	raw, _ := conn.NetConn().(*batchConn)
	if raw != nil {
		raw.limit = directBatchSize
	}
	return &directConn{Conn: conn, raw: raw, kind: kind}
}

// Write sends b; on the serving side the accept status goes with the
// first write.
func (c *directConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	status := 0
	if !c.statusSent {
		buf := make([]byte, 1+len(b))
		buf[0] = statusAccepted
		copy(buf[1:], b)
		b, status = buf, 1
	}
	if c.raw != nil {
		c.raw.begin()
	}
	n, err := c.Conn.Write(b)
	if c.raw != nil {
		if ferr := c.raw.flush(); err == nil && ferr != nil {
			n, err = 0, ferr
		}
	}
	if n > 0 && status == 1 {
		c.statusSent = true
		n--
	}
	return n, err
}

// Close closes the connection. A Write blocked on a peer that reads no
// more does not hold it up: the socket is closed under it.
func (c *directConn) Close() error {
	c.closeOnce.Do(func() {
		if c.writeMu.TryLock() {
			if !c.statusSent {
				c.statusSent = true
				c.writeMu.Unlock()
				_, _ = c.Write(nil)
			} else {
				c.writeMu.Unlock()
			}
			c.closeErr = c.Conn.Close()
		} else {
			c.closeErr = c.Conn.NetConn().Close()
			_ = c.Conn.Close()
		}
		if c.onClose != nil {
			c.onClose()
		}
	})
	return c.closeErr
}

// CloseWrite closes the sending side (TLS close_notify, then a TCP
// half-close); reads go on until the peer closes.
func (c *directConn) CloseWrite() error {
	if err := c.Conn.CloseWrite(); err != nil {
		return err
	}
	if cw, ok := c.Conn.NetConn().(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// directClient is a direct stream on the opening side. Its first Read
// consumes the serving side's status and turns a refusal into a
// *RefusedError.
type directClient struct {
	*directConn
	status statusGate
}

func (c *directClient) Read(b []byte) (int, error) {
	// A timeout is not remembered: the caller may retry it.
	return c.status.read(c.Conn, c, b, func(err error) bool {
		var ne net.Error
		return !errors.As(err, &ne) || !ne.Timeout()
	})
}

// directServer is a direct stream on the serving side.
type directServer struct {
	*directConn
	header Header
}

// Header returns the header the stream arrived with.
func (c *directServer) Header() Header { return c.header }

var (
	_ net.Conn = (*directClient)(nil)
	_ net.Conn = (*directServer)(nil)
)
