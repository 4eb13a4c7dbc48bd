package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// Handler serves one stream. conn is closed after the handler returns; ctx
// ends when the session or the server does.
type Handler func(ctx context.Context, conn net.Conn, h Header)

// Server is the VM side of the tunnel: it accepts TLS connections, one
// yamux session each, and dispatches every stream by its kind.
type Server struct {
	cfg Config

	mu    sync.Mutex
	kinds map[Kind]*route
}

// route is where streams of one kind go: a handler or a listener.
type route struct {
	handler  Handler
	listener *kindListener
}

// NewServer checks cfg and returns a server with no kinds registered.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := cfg.TLS
	if t.GetConfigForClient != nil {
		// The config it returns would escape the TLS 1.3 and client
		// certificate settings forced here.
		return nil, fmt.Errorf("tunnel: Config.TLS.GetConfigForClient is not supported; use Certificates or GetCertificate")
	}
	if len(t.Certificates) == 0 && t.GetCertificate == nil {
		return nil, fmt.Errorf("tunnel: Config.TLS has no server certificate")
	}
	switch {
	case t.ClientAuth == tls.RequireAnyClientCert && cfg.Verifier != nil:
		// The Verifier checks the peer's certificate.
	case t.ClientAuth == tls.RequireAnyClientCert:
		return nil, fmt.Errorf("tunnel: Config.TLS.ClientAuth RequireAnyClientCert needs a Config.Verifier to check the peer")
	default:
		t.ClientAuth = tls.RequireAndVerifyClientCert
		if t.ClientCAs == nil {
			return nil, fmt.Errorf("tunnel: Config.TLS.ClientCAs is required to verify the peer's certificate")
		}
	}
	// The server speaks both: a yamux session, or one direct stream.
	t.NextProtos = []string{alpnProto, alpnDirect}
	return &Server{cfg: cfg, kinds: make(map[Kind]*route)}, nil
}

// Handle sends every stream of kind to h. It panics if kind is invalid or
// already has a handler or listener, like http.ServeMux does.
func (s *Server) Handle(kind Kind, h Handler) {
	if h == nil {
		panic("tunnel: nil handler for kind " + string(kind))
	}
	s.register(kind, &route{handler: h})
}

// Listener returns a net.Listener whose Accept yields the streams of kind,
// for ttrpc.Server.Serve and the like. Closing it unregisters the kind.
// Handle and Listener for the same kind are exclusive; it panics like Handle.
func (s *Server) Listener(kind Kind) net.Listener {
	l := &kindListener{
		server: s,
		kind:   kind,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
	}
	s.register(kind, &route{listener: l})
	return l
}

func (s *Server) register(kind Kind, r *route) {
	if err := ValidKind(kind); err != nil {
		panic(err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.kinds[kind]; ok {
		panic(fmt.Sprintf("tunnel: kind %q registered twice", kind))
	}
	s.kinds[kind] = r
}

func (s *Server) lookup(kind Kind) *route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kinds[kind]
}

// Serve accepts connections on ln until ctx ends (then it returns nil) or
// ln fails (then it returns why). Many sessions are served at once. Before
// returning it closes ln and every session and waits for their handlers.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("tunnel accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			_ = ln.Close()
			return fmt.Errorf("tunnel: accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// ListenAndServe listens on the TCP address addr and serves it until ctx
// ends (see Serve).
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tunnel: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn runs the handshake and one session on c until either ends.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.cfg.Logger.With("peer", c.RemoteAddr().String())
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	conn := tls.Server(&batchConn{Conn: c}, s.cfg.TLS)
	err := conn.HandshakeContext(hctx)
	if err == nil {
		err = verifyPeer(hctx, s.cfg.Verifier, conn, alpnProto, alpnDirect)
	}
	cancel()
	if err != nil {
		if errors.Is(err, io.EOF) {
			// Closed before a handshake: a reachability check (peerpodd's
			// probe of a starting VM does one), not a refused peer.
			log.Debug("tunnel connection closed before its handshake")
		} else {
			log.Warn("tunnel peer refused", "err", err)
		}
		_ = c.Close()
		return
	}
	if conn.ConnectionState().NegotiatedProtocol == alpnDirect {
		s.serveDirect(ctx, conn, log)
		return
	}
	sess, err := newSession(conn, s.cfg, false)
	if err != nil {
		log.Error("tunnel session failed to start", "err", err)
		_ = c.Close()
		return
	}
	log.Debug("tunnel session open")
	sctx, scancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	var wg sync.WaitGroup
	defer func() {
		scancel()
		stop()
		_ = sess.Close()
		wg.Wait()
		log.Debug("tunnel session ended", "err", sess.Err())
	}()
	for {
		st, err := sess.mux.AcceptStream()
		if err != nil {
			return
		}
		e := sess.streams.attach(st)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveStream(sctx, sess, stream{st, sess, e})
		}()
	}
}

// serveStream reads the header of st and hands the stream to its route, or
// refuses it.
func (s *Server) serveStream(ctx context.Context, sess *Session, st stream) {
	_ = st.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	h, err := readHeader(st, s.cfg.MaxHeaderSize)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		var he *headerError
		switch {
		case errors.As(err, &he):
			s.refuse(sess, st, he.code, he.msg)
		case errors.Is(err, yamux.ErrTimeout):
			s.refuse(sess, st, statusHeaderTimeout, fmt.Sprintf("no header within %v", s.cfg.HeaderTimeout))
		default:
			sess.log.Debug("tunnel stream ended before its header", "err", err)
			_ = st.Close()
		}
		return
	}
	r := s.lookup(h.Kind)
	if r == nil {
		s.refuse(sess, st, statusUnknownKind, fmt.Sprintf("no handler for %q", h.Kind))
		return
	}
	conn := &serverConn{stream: st, header: h}
	if r.handler != nil {
		defer conn.Close()
		r.handler(ctx, conn, h)
		return
	}
	select {
	case r.listener.conns <- conn:
	case <-r.listener.closed:
		s.refuse(sess, st, statusUnavailable, fmt.Sprintf("listener for %q closed", h.Kind))
	case <-ctx.Done():
		_ = st.Close()
	}
}

// refuse tells the opener why its stream is not served and closes it.
func (s *Server) refuse(sess *Session, st stream, code byte, reason string) {
	sess.log.Info("tunnel stream refused", "reason", reason)
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.ConnectionWriteTimeout))
	_, _ = st.Write(refusal(code, reason))
	_ = st.Close()
}

// kindListener yields the streams of one kind.
type kindListener struct {
	server *Server
	kind   Kind
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

// Accept waits for the next stream of the listener's kind.
func (l *kindListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("tunnel: %q listener: %w", l.kind, net.ErrClosed)
	}
}

// Close unregisters the kind; streams of it are refused from then on.
func (l *kindListener) Close() error {
	l.once.Do(func() {
		l.server.mu.Lock()
		if r := l.server.kinds[l.kind]; r != nil && r.listener == l {
			delete(l.server.kinds, l.kind)
		}
		l.server.mu.Unlock()
		close(l.closed)
	})
	return nil
}

// Addr names the kind.
func (l *kindListener) Addr() net.Addr { return Addr{Kind: l.kind} }

// Addr is the address of a kind's listener.
type Addr struct{ Kind Kind }

// Network returns "tunnel".
func (Addr) Network() string { return "tunnel" }

// String returns the kind.
func (a Addr) String() string { return string(a.Kind) }
