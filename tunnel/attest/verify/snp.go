package verify

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// SNPExpectations are the SEV-SNP checks the node makes beyond the report's
// signature chain and report data. A nil or empty field is not checked.
type SNPExpectations struct {
	// Measurement is the launch measurement (48 bytes).
	Measurement []byte
	// HostData is the HOST_DATA the launcher set (32 bytes); where peerpod
	// launches the VM itself it is initdata.Fit(digest, 32).
	HostData []byte
	// AllowDebug accepts guests whose policy allows debugging (never for
	// production).
	AllowDebug bool
	// TrustedRoots replaces AMD's published ARK/ASK roots (tests only).
	TrustedRoots map[string][]*trust.AMDRootCerts
	// Getter fetches the VCEK from AMD's KDS when the host supplied no
	// certificate table; nil uses HTTPS.
	Getter trust.HTTPSGetter
}

func newSNPVerifier(want Expectations) (tunnel.Verifier, error) {
	if want.SNP != nil {
		if n := len(want.SNP.Measurement); n != 0 && n != abi.MeasurementSize {
			return nil, fmt.Errorf("attest snp: expected measurement is %d bytes, want %d", n, abi.MeasurementSize)
		}
		if n := len(want.SNP.HostData); n != 0 && n != abi.HostDataSize {
			return nil, fmt.Errorf("attest snp: expected host data is %d bytes, want %d", n, abi.HostDataSize)
		}
	}
	return &certVerifier{kind: attest.KindSNP, want: want, check: verifySNP}, nil
}

// verifySNP checks the report's signature up to AMD's root (or the trusted
// roots given), that it carries ev.ReportData, and the expectations.
func verifySNP(ctx context.Context, ev *attest.Evidence, want Expectations) error {
	if len(ev.Report) != abi.ReportSize {
		return fmt.Errorf("SNP report is %d bytes, want %d", len(ev.Report), abi.ReportSize)
	}
	att, err := abi.ReportCertsToProto(append(append([]byte(nil), ev.Report...), ev.Certs...))
	if err != nil {
		return fmt.Errorf("parse SNP report: %w", err)
	}
	return checkSNPReport(ctx, att, ev.ReportData, want.SNP, nil)
}

// checkSNPReport verifies att's report signature up to AMD's root (or the
// trusted roots in exp) and validates its contents: reportData when non-nil,
// exp's measurement and host data, the guest policy, and vmpl when non-nil.
func checkSNPReport(ctx context.Context, att *spb.Attestation, reportData []byte, exp *SNPExpectations, vmpl *int) error {
	if exp == nil {
		exp = &SNPExpectations{}
	}
	vopts := sevverify.DefaultOptions()
	vopts.Now = time.Now()
	vopts.CheckRevocations = false
	if exp.TrustedRoots != nil {
		vopts.TrustedRoots = exp.TrustedRoots
	}
	if exp.Getter != nil {
		vopts.Getter = exp.Getter
	}
	// With the endorsement key's certificate at hand there is nothing to
	// fetch: the ASK and ARK come from the trusted roots, never the chain.
	if ch := att.GetCertificateChain(); len(ch.GetVcekCert()) != 0 || len(ch.GetVlekCert()) != 0 {
		vopts.DisableCertFetching = true
	}
	if err := sevverify.SnpAttestationContext(ctx, att, vopts); err != nil {
		return fmt.Errorf("SNP report signature: %w", err)
	}
	if err := validate.SnpAttestation(att, &validate.Options{
		ReportData:  reportData,
		HostData:    exp.HostData,
		Measurement: exp.Measurement,
		GuestPolicy: abi.SnpPolicy{SMT: true, Debug: exp.AllowDebug},
		VMPL:        vmpl,
	}); err != nil {
		return fmt.Errorf("SNP report contents: %w", err)
	}
	return nil
}
