// Package attest makes the attested TLS certificates of the pod VM: the
// agent's key is made inside the VM and its self-signed certificate carries
// hardware evidence (TDX, SNP, or an explicitly fake kind for CI) whose report
// data binds that key and the initdata digest. It also defines that evidence.
// The node checks it with package verify, through the tunnel's Verifier hook,
// before it opens a single stream; the VM links only this package, none of
// the verifiers' trust roots and collateral code.
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

// Verifier is the tunnel's peer check; package verify's verifiers plug into
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
