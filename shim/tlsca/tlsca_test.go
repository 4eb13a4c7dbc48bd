package tlsca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreatePersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := LoadOrCreate(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v", st.Mode(), err)
	}
	b, err := LoadOrCreate(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(a.CertPEM()) != string(b.CertPEM()) {
		t.Fatal("reload made a different CA")
	}
	// A client certificate from the reloaded CA verifies against the first one.
	cc, err := b.ClientCertificate()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.CertPEM())
	if _, err := cc.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if cc2, _ := b.ClientCertificate(); cc2 != cc {
		t.Fatal("client certificate not cached")
	}
}

func TestLoadOrCreateBroken(t *testing.T) {
	cases := map[string]map[string]string{
		"only key":  {KeyFile: "x"},
		"bad cert":  {CertFile: "junk", KeyFile: "junk"},
		"only cert": {CertFile: "x"},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, c := range files {
				os.WriteFile(filepath.Join(dir, f), []byte(c), 0o600)
			}
			if _, err := LoadOrCreate(dir, "n"); err == nil || !strings.Contains(err.Error(), "node CA") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestKeyMismatch(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	if _, err := LoadOrCreate(d1, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(d2, "b"); err != nil {
		t.Fatal(err)
	}
	k2, _ := os.ReadFile(filepath.Join(d2, KeyFile))
	os.WriteFile(filepath.Join(d1, KeyFile), k2, 0o600)
	if _, err := LoadOrCreate(d1, "a"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v", err)
	}
}

// A TLS 1.3 server that requires client certs from the CA accepts ClientTLS.
func TestClientTLSHandshake(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir(), "node")
	if err != nil {
		t.Fatal(err)
	}
	srvCA, err := LoadOrCreate(t.TempDir(), "server")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, _ := srvCA.ClientCertificate() // any cert will do for the server side here
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*srvCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- c.(*tls.Conn).HandshakeContext(context.Background())
	}()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: ca.ClientTLS()}
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if v := c.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %x", v)
	}
}

func TestFromFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(filepath.Join(dir, "ca"), "node")
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := ca.ClientCertificate()
	kder, _ := x509.MarshalPKCS8PrivateKey(cc.PrivateKey)
	certF, keyF := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	os.WriteFile(certF, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cc.Certificate[0]}), 0o600)
	os.WriteFile(keyF, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	caF := filepath.Join(dir, "ca", CertFile)
	m, err := FromFiles(caF, certF, keyF)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := m.ClientCertificate()
	if string(got.Certificate[0]) != string(cc.Certificate[0]) {
		t.Fatal("manual mode returned another certificate")
	}
	other, _ := LoadOrCreate(filepath.Join(dir, "other"), "x")
	_ = other
	if _, err := FromFiles(filepath.Join(dir, "other", CertFile), certF, keyF); err == nil || !strings.Contains(err.Error(), "not a client certificate of CACERT_FILE") {
		t.Fatalf("wrong CA accepted: %v", err)
	}
	if _, err := FromFiles(filepath.Join(dir, "nope"), certF, keyF); err == nil || !strings.Contains(err.Error(), "CACERT_FILE") {
		t.Fatalf("err = %v", err)
	}
}
