package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/hashicorp/yamux"
)

// Kind names what a stream carries; the serving side dispatches on it.
type Kind string

// The stream kinds in use. A kind is 1 to 63 bytes of [a-z0-9._-], starting
// with a letter or digit.
const (
	KindAgent   Kind = "agent"   // a ttrpc connection to the Kata agent API
	KindHealth  Kind = "health"  // liveness probe stream
	KindConsole Kind = "console" // VM console / log stream
	KindConfig  Kind = "config"  // node → VM secrets after attestation (api/userdata.Secrets as JSON)
	KindNet     Kind = "net"     // Ethernet frames of the pod network (a direct stream)
)

// Header is what precedes a stream's payload (see SPEC.md).
type Header struct {
	Kind Kind
	Meta map[string]string
}

// Wire constants of the stream header and the accept status (SPEC.md).
const (
	headerMagic     = 0x70 // 'p'
	headerVersion   = 1
	headerPrefixLen = 4 // magic, version, uint16 body length
	maxKindLen      = 63
	maxMetaKeyLen   = 255
	maxMetaEntries  = 255
)

// Status codes the serving side sends back before a stream's payload.
const (
	statusAccepted      byte = 0x00
	statusUnknownKind   byte = 0x01
	statusMalformed     byte = 0x02
	statusTooLarge      byte = 0x03
	statusHeaderTimeout byte = 0x04
	statusUnavailable   byte = 0x05
)

var statusNames = map[byte]string{
	statusUnknownKind:   "unknown kind",
	statusMalformed:     "malformed header",
	statusTooLarge:      "header too large",
	statusHeaderTimeout: "header timeout",
	statusUnavailable:   "unavailable",
}

// RefusedError is what reading a stream returns when the serving side
// refused it (an unknown kind, a bad header, or no handler any more).
type RefusedError struct {
	Kind   Kind
	Code   byte
	Reason string
}

// Error names the stream's kind and why it was refused.
func (e *RefusedError) Error() string {
	name := statusNames[e.Code]
	if name == "" {
		name = fmt.Sprintf("status %d", e.Code)
	}
	if e.Reason == "" {
		return fmt.Sprintf("tunnel: peer refused %q stream: %s", e.Kind, name)
	}
	return fmt.Sprintf("tunnel: peer refused %q stream: %s: %s", e.Kind, name, e.Reason)
}

// ValidKind reports whether k may name a stream.
func ValidKind(k Kind) error {
	if len(k) == 0 || len(k) > maxKindLen {
		return fmt.Errorf("tunnel: kind %q must be 1 to %d bytes", k, maxKindLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.' || c == '_') && i > 0:
		default:
			return fmt.Errorf("tunnel: kind %q has byte %q at %d; want [a-z0-9._-]", k, c, i)
		}
	}
	return nil
}

// headerError is a header that cannot be accepted, with the status that says so.
type headerError struct {
	code byte
	msg  string
}

func (e *headerError) Error() string { return "tunnel: " + e.msg }

func malformed(format string, args ...any) error {
	return &headerError{code: statusMalformed, msg: fmt.Sprintf(format, args...)}
}

