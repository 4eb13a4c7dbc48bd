package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// Offsets in the SNP attestation report (AMD SEV-SNP ABI, table 22).
const (
	snpPolicyOffset      = 0x08
	snpMeasurementOffset = 0x90
	snpHostDataOffset    = 0xC0
)

// fakeSNP is a quote provider that signs a report over any report data
// with go-sev-guest's test-only AMD key chain.
type fakeSNP struct {
	signer      *sevtest.AmdSigner
	measurement []byte
	hostData    []byte
	debug       bool
	// reportData, when set, replaces what the caller asked for (a
	// compromised host answering with someone else's report).
	reportData []byte
}

func newFakeSNP(t testing.TB) *fakeSNP {
	t.Helper()
	signer, err := sevtest.DefaultTestOnlyCertChain(sevtest.GetProductName(), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSNP{signer: signer, measurement: make([]byte, 48), hostData: make([]byte, 32)}
}

func (f *fakeSNP) IsSupported() bool        { return true }
func (f *fakeSNP) Product() *spb.SevProduct { return f.signer.Product }
func (f *fakeSNP) GetRawQuote(rd [64]byte) ([]uint8, error) {
	data := rd[:]
	if f.reportData != nil {
		data = f.reportData
	}
	r := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: data})
	binary.LittleEndian.PutUint64(r[snpPolicyOffset:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: f.debug}))
	copy(r[snpMeasurementOffset:], f.measurement)
	copy(r[snpHostDataOffset:], f.hostData)
	report := r[:abi.ReportSize]
	rs, ss, err := f.signer.Sign(abi.SignedComponent(report))
	if err != nil {
		return nil, err
	}
	if err := abi.SetSignature(rs, ss, report); err != nil {
		return nil, err
	}
	certs, err := f.signer.CertTableBytes()
	if err != nil {
		return nil, err
	}
	return append(append([]byte(nil), report...), certs...), nil
}

func (f *fakeSNP) roots() map[string][]*trust.AMDRootCerts {
	line := sevtest.GetProductLine()
	return map[string][]*trust.AMDRootCerts{line: {{
		Product:      line,
		ProductLine:  line,
		ProductCerts: &trust.ProductCerts{Ark: f.signer.Ark, Ask: f.signer.Ask, Asvk: f.signer.Asvk},
	}}}
}

func verifyCert(t *testing.T, kind string, want Expectations, cert tls.Certificate) error {
	t.Helper()
	v, err := NewVerifier(kind, want)
	if err != nil {
		t.Fatal(err)
	}
	return v.VerifyPeer(context.Background(), tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}})
}

// checkVerify fails the test unless err is nil (wantErr "") or an error
// containing wantErr.
func checkVerify(t *testing.T, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("VerifyPeer: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("VerifyPeer = %v, want error containing %q", err, wantErr)
	}
}

func TestSNPVerify(t *testing.T) {
	ctx := context.Background()
	digest := digestOf("initdata-a")
	hostData := make([]byte, 32)
	copy(hostData, digest)
	measurement := make([]byte, 48)
	measurement[0] = 0xaa

	qp := newFakeSNP(t)
	qp.hostData = hostData
	qp.measurement = measurement
	good, err := attest.NewSNPAttester(qp).Certificate(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := attest.EvidenceOf(good.Leaf); err != nil || ev.Kind != attest.KindSNP || len(ev.Certs) == 0 {
		t.Fatalf("evidence = %+v, %v", ev, err)
	}

	// A report over someone else's report data (the host replays a report).
	replay := newFakeSNP(t)
	replay.signer = qp.signer
	replay.reportData = make([]byte, 64)
	replayed, err := attest.NewSNPAttester(replay).Certificate(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	replay.hostData, replay.measurement = hostData, measurement
	// A debuggable guest.
	dbg := newFakeSNP(t)
	dbg.signer = qp.signer
	dbg.debug = true
	dbg.hostData, dbg.measurement = hostData, measurement
	debugCert, err := attest.NewSNPAttester(dbg).Certificate(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	fake := fakeCert(t, digest)

	roots := qp.roots()
	// Roots whose ASK is not the one that signed the VCEK.
	badRoots := qp.roots()
	for _, rs := range badRoots {
		rs[0].ProductCerts.Ask = qp.signer.Ark
	}
	exp := func(m func(*SNPExpectations)) Expectations {
		s := &SNPExpectations{TrustedRoots: roots, Measurement: measurement, HostData: hostData}
		if m != nil {
			m(s)
		}
		return Expectations{InitdataDigest: digest, SNP: s}
	}
	tests := []struct {
		name    string
		cert    tls.Certificate
		want    Expectations
		wantErr string
	}{
		{"genuine", good, exp(nil), ""},
		{"genuine, no measurement checks", good, exp(func(s *SNPExpectations) { s.Measurement, s.HostData = nil, nil }), ""},
		{"other initdata", good, Expectations{InitdataDigest: digestOf("initdata-b"), SNP: &SNPExpectations{TrustedRoots: roots}}, "report data does not bind"},
		{"report not over this key", replayed, exp(nil), "REPORT_DATA"},
		{"wrong measurement", good, exp(func(s *SNPExpectations) { s.Measurement = make([]byte, 48) }), "MEASUREMENT"},
		{"wrong host data", good, exp(func(s *SNPExpectations) { s.HostData = make([]byte, 32) }), "HOST_DATA"},
		{"untrusted root", good, exp(func(s *SNPExpectations) { s.TrustedRoots = badRoots }), "SNP report signature"},
		{"debug guest refused", debugCert, exp(nil), "debug"},
		{"debug guest allowed explicitly", debugCert, exp(func(s *SNPExpectations) { s.AllowDebug = true }), ""},
		{"fake evidence", fake, exp(nil), `kind "fake"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkVerify(t, verifyCert(t, attest.KindSNP, tt.want, tt.cert), tt.wantErr)
		})
	}
}

func TestSNPTamperedReport(t *testing.T) {
	qp := newFakeSNP(t)
	digest := digestOf("x")
	good, err := attest.NewSNPAttester(qp).Certificate(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := attest.EvidenceOf(good.Leaf)
	ev.Report[snpMeasurementOffset] ^= 1
	err = verifySNP(context.Background(), ev, Expectations{SNP: &SNPExpectations{TrustedRoots: qp.roots()}})
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("tampered report: %v", err)
	}
}

func TestSNPExpectationSizes(t *testing.T) {
	if _, err := NewVerifier(attest.KindSNP, Expectations{SNP: &SNPExpectations{HostData: make([]byte, 48)}}); err == nil {
		t.Fatal("48-byte host data accepted")
	}
	if _, err := NewVerifier(attest.KindSNP, Expectations{SNP: &SNPExpectations{Measurement: make([]byte, 32)}}); err == nil {
		t.Fatal("32-byte measurement accepted")
	}
}
