package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/peerpod/peerpod/internal/benchstat"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// BenchmarkVerifyEvidence measures what the node spends verifying one
// tunnel's evidence: parsing the extension, checking the binding, and the
// kind's signature chain and contents.
func BenchmarkVerifyEvidence(b *testing.B) {
	ctx := context.Background()
	digest := digestOf("initdata")
	b.Run("fake", func(b *testing.B) {
		cert, err := attest.FakeAttester{}.Certificate(ctx, digest)
		if err != nil {
			b.Fatal(err)
		}
		v, _ := NewVerifier(attest.KindFake, Expectations{InitdataDigest: digest})
		st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
		benchstat.P50(b, func() {
			if err := v.VerifyPeer(ctx, st); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("snp", func(b *testing.B) {
		qp := newFakeSNP(b)
		cert, err := attest.NewSNPAttester(qp).Certificate(ctx, digest)
		if err != nil {
			b.Fatal(err)
		}
		v, _ := NewVerifier(attest.KindSNP, Expectations{InitdataDigest: digest, SNP: &SNPExpectations{TrustedRoots: qp.roots()}})
		st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
		benchstat.P50(b, func() {
			if err := v.VerifyPeer(ctx, st); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("az-snp-vtpm", func(b *testing.B) {
		qp := newFakeSNP(b)
		cert, err := newSimVTPM(b, qp).attester(b).Certificate(ctx, digest)
		if err != nil {
			b.Fatal(err)
		}
		v, _ := NewVerifier(attest.KindAzSNPVTPM, Expectations{InitdataDigest: digest, SNP: &SNPExpectations{TrustedRoots: qp.roots()}})
		st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}
		benchstat.P50(b, func() {
			if err := v.VerifyPeer(ctx, st); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("tdx", func(b *testing.B) {
		// The recorded quote cannot carry a fresh key's binding, so this
		// measures the quote verification and validation step alone.
		q, err := tdxBody(testdata.RawQuote)
		if err != nil {
			b.Fatal(err)
		}
		exp := &TDXExpectations{Now: recordedQuoteTime, MRTD: q.GetMrTd()}
		benchstat.P50(b, func() {
			if err := verifyTDXQuote(ctx, testdata.RawQuote, q.GetReportData(), exp); err != nil {
				b.Fatal(err)
			}
		})
	})
}
