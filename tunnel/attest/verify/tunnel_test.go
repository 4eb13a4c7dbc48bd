package verify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
	"github.com/peerpod/peerpod/tunnel/attest/verify"
)

// nodeIdentity makes a node CA (returned as PEM) and a client certificate it signed.
func nodeIdentity(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test node CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "peerpodd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	return string(caPEM), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestFakeThroughTunnel serves a real tunnel with the fake attested
// certificate and dials it with the fake verifier: the expected initdata
// opens a session and an echo stream works; other initdata is refused
// before any stream opens.
func TestFakeThroughTunnel(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	digest := sha256.Sum256([]byte("initdata"))
	a, err := attest.NewAttester(attest.KindFake)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, clientCert := nodeIdentity(t)
	if _, err := attest.ServerTLS(ctx, a, digest[:], "not a certificate"); err == nil {
		t.Fatal("ServerTLS accepted a tunnel CA without a PEM certificate")
	}
	serverTLS, err := attest.ServerTLS(ctx, a, digest[:], caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if serverTLS.ClientAuth != tls.RequireAndVerifyClientCert || serverTLS.MinVersion != tls.VersionTLS13 {
		t.Fatalf("ServerTLS: client auth %v, min version %x", serverTLS.ClientAuth, serverTLS.MinVersion)
	}
	srv, err := tunnel.NewServer(tunnel.Config{TLS: serverTLS, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(tunnel.KindHealth, func(_ context.Context, c net.Conn, _ tunnel.Header) { _, _ = io.Copy(c, c) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(sctx, ln) }()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })

	dial := func(want []byte) (*tunnel.Session, error) {
		v, err := verify.NewVerifier(attest.KindFake, verify.Expectations{InitdataDigest: want})
		if err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		return tunnel.Dial(dctx, ln.Addr().String(), tunnel.Config{
			TLS:      &tls.Config{Certificates: []tls.Certificate{clientCert}, InsecureSkipVerify: true},
			Verifier: v,
			Logger:   log,
		})
	}

	s, err := dial(digest[:])
	if err != nil {
		t.Fatalf("dial with expected initdata: %v", err)
	}
	defer s.Close()
	c, err := s.Open(ctx, tunnel.KindHealth, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	c.Close()
	ev, err := attest.EvidenceOf(s.ConnectionState().PeerCertificates[0])
	if err != nil || ev.Kind != attest.KindFake {
		t.Fatalf("EvidenceOf(peer) = %v, %v", ev, err)
	}

	other := sha256.Sum256([]byte("other initdata"))
	if s2, err := dial(other[:]); err == nil {
		s2.Close()
		t.Fatal("dial with other initdata succeeded")
	} else if !errors.Is(err, attest.ErrAttestation) {
		t.Fatalf("dial with other initdata: %v, want ErrAttestation", err)
	}
}
