package verify

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/tunnel/attest"
)

func fakeCert(t *testing.T, digest []byte) tls.Certificate {
	t.Helper()
	a, err := attest.NewAttester(attest.KindFake)
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Certificate(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func digestOf(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }

// reissue re-signs cert's template (with evidence ev) under a new key, as an
// attacker replaying someone else's evidence would.
func reissue(t *testing.T, ev *attest.Evidence) tls.Certificate {
	t.Helper()
	c, err := attest.NewCertificate(context.Background(), attest.KindFake, nil, func(context.Context, []byte) (*attest.Evidence, error) {
		return ev, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFakeVerify(t *testing.T) {
	good := fakeCert(t, digestOf("policy-a"))
	goodEv, err := attest.EvidenceOf(good.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	badSig, err := attest.NewCertificate(context.Background(), attest.KindFake, digestOf("policy-a"), func(_ context.Context, rd []byte) (*attest.Evidence, error) {
		sig := attest.FakeSignature(rd)
		sig[len(sig)-1] ^= 1
		return &attest.Evidence{Kind: attest.KindFake, ReportData: rd, Report: sig}, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cert    tls.Certificate
		want    []byte
		wantErr string
	}{
		{"matching digest", good, digestOf("policy-a"), ""},
		{"other initdata", good, digestOf("policy-b"), "report data does not bind"},
		{"no initdata expected", good, nil, "report data does not bind"},
		{"no initdata both sides", fakeCert(t, nil), nil, ""},
		{"evidence replayed under another key", reissue(t, goodEv), digestOf("policy-a"), "report data does not bind"},
		{"bad fake signature", badSig, digestOf("policy-a"), "fake signature does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(attest.KindFake, Expectations{InitdataDigest: tt.want})
			if err != nil {
				t.Fatal(err)
			}
			err = v.VerifyPeer(context.Background(), tls.ConnectionState{PeerCertificates: []*x509.Certificate{tt.cert.Leaf}})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyPeer: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, attest.ErrAttestation) {
				t.Fatalf("VerifyPeer = %v, want ErrAttestation containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFakeSignatureChecked(t *testing.T) {
	// Evidence whose report data is right for the key but whose fake
	// signature is wrong must be refused by the fake check itself.
	ev := &attest.Evidence{Kind: attest.KindFake, ReportData: make([]byte, 64), Report: []byte("FAKE-EVIDENCE-NOT-A-TEE:xx")}
	if err := verifyFake(context.Background(), ev, Expectations{}); err == nil {
		t.Fatal("verifyFake accepted a wrong fake signature")
	}
	ev.Report = attest.FakeSignature(ev.ReportData)
	if err := verifyFake(context.Background(), ev, Expectations{}); err != nil {
		t.Fatalf("verifyFake: %v", err)
	}
}

func TestEvidenceOfRejects(t *testing.T) {
	mk := func(value []byte) *x509.Certificate {
		return &x509.Certificate{Extensions: []pkix.Extension{{Id: attest.EvidenceOID, Value: value}}}
	}
	enc := func(ev attest.Evidence) []byte { b, _ := json.Marshal(ev); return b }
	tests := []struct {
		name    string
		cert    *x509.Certificate
		wantErr string
	}{
		{"nil", nil, "no certificate"},
		{"no extension", &x509.Certificate{}, "no evidence extension"},
		{"not json", mk([]byte{0x30, 0}), "decode evidence"},
		{"unknown kind", mk(enc(attest.Evidence{Kind: "sgx", ReportData: make([]byte, 64)})), `kind "sgx"`},
		{"short report data", mk(enc(attest.Evidence{Kind: attest.KindFake, ReportData: make([]byte, 32)})), "32 bytes"},
		{"unknown field", mk([]byte(`{"kind":"fake","report_data":"","x":1}`)), "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := attest.EvidenceOf(tt.cert)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("EvidenceOf = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestKindsAreNotInterchangeable(t *testing.T) {
	if _, err := attest.NewAttester("sgx"); err == nil {
		t.Fatal("NewAttester accepted an unknown kind")
	}
	if _, err := NewVerifier("", Expectations{}); err == nil {
		t.Fatal("NewVerifier accepted an empty kind")
	}
	cert := fakeCert(t, nil)
	for _, kind := range []string{attest.KindTDX, attest.KindSNP} {
		v := &certVerifier{kind: kind, check: func(context.Context, *attest.Evidence, Expectations) error { return nil }}
		err := v.VerifyPeer(context.Background(), tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}})
		if err == nil || !strings.Contains(err.Error(), `kind "fake"`) {
			t.Fatalf("%s verifier on fake evidence: %v", kind, err)
		}
	}
}

// TestFakeOverTLS runs a real TLS 1.3 handshake over loopback with the
// attested certificate on the server and the verifier on the client.
func TestFakeOverTLS(t *testing.T) {
	digest := digestOf("policy-a")
	cert := fakeCert(t, digest)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	for _, tt := range []struct {
		name string
		want []byte
		ok   bool
	}{{"expected initdata", digest, true}, {"other initdata", digestOf("x"), false}} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(attest.KindFake, Expectations{InitdataDigest: tt.want})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			err = v.VerifyPeer(context.Background(), conn.ConnectionState())
			if (err == nil) != tt.ok {
				t.Fatalf("VerifyPeer = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
