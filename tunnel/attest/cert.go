package attest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// certValidity is how long a VM certificate is valid. The key lives as long
// as the agent process; the node checks evidence, not the validity period.
const certValidity = 10 * 365 * 24 * time.Hour

// EvidenceFunc produces the kind-specific part of the evidence for the given
// 64-byte report data.
type EvidenceFunc func(ctx context.Context, reportData []byte) (*Evidence, error)

// NewCertificate makes a fresh P-256 key, computes the report data that
// binds its public key and initdataDigest, asks produce for evidence over
// it, and returns a self-signed certificate carrying that evidence. The
// attesters use it; so can one for another evidence source.
func NewCertificate(ctx context.Context, kind string, initdataDigest []byte, produce EvidenceFunc) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: generate key: %w", kind, err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: encode public key: %w", kind, err)
	}
	reportData := ReportDataFor(spki, initdataDigest)
	ev, err := produce(ctx, reportData)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: get evidence: %w", kind, err)
	}
	evDER, err := ev.marshal()
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: serial: %w", kind, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "peerpod-vm", Organization: []string{"peerpod " + kind + " attested"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"peerpod-vm"},
		ExtraExtensions:       []pkix.Extension{{Id: EvidenceOID, Value: evDER}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: create certificate: %w", kind, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: parse certificate: %w", kind, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
