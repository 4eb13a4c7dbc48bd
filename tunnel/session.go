package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// ErrSessionClosed is the Err of a session closed on this side.
var ErrSessionClosed = errors.New("tunnel: session closed")

// Session is one TLS connection with yamux on top, between a node and a VM.
type Session struct {
	mux   *yamux.Session
	conn  *tls.Conn
	wire  *wireConn
	cfg   Config
	log   *slog.Logger
	state tls.ConnectionState

	streams streamTable

	mu          sync.Mutex
	closedLocal bool
	err         error
	wg          sync.WaitGroup
}

// newSession starts yamux over an established, verified TLS connection.
func newSession(conn *tls.Conn, cfg Config, client bool) (*Session, error) {
	s := &Session{
		conn:  conn,
		cfg:   cfg,
		state: conn.ConnectionState(),
		log:   cfg.Logger.With("peer", conn.RemoteAddr().String()),
	}
	s.wire = newWireConn(conn, s.fail, &s.streams)
	yc := &yamux.Config{
		AcceptBacklog: cfg.AcceptBacklog,
		// The session runs its own keepalive so that Err can name a lost peer.
		EnableKeepAlive:        false,
		KeepAliveInterval:      cfg.KeepAliveInterval,
		ConnectionWriteTimeout: cfg.ConnectionWriteTimeout,
		MaxStreamWindowSize:    cfg.StreamWindow,
		StreamOpenTimeout:      cfg.StreamOpenTimeout,
		StreamCloseTimeout:     cfg.StreamCloseTimeout,
		Logger:                 yamuxLogger{s.log},
	}
	var err error
	if client {
		s.mux, err = yamux.Client(s.wire, yc)
	} else {
		s.mux, err = yamux.Server(s.wire, yc)
	}
	if err != nil {
		return nil, fmt.Errorf("tunnel: start yamux: %w", err)
	}
	s.wg.Add(1)
	go s.keepalive()
	return s, nil
}

// keepalive pings the peer every KeepAliveInterval and closes the session
// when a ping is not answered within ConnectionWriteTimeout.
func (s *Session) keepalive() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := s.mux.Ping(); err != nil {
				if !s.mux.IsClosed() {
					s.fail(fmt.Errorf("tunnel: keepalive to %s: %w", s.conn.RemoteAddr(), err))
					s.log.Warn("tunnel keepalive failed; closing session", "err", err)
				}
				s.streams.wakeAll()
				_ = s.mux.Close()
				return
			}
		case <-s.mux.CloseChan():
			s.streams.wakeAll()
			return
		}
	}
}

// fail records the first reason the session ends.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err == nil && !s.closedLocal {
		s.err = err
	}
	s.mu.Unlock()
}

// Open starts a stream of kind with optional metadata. The header is sent at
// once and Open does not wait for the peer: a refused stream shows as a
// *RefusedError from the first Read.
func (s *Session) Open(ctx context.Context, kind Kind, meta map[string]string) (net.Conn, error) {
	hdr, err := encodeHeader(Header{Kind: kind, Meta: meta}, s.cfg.MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: open %q stream: %w", kind, err)
	}
	s.wire.opening.Add(1)
	st, err := s.openStream(ctx)
	if err != nil {
		s.wire.opening.Add(-1)
		return nil, fmt.Errorf("tunnel: open %q stream to %s: %w", kind, s.conn.RemoteAddr(), s.explain(err))
	}
	str := stream{st, s, s.streams.attach(st)}
	_, err = str.Write(hdr)
	s.wire.opening.Add(-1)
	if err != nil {
		_ = str.Close()
		return nil, fmt.Errorf("tunnel: send %q stream header to %s: %w", kind, s.conn.RemoteAddr(), s.explain(err))
	}
	return &clientConn{stream: str, status: statusGate{kind: kind}}, nil
}

