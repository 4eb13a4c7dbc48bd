// Package attest makes and checks the attested TLS certificates of the pod VM:
// the agent's key is made inside the VM and its self-signed certificate carries
// hardware evidence (TDX, SNP, or an explicitly fake kind for CI) whose report
// data binds that key and the initdata digest. The node verifies the evidence
// through the tunnel's Verifier hook before it opens a single stream.
package attest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/peerpod/peerpod/tunnel"
)

// Evidence kinds.
const (
	KindFake = "fake"
	KindTDX  = "tdx"
	KindSNP  = "snp"
	// KindAzSNPVTPM is SEV-SNP on Azure, where the report reaches the guest
	// through the paravisor's vTPM and a vTPM quote carries the binding.
	KindAzSNPVTPM = "az-snp-vtpm"
)

// kindList names the evidence kinds for error messages.
const kindList = "fake, tdx, snp or az-snp-vtpm"

// ErrAttestation marks every verification failure, so callers can classify
// a refused tunnel as an attestation error (errors.Is).
var ErrAttestation = errors.New("attestation failed")

// Attester runs in the VM.
type Attester interface {
	// Kind is "fake", "tdx", "snp" or "az-snp-vtpm".
	Kind() string
	// Certificate makes a fresh ECDSA P-256 key inside the VM and returns a
	// self-signed TLS certificate carrying evidence whose report data binds
	// the public key and initdataDigest.
	Certificate(ctx context.Context, initdataDigest []byte) (tls.Certificate, error)
}

// Verifier is the tunnel's peer check; attest's verifiers plug into
// tunnel.Config.Verifier.
type Verifier = tunnel.Verifier

// NewAttester returns the attester of kind ("fake", "tdx", "snp",
// "az-snp-vtpm"). The TEE kinds open the guest's attestation device (the
// vTPM for az-snp-vtpm); they fail outside such a guest.
func NewAttester(kind string) (Attester, error) {
	switch kind {
	case KindFake:
		return FakeAttester{}, nil
	case KindTDX:
		return newTDXAttester()
	case KindSNP:
		return newSNPAttester()
	case KindAzSNPVTPM:
		return newAzVTPMAttester()
	case "":
		return nil, errors.New("attest: attester kind is empty (want " + kindList + ")")
	default:
		return nil, fmt.Errorf("attest: unknown attester kind %q (want %s)", kind, kindList)
	}
}

// Expectations are what the node requires of a VM's evidence.
type Expectations struct {
	// InitdataDigest is the digest of the VM's initdata TOML (api/initdata);
	// empty when the pod has no initdata. It is bound through report data.
	InitdataDigest []byte
	// TDX holds the TDX measurement checks; nil checks only the quote's
	// signature chain and report data.
	TDX *TDXExpectations
	// SNP holds the SEV-SNP measurement checks (also of az-snp-vtpm's
	// report); nil checks only the report's signature chain and report data.
	SNP *SNPExpectations
	// VTPM holds expected PCR values for az-snp-vtpm; nil checks the quote
	// and the initdata PCR only.
	VTPM *VTPMExpectations
}

// NewVerifier returns the node-side verifier for evidence of kind. A verifier
// accepts only evidence of its own kind: a tdx or snp verifier never accepts
// fake evidence.
func NewVerifier(kind string, want Expectations) (tunnel.Verifier, error) {
	switch kind {
	case KindFake:
		return &certVerifier{kind: KindFake, want: want, check: verifyFake}, nil
	case KindTDX:
		return newTDXVerifier(want)
	case KindSNP:
		return newSNPVerifier(want)
	case KindAzSNPVTPM:
		return newAzVTPMVerifier(want)
	case "":
		return nil, errors.New("attest: verifier kind is empty (want " + kindList + ")")
	default:
		return nil, fmt.Errorf("attest: unknown verifier kind %q (want %s)", kind, kindList)
	}
}
