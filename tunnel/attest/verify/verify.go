package attest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// reportCheck verifies the kind-specific evidence: that ev.Report is genuine
// and carries ev.ReportData, and that its measurements meet want.
type reportCheck func(ctx context.Context, ev *Evidence, want Expectations) error

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
		return fmt.Errorf("%w: %s: peer presented no certificate", ErrAttestation, v.kind)
	}
	return v.VerifyCertificate(ctx, state.PeerCertificates[0])
}

// VerifyCertificate checks cert as the TLS handshake presented it: the
// handshake proved the peer holds cert's private key, and this proves that
// key was made inside an attested VM running with the expected initdata.
func (v *certVerifier) VerifyCertificate(ctx context.Context, cert *x509.Certificate) error {
	if err := v.verify(ctx, cert); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrAttestation, v.kind, err)
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
	ev, err := EvidenceOf(cert)
	if err != nil {
		return err
	}
	if ev.Kind != v.kind {
		return fmt.Errorf("evidence is of kind %q, this verifier accepts only %q", ev.Kind, v.kind)
	}
	want := ReportDataFor(cert.RawSubjectPublicKeyInfo, v.want.InitdataDigest)
	if !bytes.Equal(ev.ReportData, want) {
		return fmt.Errorf("report data does not bind this certificate's key and the expected initdata digest %x", v.want.InitdataDigest)
	}
	return v.check(ctx, ev, v.want)
}
