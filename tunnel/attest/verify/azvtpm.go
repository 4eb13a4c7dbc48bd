package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"slices"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-tpm/tpm2"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// VTPMExpectations are the vTPM checks the node makes beyond the quote's
// signature, qualifying data and the initdata PCR.
type VTPMExpectations struct {
	// PCRs maps a PCR index to its expected SHA-256 value; each must be in
	// the quote. PCR 8 is always checked against the expected initdata.
	PCRs map[int][]byte
}

func newAzVTPMVerifier(want Expectations) (tunnel.Verifier, error) {
	if want.SNP != nil {
		if n := len(want.SNP.Measurement); n != 0 && n != abi.MeasurementSize {
			return nil, fmt.Errorf("attest %s: expected measurement is %d bytes, want %d", attest.KindAzSNPVTPM, n, abi.MeasurementSize)
		}
		if n := len(want.SNP.HostData); n != 0 && n != abi.HostDataSize {
			return nil, fmt.Errorf("attest %s: expected host data is %d bytes, want %d", attest.KindAzSNPVTPM, n, abi.HostDataSize)
		}
	}
	if want.VTPM != nil {
		for i, v := range want.VTPM.PCRs {
			if i < 0 || i >= attest.QuotePCRCount || len(v) != sha256.Size {
				return nil, fmt.Errorf("attest %s: expected PCR %d: index 0-23 and a %d-byte value required", attest.KindAzSNPVTPM, i, sha256.Size)
			}
		}
	}
	return &certVerifier{kind: attest.KindAzSNPVTPM, want: want, check: verifyAzVTPM}, nil
}

// verifyAzVTPM checks az-snp-vtpm evidence whose ReportData the caller has
// already matched to the certificate's key and the expected initdata: the
// SNP report up to AMD's root, its REPORT_DATA against the runtime claims,
// the quote's signature by the claims' AK, its qualifying data, PCR
// selection and digest, and PCR 8 against the expected initdata.
func verifyAzVTPM(ctx context.Context, ev *attest.Evidence, want Expectations) error {
	q := ev.VTPM
	if q == nil {
		return errors.New("evidence has no vTPM quote")
	}
	hcl, err := attest.ParseHCLReport(ev.Report)
	if err != nil {
		return err
	}
	rep, err := abi.ReportToProto(hcl.SNPReport)
	if err != nil {
		return fmt.Errorf("parse SNP report in the HCL report: %w", err)
	}
	att := &spb.Attestation{Report: rep}
	if len(q.VCEK) != 0 {
		att.CertificateChain = &spb.CertificateChain{VcekCert: q.VCEK}
	}
	vmpl := 0 // the paravisor asks for the report at VMPL 0
	if err := checkSNPReport(ctx, att, nil, want.SNP, &vmpl); err != nil {
		return err
	}
	if err := checkClaimsHash(hcl, rep.GetReportData()); err != nil {
		return err
	}
	ak, err := hcl.AKPublic()
	if err != nil {
		return err
	}
	quoted, err := checkQuoteSignature(ak, q)
	if err != nil {
		return err
	}
	return checkQuote(quoted, q, ev.ReportData, want)
}

// checkClaimsHash checks that REPORT_DATA starts with the hash of the
// runtime claims, by the hash type the claims header names.
func checkClaimsHash(h *attest.HCLReport, reportData []byte) error {
	var sum []byte
	switch h.ClaimsHashType {
	case attest.HCLHashSHA256:
		s := sha256.Sum256(h.Claims)
		sum = s[:]
	case attest.HCLHashSHA384:
		s := sha512.Sum384(h.Claims)
		sum = s[:]
	case attest.HCLHashSHA512:
		s := sha512.Sum512(h.Claims)
		sum = s[:]
	default:
		return fmt.Errorf("HCL report claims hash type %d is not SHA-256 (1), SHA-384 (2) or SHA-512 (3)", h.ClaimsHashType)
	}
	if !bytes.Equal(reportData[:len(sum)], sum) {
		return fmt.Errorf("SNP REPORT_DATA[0:%d] %x is not the hash of the HCL runtime claims %x", len(sum), reportData[:len(sum)], sum)
	}
	return nil
}

