// Package provision hands a warm pod VM its sandbox. A VM booted ahead of
// any pod (user data with Warm set) listens on its tunnel port for one
// provisioning connection: TLS 1.3 with ALPN peerpod-provision/1 and a
// client certificate the node's tunnel CA signed. The node sends the
// sandbox's user data; the agent checks that it completes the user data it
// booted with, answers, and only then makes its attested certificate and
// serves the tunnel on the same port.
//
// Nothing secret crosses this connection (user data never holds secrets),
// and the node does not check the VM's certificate here: the attested
// tunnel that follows binds the sandbox's initdata into the VM's evidence,
// so a VM that took other user data fails attestation there.
package provision

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
)

// ALPN is the application protocol of a provisioning connection.
const ALPN = "peerpod-provision/1"

// MaxUserDataSize bounds the encoded user data a node may send.
const MaxUserDataSize = 1 << 20

// connTimeout bounds one provisioning connection, handshake included.
const connTimeout = 30 * time.Second

// Accept serves provisioning connections on ln until one delivers user
// data that completes boot (see userdata.Config.Provisioned) and returns
// it with the listener to serve the tunnel on: ln, handing on first a
// connection it accepted after its answer (the node dials the tunnel only
// once it heard "ok", so such a connection is the tunnel's and is never
// served as provisioning). Bad user data is answered with the reason and
// the VM keeps waiting.
func Accept(ctx context.Context, ln net.Listener, boot *userdata.Config, log *slog.Logger) (*userdata.Config, net.Listener, error) {
	if !boot.Warm {
		return nil, nil, errors.New("provision: the VM was not booted warm")
	}
	dl, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return nil, nil, fmt.Errorf("provision: listener %T cannot be interrupted", ln)
	}
	if log == nil {
		log = slog.Default()
	}
	// A plain certificate: the node does not check it (see the package
	// comment), and evidence made now could bind nothing of the sandbox —
	// some attesters (the vTPM's PCR) bind initdata once per boot. Making
	// it runs the key and certificate code the attested one needs later.
	tlsCfg, err := serverTLS(boot.TunnelCA)
	if err != nil {
		return nil, nil, fmt.Errorf("provision: %w", err)
	}

	var (
		mu   sync.Mutex
		done *userdata.Config
	)
	claimed := func() *userdata.Config {
		mu.Lock()
		defer mu.Unlock()
		return done
	}
	stop := context.AfterFunc(ctx, func() { _ = dl.SetDeadline(time.Now()) })
	defer stop()
	for {
		c, err := ln.Accept()
		if got := claimed(); got != nil {
			// The node dials the tunnel only after it heard "ok", so a
			// connection accepted now is the tunnel's.
			if err := dl.SetDeadline(time.Time{}); err != nil {
				return nil, nil, fmt.Errorf("provision: listener: %w", err)
			}
			if c != nil {
				return got, &handOn{Listener: ln, first: c}, nil
			}
			return got, ln, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("provision: waiting for a sandbox: %w", ctx.Err())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, nil, fmt.Errorf("provision: accept: %w", err)
		}
		go func() {
			cfg, err := serve(ctx, c, tlsCfg, boot, func(pod *userdata.Config) error {
				mu.Lock()
				defer mu.Unlock()
				if done != nil {
					return errors.New("the VM is already provisioned")
				}
				done = pod
				_ = dl.SetDeadline(time.Now()) // wake the accept loop
				return nil
			})
			switch {
			case err != nil:
				log.Warn("provisioning refused", "peer", c.RemoteAddr().String(), "err", err)
			case cfg != nil:
				log.Info("provisioned", "sandbox", cfg.SandboxID, "peer", c.RemoteAddr().String())
			}
		}()
	}
}

// handOn is a listener whose first Accept returns a connection already
// accepted.
type handOn struct {
	net.Listener
	mu    sync.Mutex
	first net.Conn
}

// Accept returns the connection handed on first, then ln's.
func (h *handOn) Accept() (net.Conn, error) {
	h.mu.Lock()
	c := h.first
	h.first = nil
	h.mu.Unlock()
	if c != nil {
		return c, nil
	}
	return h.Listener.Accept()
}

// Close closes the listener and a connection not yet handed on.
func (h *handOn) Close() error {
	h.mu.Lock()
	c := h.first
	h.first = nil
	h.mu.Unlock()
	if c != nil {
		c.Close()
	}
	return h.Listener.Close()
}

