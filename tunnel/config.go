// Package tunnel carries streams between a node and a pod VM over one TCP
// connection: TLS 1.3 with mutual authentication, yamux on top, and a small
// header at the start of every stream naming its kind (see SPEC.md). A
// stream may also have a TLS connection of its own (DialStream).
package tunnel

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by a zero Config field.
const (
	DefaultStreamWindow           = 16 << 20 // 16 MiB: a 256 KiB window halves throughput
	DefaultAcceptBacklog          = 256
	DefaultKeepAliveInterval      = 10 * time.Second
	DefaultConnectionWriteTimeout = 10 * time.Second
	DefaultStreamOpenTimeout      = 10 * time.Second
	DefaultStreamCloseTimeout     = 5 * time.Minute
	DefaultHeaderTimeout          = 5 * time.Second
	DefaultMaxHeaderSize          = 4096
	DefaultHandshakeTimeout       = 10 * time.Second

	// minStreamWindow is yamux's initial window; a smaller maximum is invalid.
	minStreamWindow = 256 << 10
	// minMaxHeaderSize leaves room for the prefix and a kind of any valid length.
	minMaxHeaderSize = 128
	// maxMaxHeaderSize is the largest header the 16-bit length field can describe.
	maxMaxHeaderSize = headerPrefixLen + 0xFFFF
)

// alpnProto is the TLS application protocol of a yamux session.
const alpnProto = "peerpod-tunnel/1"

// alpnDirect is the TLS application protocol of a connection that carries
// one stream directly, without yamux (see DialStream).
const alpnDirect = "peerpod-stream/1"

// Config configures both ends of a tunnel. Every zero field takes the default
// documented beside it; Validate says which field is wrong.
type Config struct {
	// TLS is required. Certificates, RootCAs and ClientCAs come from the
	// caller; nothing is generated here. MinVersion is forced to TLS 1.3.
	// The dialing side must present a certificate; the serving side requires
	// and verifies one (ClientAuth is raised to RequireAndVerifyClientCert
	// unless it is RequireAnyClientCert and a Verifier checks the peer) and
	// refuses GetConfigForClient, whose configs would escape these rules.
	TLS *tls.Config
	// Verifier is an optional extra check of the peer once the handshake is
	// done (attestation). It is required when TLS.InsecureSkipVerify is set.
	Verifier Verifier
	// StreamWindow is the largest yamux receive window of a stream.
	// Default 16 MiB; at least 256 KiB.
	StreamWindow uint32
	// AcceptBacklog bounds the streams waiting to be accepted, and the opens
	// waiting for an acknowledgement. Default 256.
	AcceptBacklog int
	// KeepAliveInterval is how often a ping checks the peer. Default 10s.
	KeepAliveInterval time.Duration
	// ConnectionWriteTimeout bounds one write to the connection; a session
	// whose connection does not take a write in this time is closed.
	// It also bounds a keepalive ping. Default 10s.
	ConnectionWriteTimeout time.Duration
	// StreamOpenTimeout bounds the wait for the peer to acknowledge a new
	// stream; a session whose peer does not is closed. Default 10s.
	StreamOpenTimeout time.Duration
	// StreamCloseTimeout bounds how long a stream closed on this side waits
	// for the peer to close too before it is reset. Default 5m.
	StreamCloseTimeout time.Duration
	// HeaderTimeout is how long the serving side waits for a stream's
	// header; a stream whose header is not in by then is refused. Default 5s.
	HeaderTimeout time.Duration
	// MaxHeaderSize bounds a stream header in bytes, prefix included.
	// Default 4096; between 128 and 65539.
	MaxHeaderSize int
	// HandshakeTimeout bounds the TCP connect, the TLS handshake and the
	// Verifier together. Default 10s.
	HandshakeTimeout time.Duration
	// Logger receives the tunnel's and yamux's messages. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first field of c that is wrong, by name.
func (c *Config) Validate() error {
	if c == nil {
		return fmt.Errorf("tunnel: nil Config")
	}
	if c.TLS == nil {
		return fmt.Errorf("tunnel: Config.TLS is required")
	}
	if c.TLS.MaxVersion != 0 && c.TLS.MaxVersion < tls.VersionTLS13 {
		return fmt.Errorf("tunnel: Config.TLS.MaxVersion is %s; the tunnel needs TLS 1.3", tls.VersionName(c.TLS.MaxVersion))
	}
	if c.TLS.InsecureSkipVerify && c.Verifier == nil {
		return fmt.Errorf("tunnel: Config.TLS.InsecureSkipVerify is set without a Config.Verifier to check the peer")
	}
	if c.StreamWindow != 0 && c.StreamWindow < minStreamWindow {
		return fmt.Errorf("tunnel: Config.StreamWindow %d is below the minimum %d", c.StreamWindow, minStreamWindow)
	}
	if c.AcceptBacklog < 0 {
		return fmt.Errorf("tunnel: Config.AcceptBacklog %d is negative", c.AcceptBacklog)
	}
	if c.MaxHeaderSize != 0 && (c.MaxHeaderSize < minMaxHeaderSize || c.MaxHeaderSize > maxMaxHeaderSize) {
		return fmt.Errorf("tunnel: Config.MaxHeaderSize %d is outside [%d, %d]", c.MaxHeaderSize, minMaxHeaderSize, maxMaxHeaderSize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"KeepAliveInterval", c.KeepAliveInterval},
		{"ConnectionWriteTimeout", c.ConnectionWriteTimeout},
		{"StreamOpenTimeout", c.StreamOpenTimeout},
		{"StreamCloseTimeout", c.StreamCloseTimeout},
		{"HeaderTimeout", c.HeaderTimeout},
		{"HandshakeTimeout", c.HandshakeTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("tunnel: Config.%s %v is negative", d.name, d.v)
		}
	}
	return nil
}

// withDefaults returns a validated copy of c with every zero field set to its
// default and its TLS configuration cloned and pinned to TLS 1.3.
func (c Config) withDefaults() (Config, error) {
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.AcceptBacklog == 0 {
		c.AcceptBacklog = DefaultAcceptBacklog
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDur(&c.KeepAliveInterval, DefaultKeepAliveInterval)
	setDur(&c.ConnectionWriteTimeout, DefaultConnectionWriteTimeout)
	setDur(&c.StreamOpenTimeout, DefaultStreamOpenTimeout)
	setDur(&c.StreamCloseTimeout, DefaultStreamCloseTimeout)
	setDur(&c.HeaderTimeout, DefaultHeaderTimeout)
	setDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	if c.MaxHeaderSize == 0 {
		c.MaxHeaderSize = DefaultMaxHeaderSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	t := c.TLS.Clone()
	t.MinVersion = tls.VersionTLS13
	t.MaxVersion = 0
	t.NextProtos = []string{alpnProto}
	// Full-size records from the first byte: the tunnel is a bulk pipe, and
	// small records only add per-record cost.
	t.DynamicRecordSizingDisabled = true
	c.TLS = t
	return c, nil
}

// Verifier checks a peer once its TLS handshake is done. The node uses it to
// verify attestation evidence in the VM's certificate before any stream opens.
type Verifier interface {
	VerifyPeer(ctx context.Context, state tls.ConnectionState) error
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, state tls.ConnectionState) error

// VerifyPeer calls f.
func (f VerifierFunc) VerifyPeer(ctx context.Context, state tls.ConnectionState) error {
	return f(ctx, state)
}