// checkQuoteSignature verifies the TPMT_SIGNATURE over the TPMS_ATTEST
// bytes with the AK and returns the decoded TPMS_ATTEST.
func checkQuoteSignature(ak *rsa.PublicKey, q *attest.VTPMQuote) (*tpm2.TPMSAttest, error) {
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](q.Signature)
	if err != nil {
		return nil, fmt.Errorf("decode quote signature: %w", err)
	}
	var rs *tpm2.TPMSSignatureRSA
	switch sig.SigAlg {
	case tpm2.TPMAlgRSASSA:
		rs, err = sig.Signature.RSASSA()
	case tpm2.TPMAlgRSAPSS:
		rs, err = sig.Signature.RSAPSS()
	default:
		return nil, fmt.Errorf("quote signature algorithm %#x is not RSASSA or RSAPSS", uint16(sig.SigAlg))
	}
	if err != nil {
		return nil, fmt.Errorf("decode quote signature: %w", err)
	}
	ch, hf, err := tpmHash(rs.Hash)
	if err != nil {
		return nil, fmt.Errorf("quote signature: %w", err)
	}
	hf.Write(q.Attest)
	digest := hf.Sum(nil)
	if sig.SigAlg == tpm2.TPMAlgRSASSA {
		err = rsa.VerifyPKCS1v15(ak, ch, digest, rs.Sig.Buffer)
	} else {
		err = rsa.VerifyPSS(ak, ch, digest, rs.Sig.Buffer, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("quote is not signed by the AK %s of the HCL runtime claims: %w", attest.AzureAKKeyID, err)
	}
	quoted, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		return nil, fmt.Errorf("decode quote TPMS_ATTEST: %w", err)
	}
	return quoted, nil
}

func tpmHash(alg tpm2.TPMIAlgHash) (crypto.Hash, hash.Hash, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, sha256.New(), nil
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, sha512.New384(), nil
	case tpm2.TPMAlgSHA512:
		return crypto.SHA512, sha512.New(), nil
	}
	return 0, nil, fmt.Errorf("hash algorithm %#x is not SHA-256, SHA-384 or SHA-512", uint16(alg))
}

// checkQuote checks the signed TPMS_ATTEST: a TPM-generated quote over
// QuoteQualifyingData(reportData), selecting SHA-256 PCRs that include PCR
// 8, whose digest matches the reported values, with PCR 8 the one extension
// of the expected initdata digest and any expected PCR values.
func checkQuote(quoted *tpm2.TPMSAttest, q *attest.VTPMQuote, reportData []byte, want Expectations) error {
	if quoted.Magic != tpm2.TPMGeneratedValue {
		return fmt.Errorf("quote magic is %#x, want %#x (TPM_GENERATED_VALUE)", uint32(quoted.Magic), uint32(tpm2.TPMGeneratedValue))
	}
	if quoted.Type != tpm2.TPMSTAttestQuote {
		return fmt.Errorf("TPMS_ATTEST type is %#x, want %#x (TPM_ST_ATTEST_QUOTE)", uint16(quoted.Type), uint16(tpm2.TPMSTAttestQuote))
	}
	if wantQD := attest.QuoteQualifyingData(reportData); !bytes.Equal(quoted.ExtraData.Buffer, wantQD) {
		return fmt.Errorf("quote qualifying data %x does not bind this certificate's key and the expected initdata digest (want %x)", quoted.ExtraData.Buffer, wantQD)
	}
	info, err := quoted.Attested.Quote()
	if err != nil {
		return fmt.Errorf("decode quote info: %w", err)
	}
	sels := info.PCRSelect.PCRSelections
	if len(sels) != 1 || sels[0].Hash != tpm2.TPMAlgSHA256 {
		return errors.New("quote PCR selection is not exactly one SHA-256 bank")
	}
	pcrs := attest.SelectedPCRs(sels[0].PCRSelect)
	if len(pcrs) != len(q.PCRs) {
		return fmt.Errorf("quote selects %d PCRs, the evidence reports %d values", len(pcrs), len(q.PCRs))
	}
	// The TPM digests the PCRs with the signing scheme's hash; the AK of
	// Azure's vTPM signs with SHA-256.
	h := sha256.New()
	for i, v := range q.PCRs {
		if len(v) != sha256.Size {
			return fmt.Errorf("reported PCR %d is %d bytes, want %d", pcrs[i], len(v), sha256.Size)
		}
		h.Write(v)
	}
	if !bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
		return errors.New("quote PCR digest does not match the reported PCR values")
	}
	value := func(pcr int) []byte {
		if i := slices.Index(pcrs, uint(pcr)); i >= 0 {
			return q.PCRs[i]
		}
		return nil
	}
	got := value(attest.InitdataPCR)
	if got == nil {
		return fmt.Errorf("quote does not cover PCR %d (initdata)", attest.InitdataPCR)
	}
	if exp := attest.InitdataPCRValue(want.InitdataDigest); !bytes.Equal(got, exp) {
		return fmt.Errorf("PCR %d is %x, not the one extension of the expected initdata digest %x (%x)", attest.InitdataPCR, got, want.InitdataDigest, exp)
	}
	if want.VTPM != nil {
		idx := make([]int, 0, len(want.VTPM.PCRs))
		for i := range want.VTPM.PCRs {
			idx = append(idx, i)
		}
		slices.Sort(idx)
		for _, i := range idx {
			got := value(i)
			if got == nil {
				return fmt.Errorf("quote does not cover expected PCR %d", i)
			}
			if !bytes.Equal(got, want.VTPM.PCRs[i]) {
				return fmt.Errorf("PCR %d is %x, want %x", i, got, want.VTPM.PCRs[i])
			}
		}
	}
	return nil
}
