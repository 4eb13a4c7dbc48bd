package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// nvIndexSize is the size of the HCL report NV index in the simulator (its
// largest index; Azure's is larger, the report is zero-padded either way).
const nvIndexSize = 2048

// simVTPM is a software TPM set up like an Azure SNP CVM's vTPM: an RSA AK
// at AzureAKHandle and an HCL report at AzureHCLReportIndex whose SNP report
// (signed by go-sev-guest's test-only AMD chain) binds runtime claims that
// carry the AK's public key.
type simVTPM struct {
	sim *simulator.Simulator
	tpm transport.TPM
	qp  *fakeSNP
	ak  *rsa.PublicKey
}

func newSimVTPM(t testing.TB, qp *fakeSNP) *simVTPM {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("TPM simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	s := &simVTPM{sim: sim, tpm: transport.FromReadWriter(sim), qp: qp}
	s.ak = s.makeAK(t)
	s.writeHCL(t, s.hclReport(t, s.claims(t, s.ak)))
	return s
}

var ownerAuth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}

// makeAK creates a restricted RSA-2048 RSASSA-SHA256 signing key, as
// Azure's AK is, and persists it at AzureAKHandle.
func (s *simVTPM) makeAK(t testing.TB) *rsa.PublicKey {
	t.Helper()
	tmpl := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgRSA,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true, NoDA: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Scheme: tpm2.TPMTRSAScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 256)}),
	}
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: ownerAuth, InPublic: tpm2.New2B(tmpl)}.Execute(s.tpm)
	if err != nil {
		t.Fatalf("create AK: %v", err)
	}
	defer func() { _, _ = tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(s.tpm) }()
	if _, err := (tpm2.EvictControl{
		Auth:             ownerAuth,
		ObjectHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: tpm2.TPMHandle(attest.AzureAKHandle),
	}).Execute(s.tpm); err != nil {
		t.Fatalf("persist AK: %v", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PublicKey)
}

// claims is a runtime claims JSON in Azure's shape carrying ak as HCLAkPub.
func (s *simVTPM) claims(t testing.TB, ak *rsa.PublicKey) []byte {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	b, err := json.Marshal(map[string]any{
		"keys": []map[string]any{{
			"kid": attest.AzureAKKeyID, "key_ops": []string{"sign"}, "kty": "RSA",
			"e": enc(big.NewInt(int64(ak.E)).Bytes()), "n": enc(ak.N.Bytes()),
		}},
		"vm-configuration": map[string]any{
			"console-enabled": false, "secure-boot": true, "tpm-enabled": true,
			"tpm-persisted": true, "vmUniqueId": "00000000-0000-0000-0000-000000000001",
		},
		"user-data": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The HCL report layout the tests write (attest.ParseHCLReport reads it).
const (
	hclSignature       = 0x414C4348 // "HCLA"
	hclHeaderSize      = 32
	hclClaimsHeaderOff = hclHeaderSize + abi.ReportSize
	hclClaimsOff       = hclClaimsHeaderOff + 20
	hclReportTypeSNP   = 2
)

// hclReport lays out an HCL report whose SNP report's REPORT_DATA is
// SHA-256(claims) followed by zeros, signed by s.qp.
func (s *simVTPM) hclReport(t testing.TB, claims []byte) []byte {
	t.Helper()
	var rd [64]byte
	sum := sha256.Sum256(claims)
	copy(rd[:], sum[:])
	raw, err := s.qp.GetRawQuote(rd)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, hclClaimsOff+len(claims))
	le := binary.LittleEndian
	le.PutUint32(b[0:], hclSignature)
	le.PutUint32(b[4:], 2)              // version
	le.PutUint32(b[8:], uint32(len(b))) // report size
	le.PutUint32(b[12:], 2)             // request type: AK certificate request
	copy(b[hclHeaderSize:], raw[:hclClaimsHeaderOff-hclHeaderSize])
	h := b[hclClaimsHeaderOff:]
	le.PutUint32(h[0:], uint32(20+len(claims)))
	le.PutUint32(h[4:], 2) // version
	le.PutUint32(h[8:], hclReportTypeSNP)
	le.PutUint32(h[12:], attest.HCLHashSHA256)
	le.PutUint32(h[16:], uint32(len(claims)))
	copy(b[hclClaimsOff:], claims)
	return b
}

// writeHCL (re)defines the HCL report NV index and writes report into it.
func (s *simVTPM) writeHCL(t testing.TB, report []byte) {
	t.Helper()
	if len(report) > nvIndexSize {
		t.Fatalf("HCL report is %d bytes, more than the NV index's %d", len(report), nvIndexSize)
	}
	idx := tpm2.TPMHandle(attest.AzureHCLReportIndex)
	if pub, err := (tpm2.NVReadPublic{NVIndex: idx}).Execute(s.tpm); err == nil {
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: ownerAuth, NVIndex: tpm2.NamedHandle{Handle: idx, Name: pub.NVName}}).Execute(s.tpm); err != nil {
			t.Fatalf("undefine NV index: %v", err)
		}
	}
	def := tpm2.NVDefineSpace{
		AuthHandle: ownerAuth,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: idx,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true, OwnerRead: true, AuthWrite: true, AuthRead: true,
				NT: tpm2.TPMNTOrdinary, NoDA: true,
			},
			DataSize: nvIndexSize,
		}),
	}
	if _, err := def.Execute(s.tpm); err != nil {
		t.Fatalf("define NV index: %v", err)
	}
	data := make([]byte, nvIndexSize)
	copy(data, report)
	for off := 0; off < len(data); off += 1024 {
		pub, err := (tpm2.NVReadPublic{NVIndex: idx}).Execute(s.tpm)
		if err != nil {
			t.Fatal(err)
		}
		w := tpm2.NVWrite{
			AuthHandle: ownerAuth,
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: pub.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:min(off+1024, len(data))]},
			Offset:     uint16(off),
		}
		if _, err := w.Execute(s.tpm); err != nil {
			t.Fatalf("write NV index at %d: %v", off, err)
		}
	}
}

