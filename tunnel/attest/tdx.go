package attest

import (
	"context"
	"crypto/tls"
	"fmt"

	tdxclient "github.com/google/go-tdx-guest/client"
)

// TDXAttester gets TDX quotes from the guest's quote provider.
type TDXAttester struct {
	qp tdxclient.QuoteProvider
}

// NewTDXAttester returns an attester over qp (configfs-tsm).
func NewTDXAttester(qp tdxclient.QuoteProvider) *TDXAttester { return &TDXAttester{qp: qp} }

func newTDXAttester() (Attester, error) {
	qp, err := tdxclient.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("attest tdx: no TDX quote provider in this guest: %w", err)
	}
	if err := qp.IsSupported(); err != nil {
		return nil, fmt.Errorf("attest tdx: TDX quote provider not supported in this guest: %w", err)
	}
	return NewTDXAttester(qp), nil
}

// Kind returns "tdx".
func (*TDXAttester) Kind() string { return KindTDX }

// Certificate returns a certificate whose evidence is a TDX quote over the
// binding report data.
func (a *TDXAttester) Certificate(ctx context.Context, initdataDigest []byte) (tls.Certificate, error) {
	return NewCertificate(ctx, KindTDX, initdataDigest, func(_ context.Context, rd []byte) (*Evidence, error) {
		var data [ReportDataSize]byte
		copy(data[:], rd)
		raw, err := tdxclient.GetRawQuote(a.qp, data)
		if err != nil {
			return nil, fmt.Errorf("get TDX quote: %w", err)
		}
		if len(raw) == 0 {
			return nil, fmt.Errorf("get TDX quote: empty quote")
		}
		return &Evidence{Kind: KindTDX, ReportData: rd, Report: raw}, nil
	})
}