// WarmUp runs one TLS 1.3 handshake and a few records between two
// in-process ends, with fresh certificates on both. Under emulation
// (QEMU TCG) the first run of any code also pays for its translation; a
// warm VM calls WarmUp while no pod waits, so that its provisioning and
// tunnel handshakes later run already translated code. Natively it takes
// a few milliseconds.
func WarmUp(ctx context.Context) error {
	server, err := selfSigned("peerpod-warm-up-server")
	if err != nil {
		return err
	}
	client, err := selfSigned("peerpod-warm-up-client")
	if err != nil {
		return err
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = a.SetDeadline(d)
		_ = b.SetDeadline(d)
	}
	srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAnyClientCert,
		MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}})
	cli := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{client}, InsecureSkipVerify: true,
		MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}})
	errc := make(chan error, 1)
	go func() {
		if err := srv.HandshakeContext(ctx); err != nil {
			errc <- err
			return
		}
		buf := make([]byte, 64<<10)
		_, err := io.ReadFull(srv, buf)
		if err == nil {
			_, err = srv.Write(buf[:1024])
		}
		errc <- err
	}()
	if err := cli.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("provision: warm-up handshake: %w", err)
	}
	if _, err := cli.Write(make([]byte, 64<<10)); err != nil {
		return fmt.Errorf("provision: warm-up write: %w", err)
	}
	if _, err := io.ReadFull(cli, make([]byte, 1024)); err != nil {
		return fmt.Errorf("provision: warm-up read: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("provision: warm-up server: %w", err)
	}
	// The node's client certificate is checked against a CA pool.
	pool := x509.NewCertPool()
	pool.AddCert(client.Leaf)
	if _, err := client.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("provision: warm-up verify: %w", err)
	}
	return nil
}

// selfSigned makes a fresh P-256 key and a self-signed certificate for it.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serverTLS is the warm VM's TLS configuration: a fresh self-signed
// certificate, and client certificates the node CA clientCAPEM signed.
func serverTLS(clientCAPEM string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(clientCAPEM)) {
		return nil, errors.New("tunnel CA: no PEM certificate")
	}
	cert, err := selfSigned("peerpod-warm-vm")
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN},
	}, nil
}

// serve runs one provisioning connection. It returns the accepted
// configuration, nil and no error for a connection that sent nothing (a
// reachability probe), or why it refused what was sent.
func serve(ctx context.Context, raw net.Conn, tlsCfg *tls.Config, boot *userdata.Config, claim func(*userdata.Config) error) (*userdata.Config, error) {
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(connTimeout))
	c := tls.Server(raw, tlsCfg)
	if err := c.HandshakeContext(ctx); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != ALPN {
		return nil, fmt.Errorf("peer speaks %q, not %s", p, ALPN)
	}
	b, err := readFrame(c)
	if err != nil {
		return nil, err
	}
	pod, err := userdata.Decode(b)
	if err == nil {
		err = boot.Provisioned(pod)
	}
	if err == nil {
		err = claim(pod)
	}
	reply := "ok\n"
	if err != nil {
		reply = "error: " + err.Error() + "\n"
	}
	if _, werr := io.WriteString(c, reply); werr != nil && err == nil {
		// The node will not know; it deletes a VM it could not provision.
		return pod, nil
	}
	_ = c.Close()
	if err != nil {
		return nil, err
	}
	return pod, nil
}

func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("read user data length: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size == 0 || size > MaxUserDataSize {
		return nil, fmt.Errorf("user data of %d bytes (1 to %d allowed)", size, MaxUserDataSize)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read user data: %w", err)
	}
	return b, nil
}

// RefusedError is a warm VM's refusal of the user data it was sent.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "warm VM refused the user data: " + e.Reason }

// Send delivers encoded user data (userdata.Encode) to the warm VM whose
// tunnel port is addr, as the client clientTLS describes (the node's
// client certificate), and waits for its answer. A refusal is a
// *RefusedError; other errors are the connection's.
func Send(ctx context.Context, addr string, clientTLS *tls.Config, ud []byte) error {
	if len(ud) == 0 || len(ud) > MaxUserDataSize {
		return fmt.Errorf("provision %s: user data of %d bytes (1 to %d allowed)", addr, len(ud), MaxUserDataSize)
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("provision %s: %w", addr, err)
	}
	defer raw.Close()
	deadline := time.Now().Add(connTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = raw.SetDeadline(deadline)
	t := clientTLS.Clone()
	t.MinVersion, t.MaxVersion = tls.VersionTLS13, 0
	t.NextProtos = []string{ALPN}
	// The VM's certificate is not checked here; see the package comment.
	t.InsecureSkipVerify = true
	c := tls.Client(raw, t)
	if err := c.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("provision %s: TLS handshake: %w", addr, err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != ALPN {
		return fmt.Errorf("provision %s: the VM speaks %q, not %s (not warm?)", addr, p, ALPN)
	}
	frame := make([]byte, 4, 4+len(ud))
	binary.BigEndian.PutUint32(frame, uint32(len(ud)))
	if _, err := c.Write(append(frame, ud...)); err != nil {
		return fmt.Errorf("provision %s: send user data: %w", addr, err)
	}
	reply, err := io.ReadAll(io.LimitReader(c, 4096))
	if err != nil && len(reply) == 0 {
		return fmt.Errorf("provision %s: waiting for the answer: %w", addr, err)
	}
	line := strings.TrimSpace(string(reply))
	switch {
	case line == "ok":
		return nil
	case strings.HasPrefix(line, "error: "):
		return &RefusedError{Reason: strings.TrimPrefix(line, "error: ")}
	default:
		return fmt.Errorf("provision %s: unexpected answer %q", addr, line)
	}
}
