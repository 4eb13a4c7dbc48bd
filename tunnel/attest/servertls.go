package attest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerTLS is the pod VM side of the tunnel's TLS: a certificate made by
// att, whose evidence binds initdataDigest, and client certificates that the
// CA in clientCAPEM (the node's tunnel CA from user data) must have signed.
func ServerTLS(ctx context.Context, att Attester, initdataDigest []byte, clientCAPEM string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(clientCAPEM)) {
		return nil, errors.New("tunnel CA: no PEM certificate")
	}
	cert, err := att.Certificate(ctx, initdataDigest)
	if err != nil {
		return nil, fmt.Errorf("attested certificate (%s): %w", att.Kind(), err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}
