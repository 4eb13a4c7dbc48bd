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

func warm() *Config {
	c := valid()
	c.SandboxID, c.Warm, c.VMName = "", true, "podvm-warm-0a1b2c3d"
	return c
}

func TestWarmValidate(t *testing.T) {
	if err := warm().Validate(); err != nil {
		t.Fatalf("warm config: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(c *Config)
		want string
	}{
		"sandbox":  {func(c *Config) { c.SandboxID = "abc" }, "no sandbox_id yet"},
		"initdata": {func(c *Config) { c.Initdata = "version = \"0.1.0\"" }, "no initdata yet"},
	} {
		t.Run(name, func(t *testing.T) {
			c := warm()
			tc.mod(c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestProvisioned(t *testing.T) {
	if err := warm().Provisioned(valid()); err != nil {
		t.Fatalf("a sandbox config for a warm VM: %v", err)
	}
	for name, tc := range map[string]struct {
		boot func(c *Config)
		pod  func(c *Config)
		want string
	}{
		"not warm":      {func(c *Config) { c.Warm, c.SandboxID = false, "x" }, func(*Config) {}, "not warm"},
		"pod warm":      {func(*Config) {}, func(c *Config) { c.Warm, c.SandboxID = true, "" }, "must name its sandbox"},
		"other CA":      {func(*Config) {}, func(c *Config) { c.TunnelCA += "x" }, "tunnel_ca differs"},
		"other attest":  {func(*Config) {}, func(c *Config) { c.Attester = AttesterTDX }, "attester \"tdx\" differs"},
		"other port":    {func(*Config) {}, func(c *Config) { c.ListenPort = 9 }, "listen_port 9 differs"},
		"invalid pod":   {func(*Config) {}, func(c *Config) { c.SandboxID = "" }, "sandbox_id is empty"},
		"port defaults": {func(c *Config) { c.ListenPort = DefaultListenPort }, func(*Config) {}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			boot, pod := warm(), valid()
			tc.boot(boot)
			tc.pod(pod)
			err := boot.Provisioned(pod)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
