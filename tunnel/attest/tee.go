package attest

import "fmt"

// TDXExpectations are the TDX measurements the node requires; a nil or empty
// field is not checked.
type TDXExpectations struct {
	MRTD       []byte    // 48 bytes
	RTMRs      [4][]byte // 48 bytes each
	MRConfigID []byte    // 48 bytes; the launcher sets it to the initdata digest where it can
}

// SNPExpectations are the SEV-SNP measurements the node requires; a nil or
// empty field is not checked.
type SNPExpectations struct {
	Measurement []byte // 48 bytes
	HostData    []byte // 32 bytes; the launcher sets it to the initdata digest where it can
}

func newTDXAttester() (Attester, error) {
	return nil, fmt.Errorf("attest: tdx attester is not available in this build yet")
}

func newSNPAttester() (Attester, error) {
	return nil, fmt.Errorf("attest: snp attester is not available in this build yet")
}

func newTDXVerifier(Expectations) (Verifier, error) {
	return nil, fmt.Errorf("attest: tdx verifier is not available in this build yet")
}

func newSNPVerifier(Expectations) (Verifier, error) {
	return nil, fmt.Errorf("attest: snp verifier is not available in this build yet")
}
