package attest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/tunnel/attest"
)

func TestNewAttester(t *testing.T) {
	tests := []struct {
		kind, wantErr string
	}{
		{kind: attest.KindFake},
		{kind: "", wantErr: "kind is empty"},
		{kind: "sgx", wantErr: `unknown attester kind "sgx"`},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			a, err := attest.NewAttester(tc.kind)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewAttester(%q) = %v, want an error containing %q", tc.kind, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Kind() != tc.kind {
				t.Fatalf("Kind() = %q, want %q", a.Kind(), tc.kind)
			}
		})
	}
}

// TestFakeCertificateEvidence checks what a fake certificate carries: the
// binding report data and the fake signature over it.
func TestFakeCertificateEvidence(t *testing.T) {
	for _, digest := range [][]byte{nil, sha256.New().Sum(nil)} {
		cert, err := attest.FakeAttester{}.Certificate(context.Background(), digest)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := attest.EvidenceOf(cert.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != attest.KindFake {
			t.Errorf("kind = %q, want fake", ev.Kind)
		}
		if want := attest.ReportDataFor(cert.Leaf.RawSubjectPublicKeyInfo, digest); !bytes.Equal(ev.ReportData, want) {
			t.Errorf("report data %x, want %x", ev.ReportData, want)
		}
		if !bytes.Equal(ev.Report, attest.FakeSignature(ev.ReportData)) {
			t.Errorf("report is not the fake signature of the report data")
		}
	}
}

func TestParseHCLReportRejects(t *testing.T) {
	tests := []struct {
		name    string
		report  []byte
		wantErr string
	}{
		{"empty", nil, "shorter than its fixed part"},
		{"no signature", make([]byte, 2048), "signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := attest.ParseHCLReport(tc.report); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseHCLReport = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
