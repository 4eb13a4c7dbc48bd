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
// it. ln is left open for the tunnel server; connections that arrive from
// then on wait in its backlog. Bad user data is answered with the reason
// and the VM keeps waiting.
func Accept(ctx context.Context, ln net.Listener, boot *userdata.Config, log *slog.Logger) (*userdata.Config, error) {
	if !boot.Warm {
		return nil, errors.New("provision: the VM was not booted warm")
	}
	dl, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return nil, fmt.Errorf("provision: listener %T cannot be interrupted", ln)
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
		return nil, fmt.Errorf("provision: %w", err)
	}

	var (
		mu   sync.Mutex
		done *userdata.Config
		wg   sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() { _ = dl.SetDeadline(time.Now()) })
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			mu.Lock()
			got := done
			mu.Unlock()
			if got != nil {
				return got, dl.SetDeadline(time.Time{})
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("provision: waiting for a sandbox: %w", ctx.Err())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, fmt.Errorf("provision: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := serve(ctx, c, tlsCfg, boot, func(pod *userdata.Config) error {
				mu.Lock()
				defer mu.Unlock()
				if done != nil {
					return errors.New("the VM is already provisioned")
				}
				done = pod
				return nil
			})
			switch {
			case err != nil:
				log.Warn("provisioning refused", "peer", c.RemoteAddr().String(), "err", err)
			case cfg != nil:
				log.Info("provisioned", "sandbox", cfg.SandboxID, "peer", c.RemoteAddr().String())
				_ = dl.SetDeadline(time.Now()) // wake the accept loop
			}
		}()
	}
}

// serverTLS is the warm VM's TLS configuration: a fresh self-signed
// certificate, and client certificates the node CA clientCAPEM signed.
func serverTLS(clientCAPEM string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(clientCAPEM)) {
		return nil, errors.New("tunnel CA: no PEM certificate")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "peerpod-warm-vm"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
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
