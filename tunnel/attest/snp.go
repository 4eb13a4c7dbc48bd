package attest

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	sevclient "github.com/google/go-sev-guest/client"
)

// SNPAttester gets SEV-SNP reports from the guest's quote provider.
type SNPAttester struct {
	qp sevclient.QuoteProvider
}

// NewSNPAttester returns an attester over qp (configfs-tsm or /dev/sev-guest).
func NewSNPAttester(qp sevclient.QuoteProvider) *SNPAttester { return &SNPAttester{qp: qp} }

func newSNPAttester() (Attester, error) {
	qp, err := sevclient.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("attest snp: no SEV-SNP quote provider in this guest: %w", err)
	}
	return NewSNPAttester(qp), nil
}

// Kind returns "snp".
func (*SNPAttester) Kind() string { return KindSNP }

// Certificate returns a certificate whose evidence is an SNP report (and the
// host's certificate table when it has one) over the binding report data.
func (a *SNPAttester) Certificate(ctx context.Context, initdataDigest []byte) (tls.Certificate, error) {
	return NewCertificate(ctx, KindSNP, initdataDigest, func(_ context.Context, rd []byte) (*Evidence, error) {
		var data [ReportDataSize]byte
		copy(data[:], rd)
		raw, err := a.qp.GetRawQuote(data)
		if err != nil {
			return nil, fmt.Errorf("get SNP report: %w", err)
		}
		if len(raw) < abi.ReportSize {
			return nil, fmt.Errorf("SNP report is %d bytes, want at least %d", len(raw), abi.ReportSize)
		}
		return &Evidence{Kind: KindSNP, ReportData: rd, Report: raw[:abi.ReportSize], Certs: raw[abi.ReportSize:]}, nil
	})
}
