package tunnel

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	okTLS := &tls.Config{}
	verifier := VerifierFunc(func(context.Context, tls.ConnectionState) error { return nil })
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring naming the field; "" means valid
	}{
		{"zero fields take defaults", Config{TLS: okTLS}, ""},
		{"all set", Config{TLS: okTLS, StreamWindow: 1 << 20, AcceptBacklog: 8, KeepAliveInterval: time.Second,
			ConnectionWriteTimeout: time.Second, StreamOpenTimeout: time.Second, StreamCloseTimeout: time.Second,
			HeaderTimeout: time.Second, MaxHeaderSize: 512, HandshakeTimeout: time.Second}, ""},
		{"no TLS", Config{}, "Config.TLS is required"},
		{"TLS 1.2 max", Config{TLS: &tls.Config{MaxVersion: tls.VersionTLS12}}, "Config.TLS.MaxVersion"},
		{"insecure without verifier", Config{TLS: &tls.Config{InsecureSkipVerify: true}}, "InsecureSkipVerify"},
		{"insecure with verifier", Config{TLS: &tls.Config{InsecureSkipVerify: true}, Verifier: verifier}, ""},
		{"small window", Config{TLS: okTLS, StreamWindow: 1024}, "Config.StreamWindow"},
		{"negative backlog", Config{TLS: okTLS, AcceptBacklog: -1}, "Config.AcceptBacklog"},
		{"tiny header size", Config{TLS: okTLS, MaxHeaderSize: 16}, "Config.MaxHeaderSize"},
		{"huge header size", Config{TLS: okTLS, MaxHeaderSize: 1 << 20}, "Config.MaxHeaderSize"},
		{"negative keepalive", Config{TLS: okTLS, KeepAliveInterval: -1}, "Config.KeepAliveInterval"},
		{"negative write timeout", Config{TLS: okTLS, ConnectionWriteTimeout: -1}, "Config.ConnectionWriteTimeout"},
		{"negative open timeout", Config{TLS: okTLS, StreamOpenTimeout: -1}, "Config.StreamOpenTimeout"},
		{"negative close timeout", Config{TLS: okTLS, StreamCloseTimeout: -1}, "Config.StreamCloseTimeout"},
		{"negative header timeout", Config{TLS: okTLS, HeaderTimeout: -1}, "Config.HeaderTimeout"},
		{"negative handshake timeout", Config{TLS: okTLS, HandshakeTimeout: -1}, "Config.HandshakeTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error naming %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %v, want it to name %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultsAndTLSPinned(t *testing.T) {
	in := &tls.Config{MinVersion: tls.VersionTLS10}
	c, err := Config{TLS: in}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS == in || in.MinVersion != tls.VersionTLS10 {
		t.Fatal("the caller's tls.Config was modified, not cloned")
	}
	if c.TLS.MinVersion != tls.VersionTLS13 {
		t.Fatalf("MinVersion = %x, want TLS 1.3", c.TLS.MinVersion)
	}
	if c.StreamWindow != 16<<20 || c.AcceptBacklog != 256 || c.MaxHeaderSize != 4096 ||
		c.HeaderTimeout != 5*time.Second || c.KeepAliveInterval != 10*time.Second || c.Logger == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestRefusedConfigs(t *testing.T) {
	pki := newTestPKI(t)
	ctx := context.Background()

	insecure := pki.client
	insecure.TLS = &tls.Config{InsecureSkipVerify: true, Certificates: pki.client.TLS.Certificates}
	if _, err := Dial(ctx, "127.0.0.1:1", insecure); err == nil || !strings.Contains(err.Error(), "InsecureSkipVerify") {
		t.Errorf("Dial with InsecureSkipVerify and no Verifier = %v, want refusal", err)
	}
	noCert := pki.client
	noCert.TLS = &tls.Config{RootCAs: pki.ca.pool}
	if _, err := Dial(ctx, "127.0.0.1:1", noCert); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("Dial without a certificate = %v, want refusal", err)
	}
	noCAs := pki.server
	noCAs.TLS = &tls.Config{Certificates: pki.server.TLS.Certificates}
	if _, err := NewServer(noCAs); err == nil || !strings.Contains(err.Error(), "ClientCAs") {
		t.Errorf("NewServer without ClientCAs = %v, want refusal", err)
	}
	anyCert := noCAs
	anyCert.TLS = &tls.Config{Certificates: pki.server.TLS.Certificates, ClientAuth: tls.RequireAnyClientCert}
	if _, err := NewServer(anyCert); err == nil || !strings.Contains(err.Error(), "Verifier") {
		t.Errorf("NewServer with RequireAnyClientCert and no Verifier = %v, want refusal", err)
	}
	perClient := pki.server
	perClient.TLS = pki.server.TLS.Clone()
	perClient.TLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }
	if _, err := NewServer(perClient); err == nil || !strings.Contains(err.Error(), "GetConfigForClient") {
		t.Errorf("NewServer with GetConfigForClient = %v, want refusal", err)
	}
	noServerCert := pki.server
	noServerCert.TLS = &tls.Config{ClientCAs: pki.ca.pool}
	if _, err := NewServer(noServerCert); err == nil || !strings.Contains(err.Error(), "server certificate") {
		t.Errorf("NewServer without a certificate = %v, want refusal", err)
	}
}
