// Package tlsca is the node's tunnel CA: it signs peerpodd's TLS client
// certificates, and its certificate goes into every pod VM's user data so the
// agent accepts only this node. The CA persists in STATE_DIR so VMs started
// before a restart still accept the restarted daemon.
package tlsca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// File names inside the CA directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// Validity periods.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ClientValidity = 30 * 24 * time.Hour
)

// CA issues client certificates, or hands out a fixed one (manual mode).
type CA struct {
	certPEM []byte
	cert    *x509.Certificate
	key     crypto.Signer // nil in manual mode
	name    string

	mu     sync.Mutex
	client *tls.Certificate // fixed in manual mode, cached otherwise
}

// LoadOrCreate loads the CA from dir, or makes a new ECDSA P-256 CA there
// (key file mode 0600, written atomically) when dir holds none. name is the
// subject common name used for a new CA and for client certificates.
func LoadOrCreate(dir, name string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		return parse(certPEM, keyPEM, name)
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, fmt.Errorf("node CA: %w", cerr)
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, fmt.Errorf("node CA: %w", kerr)
	default:
		return nil, fmt.Errorf("node CA: %s holds only one of %s and %s", dir, CertFile, KeyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node CA: key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " tunnel CA", Organization: []string{"peerpod"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("node CA: certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("node CA: key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	// Key first: a crash between the two writes leaves only the key, which
	// the next start reports rather than silently replacing.
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("node CA: %w", err)
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("node CA: %w", err)
	}
	return parse(certPEM, keyPEM, name)
}

// FromFiles is manual mode (CACERT_FILE, CERT_FILE, CERT_KEY): a client
// certificate and key made elsewhere, and the CA certificate that signed it,
// which is what the pod VMs will trust. The client certificate must verify
// against the CA.
func FromFiles(caCertFile, certFile, keyFile string) (*CA, error) {
	caPEM, err := os.ReadFile(caCertFile)
	if err != nil {
		return nil, fmt.Errorf("CACERT_FILE: %w", err)
	}
	caCert, err := parseCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CACERT_FILE %s: %w", caCertFile, err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("CERT_FILE/CERT_KEY: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("CERT_FILE %s: %w", certFile, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("CERT_FILE %s is not a client certificate of CACERT_FILE %s: %w", certFile, caCertFile, err)
	}
	pair.Leaf = leaf
	return &CA{certPEM: caPEM, cert: caCert, client: &pair}, nil
}

func parse(certPEM, keyPEM []byte, name string) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("node CA: %w", err)
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return nil, errors.New("node CA: key file holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("node CA: key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("node CA: key cannot sign")
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		return nil, errors.New("node CA: key does not match certificate")
	}
	return &CA{certPEM: certPEM, cert: cert, key: signer, name: name}, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// CertPEM is the CA certificate in PEM, for userdata.Config.TunnelCA.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Certificate is the parsed CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// ClientCertificate returns a client certificate signed by the CA, issuing
// a fresh one when none is cached or the cached one has less than a third
// of its validity left. In manual mode it returns the configured one.
func (c *CA) ClientCertificate() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key == nil {
		return c.client, nil
	}
	now := time.Now()
	if c.client != nil && c.client.Leaf.NotAfter.Sub(now) > ClientValidity/3 {
		return c.client, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: c.name, Organization: []string{"peerpod"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ClientValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	c.client = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return c.client, nil
}

// ClientTLS is the node's tls.Config for dialling pod VMs: TLS 1.3, our
// client certificate, and InsecureSkipVerify because the VM's certificate is
// self-signed inside the VM and is checked by the attestation verifier
// (tunnel.Config.Verifier), which the tunnel requires in that case.
func (c *CA) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the peer is verified by attestation evidence (tunnel.Config.Verifier)
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.ClientCertificate()
		},
	}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return n
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
