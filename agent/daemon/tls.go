package daemon

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// ServerTLS makes the agent's TLS configuration: a certificate whose key is
// made here and whose attestation evidence binds the initdata digest, and
// client certificates required to be signed by the user data's tunnel CA.
// It also returns the parsed initdata (nil when there is none).
func ServerTLS(ctx context.Context, cfg *userdata.Config) (*tls.Config, *initdata.Initdata, error) {
	var in *initdata.Initdata
	var digest []byte
	if cfg.Initdata != "" {
		var err error
		if in, err = initdata.Parse([]byte(cfg.Initdata)); err != nil {
			return nil, nil, fmt.Errorf("user data initdata: %w", err)
		}
		digest = in.Digest()
	}
	att, err := attest.NewAttester(cfg.Attester)
	if err != nil {
		return nil, nil, fmt.Errorf("attester %q: %w", cfg.Attester, err)
	}
	t, err := attest.ServerTLS(ctx, att, digest, cfg.TunnelCA)
	if err != nil {
		return nil, nil, fmt.Errorf("user data: %w", err)
	}
	return t, in, nil
}