// openStream opens a yamux stream, giving up when ctx ends. yamux blocks an
// open while AcceptBacklog opens are unacknowledged.
func (s *Session) openStream(ctx context.Context) (*yamux.Stream, error) {
	if ctx.Done() == nil {
		return s.mux.OpenStream()
	}
	type result struct {
		st  *yamux.Stream
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := s.mux.OpenStream()
		ch <- result{st, err}
	}()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.st != nil {
				_ = r.st.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// streamErr turns the io.EOF that yamux gives every stream of a dead session
// into the session's error, unless the peer really closed that stream; and
// the timeout with which a closing session wakes its streams likewise.
func (s *Session) streamErr(e *streamEntry, err error) error {
	if !s.mux.IsClosed() {
		return err
	}
	switch {
	case errors.Is(err, io.EOF) && e.state.Load()&entryPeerEnded != 0:
		return err
	case errors.Is(err, io.EOF), errors.Is(err, yamux.ErrTimeout):
		return fmt.Errorf("tunnel: stream cut: %w", s.Err())
	}
	return s.explain(err)
}

// explain replaces yamux's "session shutdown" by why the session ended.
func (s *Session) explain(err error) error {
	if errors.Is(err, yamux.ErrSessionShutdown) {
		if e := s.Err(); e != nil {
			return e
		}
	}
	return err
}

// ConnectionState returns the TLS state of the connection, peer
// certificates included.
func (s *Session) ConnectionState() tls.ConnectionState { return s.state }

// RemoteAddr returns the peer's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// NumStreams returns the number of streams open on the session.
func (s *Session) NumStreams() int { return s.mux.NumStreams() }

// Close ends the session and every stream on it.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.err == nil {
		s.closedLocal = true
	}
	s.mu.Unlock()
	err := s.mux.Close()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("tunnel: close session to %s: %w", s.conn.RemoteAddr(), err)
	}
	return nil
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// Err returns why the session ended once Done is closed, nil before:
// ErrSessionClosed after Close, otherwise the connection or keepalive error.
func (s *Session) Err() error {
	select {
	case <-s.mux.CloseChan():
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.err != nil:
		return s.err
	case s.closedLocal:
		return ErrSessionClosed
	default:
		return fmt.Errorf("tunnel: session with %s ended", s.conn.RemoteAddr())
	}
}

// wireConn is the connection under yamux. It records the first read or write
// error as the reason the session ended, and scans the yamux frames read to
// see which streams the peer closed.
type wireConn struct {
	conn    net.Conn
	raw     *batchConn // under conn's TLS, when it is one
	fail    func(error)
	streams *streamTable
	scan    frameScanner

	held    []byte       // frames held for what follows them (see Write)
	opening atomic.Int32 // Session.Open calls between their SYN and header
}

// tlsRecordPayload is the most plaintext one TLS record carries.
const tlsRecordPayload = 16 << 10

func newWireConn(c *tls.Conn, fail func(error), streams *streamTable) *wireConn {
	raw, _ := c.NetConn().(*batchConn)
	return &wireConn{conn: c, raw: raw, fail: fail, streams: streams, scan: frameScanner{
		opened: streams.opened,
		ended:  streams.peerEnded,
	}}
}

func (w *wireConn) Read(b []byte) (int, error) {
	n, err := w.conn.Read(b)
	w.scan.scan(b[:n])
	if err != nil {
		if errors.Is(err, io.EOF) {
			w.fail(fmt.Errorf("tunnel: peer %s closed the connection: %w", w.conn.RemoteAddr(), io.ErrUnexpectedEOF))
		} else {
			w.fail(fmt.Errorf("tunnel: read from %s: %w", w.conn.RemoteAddr(), err))
		}
	}
	return n, err
}

