package attest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
)

// fakeSignaturePrefix names fake evidence for anyone who looks at it.
const fakeSignaturePrefix = "FAKE-EVIDENCE-NOT-A-TEE:"

// FakeAttester produces evidence of kind "fake": no hardware is involved and
// it proves nothing about the VM. It exists for CI and for libvirt hosts
// without TEE hardware, and must be chosen explicitly.
type FakeAttester struct{}

// Kind returns "fake".
func (FakeAttester) Kind() string { return KindFake }

// Certificate returns a self-signed certificate with fake evidence.
func (FakeAttester) Certificate(ctx context.Context, initdataDigest []byte) (tls.Certificate, error) {
	return NewCertificate(ctx, KindFake, initdataDigest, func(_ context.Context, rd []byte) (*Evidence, error) {
		return &Evidence{Kind: KindFake, ReportData: rd, Report: FakeSignature(rd)}, nil
	})
}

// FakeSignature is the fake "signature" of fake evidence:
// "FAKE-EVIDENCE-NOT-A-TEE:" || SHA-256(reportData). Anyone can compute it.
func FakeSignature(reportData []byte) []byte {
	sum := sha256.Sum256(reportData)
	return append([]byte(fakeSignaturePrefix), sum[:]...)
}
