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
)

// ErrAttestation marks every verification failure, so callers can classify
// a refused tunnel as an attestation error (errors.Is).
var ErrAttestation = errors.New("attestation failed")

// Attester runs in the VM.
type Attester interface {
	// Kind is "fake", "tdx" or "snp".
	Kind() string
	// Certificate makes a fresh ECDSA P-256 key inside the VM and returns a
	// self-signed TLS certificate carrying evidence whose report data binds
	// the public key and initdataDigest.
	Certificate(ctx context.Context, initdataDigest []byte) (tls.Certificate, error)
}

// Verifier is the tunnel's peer check; attest's verifiers plug into
// tunnel.Config.Verifier.
type Verifier = tunnel.Verifier

// NewAttester returns the attester of kind ("fake", "tdx", "snp"). The TEE
// kinds open the guest's attestation device; they fail outside such a guest.
func NewAttester(kind string) (Attester, error) {
	switch kind {
	case KindFake:
		return FakeAttester{}, nil
	case KindTDX:
		return newTDXAttester()
	case KindSNP:
		return newSNPAttester()
	case "":
		return nil, errors.New("attest: attester kind is empty (want fake, tdx or snp)")
	default:
		return nil, fmt.Errorf("attest: unknown attester kind %q (want fake, tdx or snp)", kind)
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
	// SNP holds the SEV-SNP measurement checks; nil checks only the report's
	// signature chain and report data.
	SNP *SNPExpectations
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
	case "":
		return nil, errors.New("attest: verifier kind is empty (want fake, tdx or snp)")
	default:
		return nil, fmt.Errorf("attest: unknown verifier kind %q (want fake, tdx or snp)", kind)
	}
}