// extend extends a SHA-256 PCR with digest.
func (s *simVTPM) extend(t testing.TB, pcr int, digest []byte) {
	t.Helper()
	if _, err := (tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: digest}}},
	}).Execute(s.tpm); err != nil {
		t.Fatal(err)
	}
}

func (s *simVTPM) attester(t testing.TB) *attest.AzVTPMAttester {
	t.Helper()
	a, err := attest.NewAzVTPMAttester(attest.AzVTPMConfig{
		TPM:       s.tpm,
		FetchVCEK: func(context.Context) ([]byte, error) { return s.qp.signer.Vcek.Raw, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// resign re-signs cert under its own key with the evidence mutated.
func resign(t *testing.T, cert tls.Certificate, mutate func(*attest.Evidence)) tls.Certificate {
	t.Helper()
	ev, err := attest.EvidenceOf(cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	mutate(ev)
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	key := cert.PrivateKey.(*ecdsa.PrivateKey)
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(2),
		Subject:         pkix.Name{CommonName: "peerpod-vm"},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: attest.EvidenceOID, Value: raw}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// rebind puts cert's evidence, with report data recomputed for a fresh key,
// under that key: someone replaying a genuine quote for their own TLS key.
func rebind(t *testing.T, cert tls.Certificate, digest []byte) tls.Certificate {
	t.Helper()
	ev, err := attest.EvidenceOf(cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.NewCertificate(context.Background(), attest.KindAzSNPVTPM, digest, func(_ context.Context, rd []byte) (*attest.Evidence, error) {
		ev.ReportData = rd
		return ev, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAzVTPMVerify(t *testing.T) {
	ctx := context.Background()
	digest := digestOf("initdata-a")
	qp := newFakeSNP(t)
	qp.measurement[0] = 0xaa
	s := newSimVTPM(t, qp)
	a := s.attester(t)

	good, err := a.Certificate(ctx, digest)
	if err != nil {
		t.Fatalf("Certificate: %v", err)
	}
	ev, err := attest.EvidenceOf(good.Leaf)
	if err != nil || ev.Kind != attest.KindAzSNPVTPM || ev.VTPM == nil || len(ev.VTPM.VCEK) == 0 || len(ev.VTPM.PCRs) != 24 {
		t.Fatalf("evidence = %+v, %v", ev, err)
	}
	// A second certificate in the same boot finds PCR 8 already bound.
	again, err := a.Certificate(ctx, digest)
	if err != nil {
		t.Fatalf("second Certificate in the same boot: %v", err)
	}

	// An HCL report, genuinely signed, whose claims name another AK.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	foreignHCL := s.hclReport(t, s.claims(t, &other.PublicKey))

	// A quote over PCR 8 holding initdata A, in a certificate for initdata B
	// (made without BindInitdata, as a VM lying about its initdata would).
	digestB := digestOf("initdata-b")
	lying, err := attest.NewCertificate(ctx, attest.KindAzSNPVTPM, digestB, a.Evidence)
	if err != nil {
		t.Fatal(err)
	}

	// Trusted roots whose ASK did not sign the VCEK: the report's chain is
	// not one the node trusts.
	badRoots := qp.roots()
	for _, rs := range badRoots {
		rs[0].ProductCerts.Ask = qp.signer.Ark
	}

	roots := qp.roots()
	exp := func(m func(*Expectations)) Expectations {
		e := Expectations{InitdataDigest: digest, SNP: &SNPExpectations{TrustedRoots: roots, Measurement: qp.measurement}}
		if m != nil {
			m(&e)
		}
		return e
	}
	snpCert, err := attest.NewSNPAttester(qp).Certificate(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		kind    string
		cert    tls.Certificate
		want    Expectations
		wantErr string
	}{
		{"genuine", attest.KindAzSNPVTPM, good, exp(nil), ""},
		{"genuine, second certificate of the boot", attest.KindAzSNPVTPM, again, exp(nil), ""},
		{"genuine, expected boot PCR", attest.KindAzSNPVTPM, good, exp(func(e *Expectations) {
			e.VTPM = &VTPMExpectations{PCRs: map[int][]byte{0: make([]byte, 32), 8: attest.InitdataPCRValue(digest)}}
		}), ""},
		{"other initdata expected", attest.KindAzSNPVTPM, good, exp(func(e *Expectations) { e.InitdataDigest = digestB }), "report data does not bind"},
		{"PCR 8 holds other initdata", attest.KindAzSNPVTPM, lying, exp(func(e *Expectations) { e.InitdataDigest = digestB }), "PCR 8"},
		{"unexpected PCR value", attest.KindAzSNPVTPM, good, exp(func(e *Expectations) {
			e.VTPM = &VTPMExpectations{PCRs: map[int][]byte{3: bytes.Repeat([]byte{1}, 32)}}
		}), "PCR 3 is"},
		{"claims altered", attest.KindAzSNPVTPM, resign(t, good, func(ev *attest.Evidence) {
			i := bytes.Index(ev.Report, []byte(`"secure-boot":true`))
			copy(ev.Report[i:], `"secure-boot":fals`)
		}), exp(nil), "not the hash of the HCL runtime claims"},
		{"AK in claims is not the quoting key", attest.KindAzSNPVTPM, resign(t, good, func(ev *attest.Evidence) { ev.Report = foreignHCL }), exp(nil), "quote is not signed by the AK"},
		{"quote replayed under another TLS key", attest.KindAzSNPVTPM, rebind(t, good, digest), exp(nil), "qualifying data"},
		{"quote signature altered", attest.KindAzSNPVTPM, resign(t, good, func(ev *attest.Evidence) { ev.VTPM.Signature[len(ev.VTPM.Signature)-1] ^= 1 }), exp(nil), "quote is not signed"},
		{"PCR value altered", attest.KindAzSNPVTPM, resign(t, good, func(ev *attest.Evidence) { ev.VTPM.PCRs[0][0] ^= 1 }), exp(nil), "PCR digest does not match"},
		{"report signed by an unknown chain", attest.KindAzSNPVTPM, good, exp(func(e *Expectations) { e.SNP.TrustedRoots = badRoots }), "SNP report signature"},
		{"tampered SNP report", attest.KindAzSNPVTPM, resign(t, good, func(ev *attest.Evidence) { ev.Report[hclHeaderSize+snpMeasurementOffset] ^= 1 }), exp(nil), "SNP report signature"},
		{"wrong measurement", attest.KindAzSNPVTPM, good, exp(func(e *Expectations) { e.SNP.Measurement = make([]byte, 48) }), "MEASUREMENT"},
		{"evidence relabelled snp", attest.KindAzSNPVTPM, resign(t, good, func(ev *attest.Evidence) { ev.Kind = attest.KindSNP; ev.VTPM = nil }), exp(nil), `kind "snp"`},
		{"snp verifier refuses az-snp-vtpm", attest.KindSNP, good, exp(nil), `kind "az-snp-vtpm"`},
		{"az-snp-vtpm verifier refuses snp", attest.KindAzSNPVTPM, snpCert, exp(nil), `kind "snp"`},
		{"az-snp-vtpm verifier refuses fake", attest.KindAzSNPVTPM, fakeCert(t, digest), exp(nil), `kind "fake"`},
		{"fake verifier refuses az-snp-vtpm", attest.KindFake, good, exp(nil), `kind "az-snp-vtpm"`},
		{"tdx verifier refuses az-snp-vtpm", attest.KindTDX, good, Expectations{InitdataDigest: digest}, `kind "az-snp-vtpm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkVerify(t, verifyCert(t, tt.kind, tt.want, tt.cert), tt.wantErr)
		})
	}
}

func TestAzVTPMBindInitdata(t *testing.T) {
	ctx := context.Background()
	digest := digestOf("initdata-a")
	s := newSimVTPM(t, newFakeSNP(t))
	a := s.attester(t)

	// PCR 8 already extended with something else this boot.
	s.extend(t, attest.InitdataPCR, digestOf("someone else"))
	if _, err := a.Certificate(ctx, digest); err == nil || !strings.Contains(err.Error(), "PCR 8") {
		t.Fatalf("Certificate with PCR 8 taken = %v, want an error naming PCR 8", err)
	}

	// After a reboot the PCR is reset and the attester binds initdata.
	if err := s.sim.Reset(); err != nil {
		t.Fatal(err)
	}
	cert, err := a.Certificate(ctx, digest)
	if err != nil {
		t.Fatalf("Certificate after reboot: %v", err)
	}
	pcr := [][]byte{readPCR(t, s.tpm, attest.InitdataPCR)}
	// SHA-256(zeros(32) || digest), computed here independently.
	h := sha256.New()
	h.Write(make([]byte, 32))
	h.Write(digest)
	if !bytes.Equal(pcr[0], h.Sum(nil)) {
		t.Fatalf("PCR 8 = %x, want SHA-256(zeros || digest) %x", pcr[0], h.Sum(nil))
	}
	if err := verifyCert(t, attest.KindAzSNPVTPM, Expectations{InitdataDigest: digest, SNP: &SNPExpectations{TrustedRoots: s.qp.roots()}}, cert); err != nil {
		t.Fatalf("VerifyPeer: %v", err)
	}

	// Other initdata in the same boot: the PCR is taken.
	if _, err := a.Certificate(ctx, digestOf("initdata-b")); err == nil || !strings.Contains(err.Error(), "PCR 8") {
		t.Fatalf("Certificate with other initdata in the same boot = %v", err)
	}
}

func TestAzVTPMNoInitdata(t *testing.T) {
	ctx := context.Background()
	s := newSimVTPM(t, newFakeSNP(t))
	cert, err := s.attester(t).Certificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	pcr := [][]byte{readPCR(t, s.tpm, attest.InitdataPCR)}
	if bytes.Equal(pcr[0], make([]byte, 32)) {
		t.Fatal("PCR 8 left at zero without initdata")
	}
	roots := s.qp.roots()
	if err := verifyCert(t, attest.KindAzSNPVTPM, Expectations{SNP: &SNPExpectations{TrustedRoots: roots}}, cert); err != nil {
		t.Fatalf("VerifyPeer without initdata: %v", err)
	}
	if err := verifyCert(t, attest.KindAzSNPVTPM, Expectations{InitdataDigest: digestOf("x"), SNP: &SNPExpectations{TrustedRoots: roots}}, cert); err == nil {
		t.Fatal("evidence without initdata accepted for initdata")
	}
}

func TestAzVTPMAttesterChecksAK(t *testing.T) {
	s := newSimVTPM(t, newFakeSNP(t))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.writeHCL(t, s.hclReport(t, s.claims(t, &other.PublicKey)))
	_, err = s.attester(t).Certificate(context.Background(), digestOf("x"))
	if err == nil || !strings.Contains(err.Error(), "HCLAkPub") {
		t.Fatalf("Certificate with a foreign AK in the claims = %v", err)
	}
}

func TestAzVTPMWithoutVCEK(t *testing.T) {
	s := newSimVTPM(t, newFakeSNP(t))
	a, err := attest.NewAzVTPMAttester(attest.AzVTPMConfig{TPM: s.tpm, FetchVCEK: func(context.Context) ([]byte, error) {
		return nil, http.ErrServerClosed
	}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.Certificate(context.Background(), digestOf("x"))
	if err != nil {
		t.Fatalf("Certificate when the VCEK cannot be fetched: %v", err)
	}
	ev, err := attest.EvidenceOf(cert.Leaf)
	if err != nil || len(ev.VTPM.VCEK) != 0 {
		t.Fatalf("evidence VCEK = %d bytes, %v", len(ev.VTPM.VCEK), err)
	}
}

func TestParseHCLReport(t *testing.T) {
	s := &simVTPM{qp: newFakeSNP(t)}
	ak, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := s.hclReport(t, s.claims(t, &ak.PublicKey))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name    string
		report  []byte
		wantErr string
	}{
		{"short", good[:100], "shorter than its fixed part"},
		{"bad signature", mut(func(b []byte) []byte { b[0] = 'X'; return b }), "signature"},
		{"TDX report", mut(func(b []byte) []byte { b[hclClaimsHeaderOff+8] = 4; return b }), "type is 4"},
		{"claims past the end", mut(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[hclClaimsHeaderOff+16:], uint32(len(b)))
			return b
		}), "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := attest.ParseHCLReport(tt.report)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseHCLReport = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	h, err := attest.ParseHCLReport(append(good, make([]byte, 500)...))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Raw) != len(good) {
		t.Fatalf("padding kept: %d bytes, want %d", len(h.Raw), len(good))
	}
	k, err := h.AKPublic()
	if err != nil || !k.Equal(&ak.PublicKey) {
		t.Fatalf("akPublic = %v, %v", k, err)
	}
	h.ClaimsHashType = 7
	if err := checkClaimsHash(h, make([]byte, 64)); err == nil || !strings.Contains(err.Error(), "hash type 7") {
		t.Fatalf("unknown hash type: %v", err)
	}
}

func TestTHIMVCEKFetcher(t *testing.T) {
	qp := newFakeSNP(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" {
			http.Error(w, "no Metadata header", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/broken" {
			_, _ = w.Write([]byte(`{"vcekCert":"not pem"}`))
			return
		}
		pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: qp.signer.Vcek.Raw})
		_ = json.NewEncoder(w).Encode(map[string]string{"vcekCert": string(pemCert), "certificateChain": ""})
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	der, err := attest.THIMVCEKFetcher(srv.URL+"/metadata/THIM/amd/certification", srv.Client())(ctx)
	if err != nil || !bytes.Equal(der, qp.signer.Vcek.Raw) {
		t.Fatalf("fetch = %d bytes, %v", len(der), err)
	}
	if _, err := attest.THIMVCEKFetcher(srv.URL+"/broken", srv.Client())(ctx); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Fatalf("broken answer: %v", err)
	}
}

func TestEvidenceVTPMOnlyForItsKind(t *testing.T) {
	enc := func(ev attest.Evidence) []byte { b, _ := json.Marshal(ev); return b }
	for _, ev := range []attest.Evidence{
		{Kind: attest.KindSNP, ReportData: make([]byte, 64), VTPM: &attest.VTPMQuote{}},
		{Kind: attest.KindAzSNPVTPM, ReportData: make([]byte, 64)},
	} {
		_, err := attest.EvidenceOf(&x509.Certificate{Extensions: []pkix.Extension{{Id: attest.EvidenceOID, Value: enc(ev)}}})
		if err == nil || !strings.Contains(err.Error(), "vtpm quote") {
			t.Fatalf("EvidenceOf(%s, vtpm %v) = %v", ev.Kind, ev.VTPM != nil, err)
		}
	}
}

func TestAzVTPMExpectationSizes(t *testing.T) {
	for _, want := range []Expectations{
		{SNP: &SNPExpectations{Measurement: make([]byte, 32)}},
		{VTPM: &VTPMExpectations{PCRs: map[int][]byte{24: make([]byte, 32)}}},
		{VTPM: &VTPMExpectations{PCRs: map[int][]byte{0: make([]byte, 48)}}},
	} {
		if _, err := NewVerifier(attest.KindAzSNPVTPM, want); err == nil {
			t.Fatalf("NewVerifier accepted %+v", want)
		}
	}
}

// readPCR reads one PCR of the SHA-256 bank.
func readPCR(t *testing.T, tpm transport.TPM, pcr uint) []byte {
	t.Helper()
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(pcr),
	}}}}.Execute(tpm)
	if err != nil {
		t.Fatalf("read PCR %d: %v", pcr, err)
	}
	if len(rsp.PCRValues.Digests) != 1 {
		t.Fatalf("read PCR %d: %d values", pcr, len(rsp.PCRValues.Digests))
	}
	return rsp.PCRValues.Digests[0].Buffer
}
