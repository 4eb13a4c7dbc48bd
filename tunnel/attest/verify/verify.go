// Package verify checks, on the node, the evidence a pod VM's certificate
// carries (package attest makes it): the binding of the certificate's key and
// the expected initdata digest through report data, and the kind's hardware
// report up to its vendor's root. Its verifiers plug into the tunnel's
// Verifier hook, so no stream opens to a VM that failed attestation.
package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// Expectations are what the node requires of a VM's evidence.
type Expectations struct {
	// InitdataDigest is the digest of the VM's initdata TOML (api/initdata);
	// empty when the pod has no initdata. It is bound through report data.
	InitdataDigest []byte
	// TDX holds the TDX measurement checks; nil checks only the quote's
	// signature chain and report data.
	TDX *TDXExpectations
	// SNP holds the SEV-SNP measurement checks (also of az-snp-vtpm's
	// report); nil checks only the report's signature chain and report data.
	SNP *SNPExpectations
	// VTPM holds expected PCR values for az-snp-vtpm; nil checks the quote
	// and the initdata PCR only.
	VTPM *VTPMExpectations
}

// NewVerifier returns the node-side verifier for evidence of kind. A verifier
// accepts only evidence of its own kind: a tdx or snp verifier never accepts
// fake evidence.
func NewVerifier(kind string, want Expectations) (tunnel.Verifier, error) {
	switch kind {
	case attest.KindFake:
		return &certVerifier{kind: attest.KindFake, want: want, check: verifyFake}, nil
	case attest.KindTDX:
		return newTDXVerifier(want)
	case attest.KindSNP:
		return newSNPVerifier(want)
	case attest.KindAzSNPVTPM:
		return newAzVTPMVerifier(want)
	case "":
		return nil, errors.New("attest: verifier kind is empty (want " + kindList + ")")
	default:
		return nil, fmt.Errorf("attest: unknown verifier kind %q (want %s)", kind, kindList)
	}
}

// reportCheck verifies the kind-specific evidence: that ev.Report is genuine
// and carries ev.ReportData, and that its measurements meet want.
type reportCheck func(ctx context.Context, ev *attest.Evidence, want Expectations) error

// kindList names the evidence kinds for error messages.
const kindList = "fake, tdx, snp or az-snp-vtpm"

// certVerifier checks the peer certificate's binding and hands the report to
// the kind's check.
type certVerifier struct {
	kind  string
	want  Expectations
	check reportCheck
}

// VerifyPeer implements tunnel.Verifier.
func (v *certVerifier) VerifyPeer(ctx context.Context, state tls.ConnectionState) error {
	if len(state.PeerCertificates) == 0 {
		return fmt.Errorf("%w: %s: peer presented no certificate", attest.ErrAttestation, v.kind)
	}
	return v.VerifyCertificate(ctx, state.PeerCertificates[0])
}

// VerifyCertificate checks cert as the TLS handshake presented it: the
// handshake proved the peer holds cert's private key, and this proves that
// key was made inside an attested VM running with the expected initdata.
func (v *certVerifier) VerifyCertificate(ctx context.Context, cert *x509.Certificate) error {
	if err := v.verify(ctx, cert); err != nil {
		return fmt.Errorf("%w: %s: %w", attest.ErrAttestation, v.kind, err)
	}
	return nil
}

func (v *certVerifier) verify(ctx context.Context, cert *x509.Certificate) error {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("certificate key is %T, want ECDSA P-256", cert.PublicKey)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return fmt.Errorf("certificate is not self-signed: %w", err)
	}
	ev, err := attest.EvidenceOf(cert)
	if err != nil {
		return err
	}
	if ev.Kind != v.kind {
		return fmt.Errorf("evidence is of kind %q, this verifier accepts only %q", ev.Kind, v.kind)
	}
	want := attest.ReportDataFor(cert.RawSubjectPublicKeyInfo, v.want.InitdataDigest)
	if !bytes.Equal(ev.ReportData, want) {
		return fmt.Errorf("report data does not bind this certificate's key and the expected initdata digest %x", v.want.InitdataDigest)
	}
	return v.check(ctx, ev, v.want)
}