// Write sends what yamux's send loop writes, holding back small frames that
// are sure to be followed at once so that they share a TLS record and a
// system call with what follows:
//   - yamux writes a frame's header and body separately; a data header is
//     held for its body;
//   - the SYN of a stream that Session.Open is opening is held for the
//     stream header Open writes next.
//
// Held bytes go out with the next write, whatever it is, so the order of
// frames on the wire never changes. Only yamux's send loop calls Write.
func (w *wireConn) Write(b []byte) (int, error) {
	if len(b) == yamuxHeaderSize {
		typ, flags := b[1], binary.BigEndian.Uint16(b[2:4])
		if flags&yamuxFlagRST != 0 && (typ == yamuxTypeData || typ == yamuxTypeWindow) {
			w.streams.reset(binary.BigEndian.Uint32(b[4:8]))
		}
	}
	if len(b) == yamuxHeaderSize && len(w.held) < 64*yamuxHeaderSize {
		typ, flags := b[1], binary.BigEndian.Uint16(b[2:4])
		dataHeader := typ == yamuxTypeData && binary.BigEndian.Uint32(b[8:12]) > 0
		opening := typ == yamuxTypeWindow && flags&yamuxFlagSYN != 0 && w.opening.Load() > 0
		if dataHeader || opening {
			w.held = append(w.held, b...)
			return len(b), nil
		}
	}
	if len(w.held) == 0 {
		return w.write(b)
	}
	k := min(len(b), max(0, tlsRecordPayload-len(w.held)))
	w.held = append(w.held, b[:k]...)
	_, err := w.write(w.held)
	w.held = w.held[:0]
	if err != nil {
		return 0, err
	}
	if k == len(b) {
		return k, nil
	}
	n, err := w.write(b[k:])
	return k + n, err
}

func (w *wireConn) write(b []byte) (int, error) {
	if w.raw != nil {
		w.raw.begin()
	}
	n, err := w.conn.Write(b)
	if w.raw != nil {
		if ferr := w.raw.flush(); err == nil && ferr != nil {
			n, err = 0, ferr
		}
	}
	if err != nil {
		w.fail(fmt.Errorf("tunnel: write to %s: %w", w.conn.RemoteAddr(), err))
	}
	return n, err
}

func (w *wireConn) Close() error { return w.conn.Close() }

// LocalAddr and RemoteAddr let yamux streams report the connection's addresses.
func (w *wireConn) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *wireConn) RemoteAddr() net.Addr { return w.conn.RemoteAddr() }

// yamuxLogger routes yamux's log lines to slog at the level of their prefix.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any) { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.emit(fmt.Sprintf(format, v...))
}
func (l yamuxLogger) Println(v ...any) { l.emit(fmt.Sprintln(v...)) }

func (l yamuxLogger) emit(msg string) {
	// yamux reports every lost connection as an error; the session's end is
	// already reported through Err, so its lines are detail, not alarms.
	msg = strings.TrimSpace(msg)
	level := slog.LevelDebug
	for _, p := range []string{"[ERR]", "[WARN]"} {
		if strings.HasPrefix(msg, p) {
			level = slog.LevelInfo
			msg = strings.TrimSpace(strings.TrimPrefix(msg, p))
		}
	}
	l.log.Log(context.Background(), level, msg)
}

// yamux frame header layout (yamux spec.md), as far as frameScanner needs it.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
	yamuxTypeWindow = 1
	yamuxFlagSYN    = 0x1
	yamuxFlagFIN    = 0x4
	yamuxFlagRST    = 0x8
)

// frameScanner follows the yamux frames in a byte stream and reports each
// stream the sender opens (SYN), and closes (FIN) or resets (RST). It is
// used by one reader.
type frameScanner struct {
	opened func(id uint32)
	ended  func(id uint32)
	hdr    [yamuxHeaderSize]byte
	have   int    // bytes of hdr collected
	skip   uint32 // data bytes of the current frame still to pass
}

func (f *frameScanner) scan(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(uint32(len(b)), f.skip)
			f.skip -= k
			b = b[k:]
			continue
		}
		k := copy(f.hdr[f.have:], b)
		f.have += k
		b = b[k:]
		if f.have < yamuxHeaderSize {
			return
		}
		f.have = 0
		typ := f.hdr[1]
		flags := binary.BigEndian.Uint16(f.hdr[2:4])
		id := binary.BigEndian.Uint32(f.hdr[4:8])
		if typ == yamuxTypeData {
			f.skip = binary.BigEndian.Uint32(f.hdr[8:12])
		}
		if typ == yamuxTypeData || typ == yamuxTypeWindow {
			if flags&yamuxFlagSYN != 0 {
				f.opened(id)
			}
			if flags&(yamuxFlagFIN|yamuxFlagRST) != 0 {
				f.ended(id)
			}
		}
	}
}
