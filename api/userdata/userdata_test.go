package userdata

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

func valid() *Config {
	return &Config{
		Version:   Version,
		SandboxID: "0123456789abcdef",
		VMName:    "podvm-nginx-01234567",
		TunnelCA:  "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		Attester:  AttesterFake,
	}
}

func TestRoundTripPlainAndGzip(t *testing.T) {
	small := valid()
	big := valid()
	big.Initdata = strings.Repeat("algorithm = \"sha256\"\n", 200)
	for name, c := range map[string]*Config{"small": small, "big": big} {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			gz := bytes.HasPrefix(b, gzipMagic)
			if name == "big" && !gz {
				t.Fatal("repetitive user data was not compressed")
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if *got != *c {
				t.Fatalf("round trip: got %+v, want %+v", got, c)
			}
		})
	}
}

func TestValidateAttesterKinds(t *testing.T) {
	for _, kind := range []string{AttesterFake, AttesterTDX, AttesterSNP, AttesterAzSNPVTPM} {
		c := valid()
		c.Attester = kind
		if err := c.Validate(); err != nil {
			t.Errorf("attester %s: %v", kind, err)
		}
	}
	c := valid()
	c.Attester = "vtpm"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), AttesterAzSNPVTPM) {
		t.Errorf("unknown attester error does not list the valid kinds: %v", err)
	}
}

func TestValidateNamesField(t *testing.T) {
	tests := []struct {
		field string
		edit  func(*Config)
	}{
		{"version", func(c *Config) { c.Version = 99 }},
		{"sandbox_id", func(c *Config) { c.SandboxID = "" }},
		{"tunnel_ca", func(c *Config) { c.TunnelCA = "" }},
		{"listen_port", func(c *Config) { c.ListenPort = 70000 }},
		{"attester", func(c *Config) { c.Attester = "none" }},
	}
	for _, tc := range tests {
		c := valid()
		tc.edit(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming the field", tc.field, err)
		}
		if _, err := Encode(c); err == nil {
			t.Errorf("%s: Encode accepted an invalid config", tc.field)
		}
	}
}

func TestDecodeRefusesBadInput(t *testing.T) {
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	if _, err := zw.Write(bytes.Repeat([]byte{' '}, MaxDecodedSize+10)); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	tests := map[string][]byte{
		"not json":      []byte("#cloud-config\n"),
		"unknown field": []byte(`{"version":1,"sandbox_id":"s","tunnel_ca":"x","attester":"fake","private_key":"k"}`),
		"invalid":       []byte(`{"version":1}`),
		"gzip bomb":     bomb.Bytes(),
		"broken gzip":   {0x1f, 0x8b, 0, 1, 2},
	}
	for name, b := range tests {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
	}
}

func TestPortDefault(t *testing.T) {
	c := valid()
	if c.Port() != DefaultListenPort {
		t.Fatalf("Port() = %d", c.Port())
	}
	c.ListenPort = 2000
	if c.Port() != 2000 {
		t.Fatalf("Port() = %d", c.Port())
	}
}
