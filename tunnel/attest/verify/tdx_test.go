package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtest "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// recordedQuoteTime lies within the validity of the recorded quote's PCK chain.
var recordedQuoteTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

func recordedBody(t *testing.T) *tdxpb.TDQuoteBody {
	t.Helper()
	b, err := tdxBody(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tdxBody(raw []byte) (*tdxpb.TDQuoteBody, error) {
	q, err := tdxabi.QuoteToProto(raw)
	if err != nil {
		return nil, err
	}
	return q.(*tdxpb.QuoteV4).GetTdQuoteBody(), nil
}

// TestTDXRecordedQuote verifies go-tdx-guest's recorded production quote
// (signed by Intel's chain) through our checks.
func TestTDXRecordedQuote(t *testing.T) {
	body := recordedBody(t)
	other := append([]byte(nil), body.GetMrTd()...)
	other[0] ^= 1
	tampered := append([]byte(nil), testdata.RawQuote...)
	tampered[0x30+0x100] ^= 1 // a byte of the TD quote body

	tests := []struct {
		name    string
		raw     []byte
		rd      []byte
		exp     *TDXExpectations
		wantErr string
	}{
		{"genuine, its report data", testdata.RawQuote, body.GetReportData(), &TDXExpectations{Now: recordedQuoteTime}, ""},
		{"genuine, measurements", testdata.RawQuote, body.GetReportData(), &TDXExpectations{Now: recordedQuoteTime, MRTD: body.GetMrTd(), MRConfigID: body.GetMrConfigId(), RTMRs: [4][]byte{nil, body.GetRtmrs()[1]}}, ""},
		{"other report data", testdata.RawQuote, make([]byte, 64), &TDXExpectations{Now: recordedQuoteTime}, "REPORT_DATA"},
		{"other MRTD", testdata.RawQuote, body.GetReportData(), &TDXExpectations{Now: recordedQuoteTime, MRTD: other}, "MR_TD"},
		{"other RTMR", testdata.RawQuote, body.GetReportData(), &TDXExpectations{Now: recordedQuoteTime, RTMRs: [4][]byte{2: other}}, "RTMR"},
		{"tampered quote", tampered, body.GetReportData(), &TDXExpectations{Now: recordedQuoteTime}, "TDX quote signature"},
		{"expired chain", testdata.RawQuote, body.GetReportData(), &TDXExpectations{Now: recordedQuoteTime.AddDate(20, 0, 0)}, "TDX quote signature"},
		{"not a quote", []byte("FAKE-EVIDENCE-NOT-A-TEE"), body.GetReportData(), nil, "parse TDX quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyTDXQuote(context.Background(), tt.raw, tt.rd, tt.exp)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(strings.ToUpper(err.Error()), strings.ToUpper(tt.wantErr)) {
				t.Fatalf("verify = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// replayProvider answers every request with go-tdx-guest's mock provider
// response for its recorded test case: a genuine quote whose report data
// is not the one asked for, as a host replaying another TD's quote would.
type replayProvider struct {
	mock  *tdxtest.TdxQuoteProvider
	input [64]byte
}

func (p *replayProvider) IsSupported() error { return p.mock.IsSupported() }
func (p *replayProvider) GetRawQuote([64]byte) ([]uint8, error) {
	return p.mock.GetRawQuote(p.input)
}

func TestTDXAttesterWithMockProvider(t *testing.T) {
	tcs := tdxtest.TestCases()
	mock, err := tdxtest.TcQuoteProvider(tcs)
	if err != nil {
		t.Fatal(err)
	}
	digest := digestOf("initdata")
	a := attest.NewTDXAttester(&replayProvider{mock: mock, input: tcs[0].Input})
	cert, err := a.Certificate(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attest.EvidenceOf(cert.Leaf)
	if err != nil || ev.Kind != attest.KindTDX || len(ev.Report) != len(tcs[0].Quote) {
		t.Fatalf("evidence = %+v, %v", ev, err)
	}
	// The quote is genuine but does not carry this certificate's binding.
	err = verifyCert(t, attest.KindTDX, Expectations{InitdataDigest: digest, TDX: &TDXExpectations{Now: recordedQuoteTime}}, cert)
	if err == nil || !strings.Contains(err.Error(), "REPORT_DATA") {
		t.Fatalf("replayed quote: %v", err)
	}
	// Fake evidence never passes a TDX verifier.
	err = verifyCert(t, attest.KindTDX, Expectations{InitdataDigest: digest}, fakeCert(t, digest))
	if err == nil || !strings.Contains(err.Error(), `kind "fake"`) {
		t.Fatalf("fake evidence: %v", err)
	}
	// A provider that returns nothing is an error, not an empty certificate.
	empty, _ := tdxtest.TcQuoteProvider(nil)
	if _, err := attest.NewTDXAttester(empty).Certificate(context.Background(), digest); err == nil {
		t.Fatal("empty quote accepted")
	}
}

func TestTDXExpectationSizes(t *testing.T) {
	for _, exp := range []*TDXExpectations{{MRTD: make([]byte, 32)}, {MRConfigID: make([]byte, 64)}, {RTMRs: [4][]byte{3: {1}}}} {
		if _, err := NewVerifier(attest.KindTDX, Expectations{TDX: exp}); err == nil {
			t.Fatalf("%+v accepted", exp)
		}
	}
}