// encodeHeader returns h on the wire, or an error naming what does not fit
// in maxSize bytes or is not allowed.
func encodeHeader(h Header, maxSize int) ([]byte, error) {
	if err := ValidKind(h.Kind); err != nil {
		return nil, err
	}
	if len(h.Meta) > maxMetaEntries {
		return nil, fmt.Errorf("tunnel: %d metadata entries, at most %d", len(h.Meta), maxMetaEntries)
	}
	keys := make([]string, 0, len(h.Meta))
	size := headerPrefixLen + 1 + len(h.Kind) + 1
	for k, v := range h.Meta {
		if err := validMetaKey(k); err != nil {
			return nil, err
		}
		if !utf8.ValidString(v) || len(v) > 0xFFFF {
			return nil, fmt.Errorf("tunnel: metadata %q: value must be UTF-8 of at most 65535 bytes", k)
		}
		keys = append(keys, k)
		size += 1 + len(k) + 2 + len(v)
	}
	if size > maxSize {
		return nil, fmt.Errorf("tunnel: %q stream header is %d bytes, more than the %d allowed", h.Kind, size, maxSize)
	}
	slices.Sort(keys) // deterministic bytes for the same header
	b := make([]byte, 0, size)
	b = append(b, headerMagic, headerVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(size-headerPrefixLen))
	b = append(b, byte(len(h.Kind)))
	b = append(b, h.Kind...)
	b = append(b, byte(len(keys)))
	for _, k := range keys {
		v := h.Meta[k]
		b = append(b, byte(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

func validMetaKey(k string) error {
	if len(k) == 0 || len(k) > maxMetaKeyLen || !utf8.ValidString(k) {
		return fmt.Errorf("tunnel: metadata key %q must be UTF-8 of 1 to %d bytes", k, maxMetaKeyLen)
	}
	return nil
}

// readHeader reads exactly one header from r and nothing more. Errors are
// *headerError when the bytes are wrong, or the read error otherwise.
func readHeader(r io.Reader, maxSize int) (Header, error) {
	var p [headerPrefixLen]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return Header{}, err
	}
	if p[0] != headerMagic {
		return Header{}, malformed("bad header magic 0x%02x", p[0])
	}
	if p[1] != headerVersion {
		return Header{}, malformed("unsupported header version %d", p[1])
	}
	n := int(binary.BigEndian.Uint16(p[2:]))
	if headerPrefixLen+n > maxSize {
		return Header{}, &headerError{code: statusTooLarge,
			msg: fmt.Sprintf("header of %d bytes exceeds the %d allowed", headerPrefixLen+n, maxSize)}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, err
	}
	return parseHeaderBody(body)
}

func parseHeaderBody(b []byte) (Header, error) {
	var h Header
	take := func(n int, what string) ([]byte, error) {
		if len(b) < n {
			return nil, malformed("header ends inside %s", what)
		}
		v := b[:n]
		b = b[n:]
		return v, nil
	}
	l, err := take(1, "kind length")
	if err != nil {
		return h, err
	}
	kind, err := take(int(l[0]), "kind")
	if err != nil {
		return h, err
	}
	h.Kind = Kind(kind)
	if err := ValidKind(h.Kind); err != nil {
		return h, malformed("%v", err)
	}
	c, err := take(1, "metadata count")
	if err != nil {
		return h, err
	}
	if c[0] > 0 {
		h.Meta = make(map[string]string, c[0])
	}
	for i := 0; i < int(c[0]); i++ {
		kl, err := take(1, "metadata key length")
		if err != nil {
			return h, err
		}
		k, err := take(int(kl[0]), "metadata key")
		if err != nil {
			return h, err
		}
		if err := validMetaKey(string(k)); err != nil {
			return h, malformed("%v", err)
		}
		vl, err := take(2, "metadata value length")
		if err != nil {
			return h, err
		}
		v, err := take(int(binary.BigEndian.Uint16(vl)), "metadata value")
		if err != nil {
			return h, err
		}
		if !utf8.Valid(v) {
			return h, malformed("metadata %q: value is not UTF-8", k)
		}
		if _, dup := h.Meta[string(k)]; dup {
			return h, malformed("metadata key %q repeated", k)
		}
		h.Meta[string(k)] = string(v)
	}
	if len(b) != 0 {
		return h, malformed("%d bytes after the last metadata entry", len(b))
	}
	return h, nil
}

// refusal returns the status bytes that refuse a stream.
func refusal(code byte, reason string) []byte {
	if len(reason) > 255 {
		reason = reason[:255]
	}
	b := make([]byte, 0, 2+len(reason))
	b = append(b, code, byte(len(reason)))
	return append(b, reason...)
}

// stream is a yamux stream whose own end is told apart from the end of its
// session: yamux reports both as io.EOF.
type stream struct {
	*yamux.Stream
	sess  *Session
	entry *streamEntry
}

func (s stream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	if err != nil {
		err = s.sess.streamErr(s.entry, err)
	}
	return n, err
}

func (s stream) Write(b []byte) (int, error) {
	n, err := s.Stream.Write(b)
	if err != nil {
		err = s.sess.streamErr(s.entry, err)
	}
	return n, err
}

func (s stream) Close() error {
	err := s.Stream.Close()
	s.sess.streams.closed(s.StreamID(), s.entry)
	return err
}

// clientConn is a stream on the opening side. Its first Read consumes the
// serving side's status and turns a refusal into a *RefusedError.
type clientConn struct {
	stream
	status statusGate
}

func (c *clientConn) Read(b []byte) (int, error) {
	// A yamux read error other than the end is a deadline or a reset: not
	// remembered, the caller may retry a timeout.
	return c.status.read(c.stream, c.stream, b, func(error) bool { return false })
}

// statusGate reads, before the first byte of a stream on the opening side,
// the serving side's status (see SPEC.md). A refusal, or an end before the
// status, is remembered and returned by every later Read.
type statusGate struct {
	kind     Kind
	mu       sync.Mutex
	accepted bool
	err      error
}

// read reads into b from r once the status has been read from r; a
// refusal closes c. keep says whether a read error other than the end is
// remembered (else the caller may retry the read).
func (g *statusGate) read(r io.Reader, c io.Closer, b []byte, keep func(error) bool) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	if !g.accepted {
		if err := g.readStatus(r, c, keep); err != nil {
			return 0, err
		}
	}
	return r.Read(b)
}

func (g *statusGate) readStatus(r io.Reader, c io.Closer, keep func(error) bool) error {
	var s [2]byte
	if _, err := io.ReadFull(r, s[:1]); err != nil {
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			g.err = fmt.Errorf("tunnel: %q stream ended before the peer accepted it: %w", g.kind, io.ErrUnexpectedEOF)
		case keep(err):
			g.err = fmt.Errorf("tunnel: %q stream: %w", g.kind, err)
		default:
			return err
		}
		return g.err
	}
	if s[0] == statusAccepted {
		g.accepted = true
		return nil
	}
	refused := &RefusedError{Kind: g.kind, Code: s[0]}
	if _, err := io.ReadFull(r, s[1:]); err == nil {
		reason := make([]byte, s[1])
		if _, err := io.ReadFull(r, reason); err == nil {
			refused.Reason = string(reason)
		}
	}
	g.err = refused
	_ = c.Close()
	return g.err
}

// CloseWrite closes the sending side; reads go on until the peer closes.
// A yamux Close is already such a half-close, so it is the same as Close.
func (c *clientConn) CloseWrite() error { return c.Close() }

// serverConn is a stream on the serving side. The accept status goes out
// with its first write, or alone when it is closed without writing.
type serverConn struct {
	stream
	header Header

	writeMu    sync.Mutex
	statusSent bool
}

func (c *serverConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if !c.statusSent {
		buf := make([]byte, 1+len(b))
		buf[0] = statusAccepted
		copy(buf[1:], b)
		n, err := c.stream.Write(buf)
		if n > 0 {
			c.statusSent = true
			n--
		}
		return n, err
	}
	return c.stream.Write(b)
}

func (c *serverConn) Close() error {
	c.writeMu.Lock()
	if !c.statusSent {
		c.statusSent = true
		_, _ = c.stream.Write([]byte{statusAccepted})
	}
	c.writeMu.Unlock()
	return c.stream.Close()
}

// CloseWrite closes the sending side; reads go on until the peer closes.
func (c *serverConn) CloseWrite() error { return c.Close() }

// Header returns the header the stream arrived with.
func (c *serverConn) Header() Header { return c.header }

var (
	_ net.Conn = (*clientConn)(nil)
	_ net.Conn = (*serverConn)(nil)
)
