package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
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
	return newAttestedCertificate(ctx, KindFake, initdataDigest, func(_ context.Context, rd []byte) (*Evidence, error) {
		return &Evidence{Kind: KindFake, ReportData: rd, Report: FakeSignature(rd)}, nil
	})
}

// FakeSignature is the fake "signature" of fake evidence:
// "FAKE-EVIDENCE-NOT-A-TEE:" || SHA-256(reportData). Anyone can compute it.
func FakeSignature(reportData []byte) []byte {
	sum := sha256.Sum256(reportData)
	return append([]byte(fakeSignaturePrefix), sum[:]...)
}

// verifyFake checks that the fake signature matches the report data; it
// catches corruption, not forgery.
func verifyFake(_ context.Context, ev *Evidence, _ Expectations) error {
	if ev.Kind != KindFake {
		return errors.New("not fake evidence")
	}
	if !bytes.Equal(ev.Report, FakeSignature(ev.ReportData)) {
		return fmt.Errorf("fake signature does not match report data")
	}
	return nil
}
