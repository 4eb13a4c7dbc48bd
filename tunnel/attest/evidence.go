package attest

import (
	"bytes"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
)

// EvidenceOID is the X.509 extension that carries Evidence in the VM's
// certificate: 1.3.6.1.3.7337.1 (an arc of the IANA "experimental" subtree,
// 1.3.6.1.3; not registered). The extension is non-critical and its value is
// the JSON encoding of Evidence (see docs/security.md).
var EvidenceOID = asn1.ObjectIdentifier{1, 3, 6, 1, 3, 7337, 1}

// ReportDataSize is the size of the report data field of TDX and SNP reports.
const ReportDataSize = 64

// maxEvidenceSize bounds the extension a verifier is willing to parse.
const maxEvidenceSize = 256 << 10

// Evidence is what the VM's certificate carries.
type Evidence struct {
	// Kind is "fake", "tdx", "snp" or "az-snp-vtpm".
	Kind string `json:"kind"`
	// ReportData is ReportDataFor(certificate SPKI, initdata digest), 64 bytes.
	ReportData []byte `json:"report_data"`
	// Report is the raw hardware evidence: a TDX quote (v4), an SNP
	// attestation report (1184 bytes), for az-snp-vtpm the HCL report read
	// from the vTPM (up to the end of its runtime claims), or for kind
	// "fake" the fake signature FakeSignature(ReportData).
	Report []byte `json:"report"`
	// Certs is, for SNP, the certificate table the host returned with the
	// extended report (VCEK/VLEK, ASK, ARK), in the GHCB layout; may be empty.
	Certs []byte `json:"certs,omitempty"`
	// VTPM is, for az-snp-vtpm only, the vTPM quote whose qualifying data is
	// QuoteQualifyingData(ReportData).
	VTPM *VTPMQuote `json:"vtpm,omitempty"`
}

// ReportDataFor is the report data a VM puts in its evidence:
// SHA-512(spkiDER || initdataDigest), where spkiDER is the DER
// SubjectPublicKeyInfo of the certificate's key and initdataDigest the raw
// initdata digest bytes (empty without initdata).
func ReportDataFor(spkiDER, initdataDigest []byte) []byte {
	h := sha512.New()
	h.Write(spkiDER)
	h.Write(initdataDigest)
	return h.Sum(nil)
}

// EvidenceOf returns the evidence carried by cert, for status output and
// verification. It does not verify anything.
func EvidenceOf(cert *x509.Certificate) (*Evidence, error) {
	if cert == nil {
		return nil, errors.New("attest: no certificate")
	}
	var raw []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(EvidenceOID) {
			if raw != nil {
				return nil, fmt.Errorf("attest: certificate has two evidence extensions (%s)", EvidenceOID)
			}
			raw = ext.Value
		}
	}
	if raw == nil {
		return nil, fmt.Errorf("attest: certificate has no evidence extension (%s)", EvidenceOID)
	}
	if len(raw) > maxEvidenceSize {
		return nil, fmt.Errorf("attest: evidence extension is %d bytes, more than %d", len(raw), maxEvidenceSize)
	}
	var ev Evidence
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("attest: decode evidence extension: %w", err)
	}
	switch ev.Kind {
	case KindFake, KindTDX, KindSNP, KindAzSNPVTPM:
	default:
		return nil, fmt.Errorf("attest: evidence kind %q is not one of fake, tdx, snp, az-snp-vtpm", ev.Kind)
	}
	if (ev.VTPM != nil) != (ev.Kind == KindAzSNPVTPM) {
		return nil, fmt.Errorf("attest: evidence of kind %q must carry a vtpm quote exactly when it is %s", ev.Kind, KindAzSNPVTPM)
	}
	if len(ev.ReportData) != ReportDataSize {
		return nil, fmt.Errorf("attest: evidence report_data is %d bytes, want %d", len(ev.ReportData), ReportDataSize)
	}
	return &ev, nil
}

func (e *Evidence) marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("attest: encode evidence: %w", err)
	}
	return b, nil
}
