package verify

import (
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"

	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// tdxMeasurementSize is the size of MRTD, RTMRs and MRCONFIGID.
const tdxMeasurementSize = 48

// TDXExpectations are the TDX checks the node makes beyond the quote's
// signature chain and report data. A nil or empty field is not checked.
type TDXExpectations struct {
	// MRTD is the TD's build-time measurement (48 bytes).
	MRTD []byte
	// RTMRs are the run-time measurement registers 0-3 (48 bytes each); a
	// nil entry is not checked.
	RTMRs [4][]byte
	// MRConfigID is the launcher-set config ID (48 bytes); where peerpod
	// launches the TD itself it is initdata.Fit(digest, 48).
	MRConfigID []byte
	// TrustedRoots replaces Intel's SGX root CA (tests only).
	TrustedRoots *x509.CertPool
	// GetCollateral fetches TCB info and QE identity from Intel PCS and
	// checks them (and revocations); needs Getter or HTTPS access.
	GetCollateral bool
	// Getter fetches collateral; nil uses HTTPS.
	Getter tdxtrust.HTTPSGetter
	// Now is the verification time; zero means time.Now (tests set it to
	// the validity period of recorded quotes).
	Now time.Time
}

func newTDXVerifier(want Expectations) (tunnel.Verifier, error) {
	if exp := want.TDX; exp != nil {
		check := func(name string, b []byte) error {
			if len(b) != 0 && len(b) != tdxMeasurementSize {
				return fmt.Errorf("attest tdx: expected %s is %d bytes, want %d", name, len(b), tdxMeasurementSize)
			}
			return nil
		}
		if err := check("MRTD", exp.MRTD); err != nil {
			return nil, err
		}
		if err := check("MRCONFIGID", exp.MRConfigID); err != nil {
			return nil, err
		}
		for i, r := range exp.RTMRs {
			if err := check(fmt.Sprintf("RTMR%d", i), r); err != nil {
				return nil, err
			}
		}
	}
	return &certVerifier{kind: attest.KindTDX, want: want, check: verifyTDX}, nil
}

func verifyTDX(ctx context.Context, ev *attest.Evidence, want Expectations) error {
	return verifyTDXQuote(ctx, ev.Report, ev.ReportData, want.TDX)
}

// verifyTDXQuote checks the quote's signature chain up to Intel's root (or
// the trusted roots given), that it carries reportData, and exp.
func verifyTDXQuote(ctx context.Context, raw, reportData []byte, exp *TDXExpectations) error {
	quote, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		return fmt.Errorf("parse TDX quote: %w", err)
	}
	if exp == nil {
		exp = &TDXExpectations{}
	}
	vopts := tdxverify.DefaultOptions()
	if !exp.Now.IsZero() {
		t := exp.Now
		vopts.Now = &tdxverify.TimeSet{PckCertChain: t, TcbInfo: t, QeIdentity: t, PckCrl: t, RootCaCrl: t}
	}
	vopts.TrustedRoots = exp.TrustedRoots
	vopts.GetCollateral = exp.GetCollateral
	vopts.CheckRevocations = exp.GetCollateral
	if exp.Getter != nil {
		vopts.Getter = exp.Getter
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tdxverify.TdxQuote(quote, vopts); err != nil {
		return fmt.Errorf("TDX quote signature: %w", err)
	}
	var rtmrs [][]byte
	for _, r := range exp.RTMRs {
		if r != nil {
			rtmrs = exp.RTMRs[:]
			break
		}
	}
	if rtmrs != nil {
		// validate compares all four; an unset one must not be checked.
		body, err := tdxQuoteRTMRs(quote)
		if err != nil {
			return err
		}
		rtmrs = make([][]byte, 4)
		for i := range rtmrs {
			if exp.RTMRs[i] != nil {
				rtmrs[i] = exp.RTMRs[i]
			} else {
				rtmrs[i] = body[i]
			}
		}
	}
	if err := tdxvalidate.TdxQuote(quote, &tdxvalidate.Options{TdQuoteBodyOptions: tdxvalidate.TdQuoteBodyOptions{
		ReportData: reportData,
		MrTd:       exp.MRTD,
		MrConfigID: exp.MRConfigID,
		Rtmrs:      rtmrs,
	}}); err != nil {
		return fmt.Errorf("TDX quote contents: %w", err)
	}
	return nil
}

func tdxQuoteRTMRs(quote any) ([][]byte, error) {
	q, ok := quote.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("TDX quote is a %T, want a v4 quote", quote)
	}
	r := q.GetTdQuoteBody().GetRtmrs()
	if len(r) != 4 {
		return nil, fmt.Errorf("TDX quote has %d RTMRs, want 4", len(r))
	}
	return r, nil
}
