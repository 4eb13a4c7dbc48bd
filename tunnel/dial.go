package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Dial connects to the tunnel server at addr (host:port), completes the TLS
// 1.3 handshake presenting the caller's certificate, runs cfg.Verifier on
// the result, and returns the session. The node dials; the VM serves.
func Dial(ctx context.Context, addr string, cfg Config) (*Session, error) {
	cfg, err := dialConfig(addr, cfg)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	conn, err := dialTLS(hctx, addr, cfg, alpnProto)
	if err != nil {
		return nil, err
	}
	s, err := newSession(conn, cfg, true)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	// In TLS 1.3 the server checks our certificate after our side of the
	// handshake is done; one ping round trip shows whether it kept us.
	stop := context.AfterFunc(hctx, func() { _ = s.mux.Close() })
	_, err = s.mux.Ping()
	stop()
	if err != nil {
		_ = s.Close()
		if cerr := hctx.Err(); cerr != nil {
			return nil, fmt.Errorf("tunnel: session with %s: %w", addr, cerr)
		}
		return nil, fmt.Errorf("tunnel: %s did not accept the session (our certificate refused?): %w", addr, s.explain(err))
	}
	s.log.Debug("tunnel session open")
	return s, nil
}

// dialTLS connects to addr, completes the TLS 1.3 handshake announcing
// only the application protocol proto, and runs cfg.Verifier; cfg has its
// defaults and ctx bounds it all.
func dialTLS(ctx context.Context, addr string, cfg Config, proto string) (*tls.Conn, error) {
	var d net.Dialer
	if proto == alpnDirect {
		// No session pings watch a direct stream: TCP keepalive finds a
		// peer that is gone.
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: cfg.KeepAliveInterval,
			Interval: cfg.KeepAliveInterval, Count: 3}
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: %w", addr, err)
	}
	t := cfg.TLS.Clone()
	t.NextProtos = []string{proto}
	conn := tls.Client(&batchConn{Conn: raw}, t)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("tunnel: TLS handshake with %s: %w", addr, err)
	}
	if err := verifyPeer(ctx, cfg.Verifier, conn, proto); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tunnel: peer %s refused: %w", addr, err)
	}
	return conn, nil
}

// dialConfig returns cfg with defaults for dialing addr, or why it cannot
// be used: errors that no retry would cure.
func dialConfig(addr string, cfg Config) (Config, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Config{}, err
	}
	t := cfg.TLS
	if len(t.Certificates) == 0 && t.GetClientCertificate == nil {
		return Config{}, fmt.Errorf("tunnel: Config.TLS has no client certificate; the tunnel needs mutual authentication")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return Config{}, fmt.Errorf("tunnel: dial %q: %w", addr, err)
	}
	if t.ServerName == "" && !t.InsecureSkipVerify {
		t.ServerName = host
	}
	return cfg, nil
}

// verifyPeer checks the negotiated protocol (one of protos) and runs v, if
// any.
func verifyPeer(ctx context.Context, v Verifier, conn *tls.Conn, protos ...string) error {
	st := conn.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		return fmt.Errorf("negotiated %s, not TLS 1.3", tls.VersionName(st.Version))
	}
	if !slices.Contains(protos, st.NegotiatedProtocol) {
		return fmt.Errorf("peer does not speak %s (ALPN %q)", strings.Join(protos, " or "), st.NegotiatedProtocol)
	}
	if len(st.PeerCertificates) == 0 {
		return errors.New("peer presented no certificate")
	}
	if v == nil {
		return nil
	}
	if err := v.VerifyPeer(ctx, st); err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	return nil
}
