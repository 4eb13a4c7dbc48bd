// Package userdata is the pod VM's boot configuration: what peerpodd puts in
// a VM's user data and podvm-agent reads at start, and the secrets peerpodd
// sends later through the attested tunnel (never in user data).
package userdata

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the format version written by this package.
const Version = 1

// DefaultListenPort is the TCP port the agent's tunnel listener uses
// (cloud-api-adaptor's FORWARDER_PORT).
const DefaultListenPort = 15150

// Attester names the kind of attestation evidence the agent must produce.
const (
	AttesterFake = "fake" // clearly fake evidence, for CI and hosts without TEE hardware
	AttesterTDX  = "tdx"
	AttesterSNP  = "snp"
	// AttesterAzSNPVTPM is SEV-SNP on Azure: the report comes through the
	// paravisor's vTPM and initdata is bound into a vTPM PCR.
	AttesterAzSNPVTPM = "az-snp-vtpm"
)

// Config is the agent's boot configuration. It holds nothing secret: user data
// is readable by the cloud operator, whom the trust model does not trust.
type Config struct {
	// Version of this format (Version).
	Version int `json:"version"`
	// SandboxID is the Kata sandbox the VM serves.
	SandboxID string `json:"sandbox_id"`
	// VMName is the VM's name; the agent uses it as the VM hostname.
	VMName string `json:"vm_name"`
	// ListenPort is the tunnel listener's TCP port (0 = DefaultListenPort).
	ListenPort int `json:"listen_port,omitempty"`
	// TunnelCA is the PEM certificate of the node CA that signs peerpodd's
	// client certificates; the agent accepts only clients it signed.
	TunnelCA string `json:"tunnel_ca"`
	// Attester is the evidence the agent must put in its certificate.
	Attester string `json:"attester"`
	// Initdata is the initdata TOML text (uncompressed), "" when none.
	Initdata string `json:"initdata,omitempty"`
	// Warm marks a VM booted ahead of any pod, for a node's warm pool: it
	// has no sandbox and no initdata yet and waits for them (see
	// Provisioned) before it makes its attested certificate.
	Warm bool `json:"warm,omitempty"`
}

// Secrets are sent by peerpodd over a "config" tunnel stream once the VM's
// evidence has been verified.
type Secrets struct {
	// AuthJSON is a containers-auth.json document with registry credentials.
	AuthJSON json.RawMessage `json:"auth_json,omitempty"`
}

// Validate checks that c is complete enough for an agent to start.
func (c *Config) Validate() error {
	switch {
	case c.Version != Version:
		return fmt.Errorf("userdata: version %d, want %d", c.Version, Version)
	case c.Warm && c.SandboxID != "":
		return errors.New("userdata: a warm VM has no sandbox_id yet")
	case c.Warm && c.Initdata != "":
		return errors.New("userdata: a warm VM has no initdata yet")
	case !c.Warm && c.SandboxID == "":
		return errors.New("userdata: sandbox_id is empty")
	case c.TunnelCA == "":
		return errors.New("userdata: tunnel_ca is empty")
	case c.ListenPort < 0 || c.ListenPort > 65535:
		return fmt.Errorf("userdata: listen_port %d out of range", c.ListenPort)
	}
	switch c.Attester {
	case AttesterFake, AttesterTDX, AttesterSNP, AttesterAzSNPVTPM:
	default:
		return fmt.Errorf("userdata: attester %q is not one of fake, tdx, snp, az-snp-vtpm", c.Attester)
	}
	return nil
}

// Provisioned checks that pod, the configuration a node sends to the warm
// VM booted with c, completes c: it is for a sandbox, and keeps c's tunnel
// CA, attester and port, which the node cannot change after boot.
func (c *Config) Provisioned(pod *Config) error {
	if err := pod.Validate(); err != nil {
		return err
	}
	switch {
	case !c.Warm:
		return errors.New("userdata: this VM was booted for a sandbox, not warm")
	case pod.Warm:
		return errors.New("userdata: the configuration sent to a warm VM must name its sandbox")
	case pod.TunnelCA != c.TunnelCA:
		return errors.New("userdata: tunnel_ca differs from the one the VM booted with")
	case pod.Attester != c.Attester:
		return fmt.Errorf("userdata: attester %q differs from %q the VM booted with", pod.Attester, c.Attester)
	case pod.Port() != c.Port():
		return fmt.Errorf("userdata: listen_port %d differs from %d the VM booted with", pod.Port(), c.Port())
	}
	return nil
}

// Port returns the listener port, applying the default.
func (c *Config) Port() int {
	if c.ListenPort == 0 {
		return DefaultListenPort
	}
	return c.ListenPort
}

var gzipMagic = []byte{0x1f, 0x8b}

// Encode renders c as JSON, gzipped when that is smaller.
func Encode(c *Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("userdata: encode: %w", err)
	}
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestCompression)
	if _, err := zw.Write(plain); err != nil {
		return nil, fmt.Errorf("userdata: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("userdata: gzip: %w", err)
	}
	if zb.Len() < len(plain) {
		return zb.Bytes(), nil
	}
	return plain, nil
}

// MaxDecodedSize bounds what Decode inflates, against gzip bombs.
const MaxDecodedSize = 4 << 20

// Decode parses user data written by Encode (plain or gzipped JSON) and validates it.
func Decode(b []byte) (*Config, error) {
	if bytes.HasPrefix(b, gzipMagic) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("userdata: gunzip: %w", err)
		}
		b, err = io.ReadAll(io.LimitReader(zr, MaxDecodedSize+1))
		if err != nil {
			return nil, fmt.Errorf("userdata: gunzip: %w", err)
		}
		if len(b) > MaxDecodedSize {
			return nil, fmt.Errorf("userdata: larger than %d bytes once decompressed", MaxDecodedSize)
		}
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("userdata: parse: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
