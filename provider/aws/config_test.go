package aws

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/provider"
)

const testAMI = "ami-0abcdef1234567890"

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{KeyImageID: testAMI}))
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceType != "m6a.large" || c.RootVolumeGiB != 30 || c.LaunchTemplateName != "kata" || c.DisableCVM || c.UsePublicIP {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.AllowedTypes(); len(got) != 1 || got[0] != "m6a.large" {
		t.Fatalf("allowed types %v", got)
	}
}

func TestLoadConfigFull(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{
		KeyImageID: testAMI, KeyInstanceType: "c6a.xlarge", KeyInstanceTypes: " m6a.large, r6a.large ,",
		KeyRegion: "eu-west-1", KeySubnetID: "subnet-0123456789abcdef0", KeySecurityGroupIDs: "sg-01234567,sg-89abcdef",
		KeyKeyName: "ops", KeyUsePublicIP: "true", KeyRootVolumeSize: "40", KeyUseLaunchTemplate: "1",
		KeyLaunchTemplateName: "podvm-lt", KeyTags: "team=a, cost=b", KeyAccessKeyID: "AKIAEXAMPLE", KeySecretAccessKey: "s3cr3t",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceType != "c6a.xlarge" || strings.Join(c.InstanceTypes, "|") != "m6a.large|r6a.large" || c.Region != "eu-west-1" ||
		len(c.SecurityGroupIDs) != 2 || !c.UsePublicIP || c.RootVolumeGiB != 40 || !c.UseLaunchTemplate ||
		c.LaunchTemplateName != "podvm-lt" || c.Tags["team"] != "a" || c.Tags["cost"] != "b" || c.KeyName != "ops" ||
		c.AccessKeyID != "AKIAEXAMPLE" || c.SecretAccessKey != "s3cr3t" {
		t.Fatalf("parsed %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{KeyImageID: testAMI}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		key  string // the key the error must name
		also string // and this text
	}{
		{"no image", map[string]string{}, KeyImageID, "required"},
		{"bad image", base(KeyImageID, "img-1"), KeyImageID, "img-1"},
		{"non-SNP default type", base(KeyInstanceType, "m5.large"), KeyInstanceType, "m5.large"},
		{"non-SNP allowed type", base(KeyInstanceTypes, "m6a.large,t3.micro"), KeyInstanceTypes, "t3.micro"},
		{"malformed type", base(KeyInstanceType, "large"), KeyInstanceType, "large"},
		{"bad region", base(KeyRegion, "Mars"), KeyRegion, "Mars"},
		{"bad subnet", base(KeySubnetID, "net-1"), KeySubnetID, "net-1"},
		{"bad security group", base(KeySecurityGroupIDs, "sg-01234567,group"), KeySecurityGroupIDs, "group"},
		{"bad bool", base(KeyUsePublicIP, "yes please"), KeyUsePublicIP, "yes please"},
		{"bad cvm bool", base(KeyDisableCVM, "maybe"), KeyDisableCVM, "maybe"},
		{"bad lt bool", base(KeyUseLaunchTemplate, "x"), KeyUseLaunchTemplate, "x"},
		{"volume not a number", base(KeyRootVolumeSize, "30G"), KeyRootVolumeSize, "30G"},
		{"volume zero", base(KeyRootVolumeSize, "0"), KeyRootVolumeSize, "0 GiB"},
		{"volume too big", base(KeyRootVolumeSize, "20000"), KeyRootVolumeSize, "20000"},
		{"bad tags", base(KeyTags, "a=1,b"), KeyTags, "b"},
		{"bad template name", base(KeyUseLaunchTemplate, "true", KeyLaunchTemplateName, "a b"), KeyLaunchTemplateName, "a b"},
		{"secret without id", base(KeySecretAccessKey, "topsecret"), KeyAccessKeyID, "required"},
		{"id without secret", base(KeyAccessKeyID, "AKIAEXAMPLE"), KeySecretAccessKey, "required"},
		{"session token alone", base(KeySessionToken, "tok-secret"), KeySessionToken, "without"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, provider.ErrInvalidConfig) {
				t.Errorf("class: %v", err)
			}
			if !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.also) {
				t.Errorf("error %q should name %s and %q", err, tt.key, tt.also)
			}
			for _, secret := range []string{"topsecret", "tok-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks a secret", err)
				}
			}
		})
	}
}

func TestDisableCVMAllowsAnyFamily(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{KeyImageID: testAMI, KeyInstanceType: "m5.large", KeyInstanceTypes: "g5.xlarge", KeyDisableCVM: "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DisableCVM {
		t.Fatal("DISABLECVM not read")
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{KeyImageID: testAMI, KeyAccessKeyID: "AKIDSECRETID", KeySecretAccessKey: "wJalrSECRETKEY", KeySessionToken: "SESSIONSECRET"}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "cfg", c, "key", c.SecretAccessKey)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", *c)
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&buf, f+"\n", c)
		fmt.Fprintf(&buf, f+"\n", *c)
	}
	for _, s := range []string{"AKIDSECRETID", "wJalrSECRETKEY", "SESSIONSECRET"} {
		if strings.Contains(buf.String(), s) {
			t.Fatalf("secret %s printed:\n%s", s, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "[redacted]") {
		t.Fatal("redaction marker missing: the test would not see a leak")
	}
}

func TestIsSevSnpType(t *testing.T) {
	for typ, want := range map[string]bool{"m6a.large": true, "c6a.48xlarge": true, "r6a.metal": true, "m6i.large": false, "m7a.large": false, "m6a": true, "": false} {
		if got := IsSevSnpType(typ); got != want {
			t.Errorf("IsSevSnpType(%q) = %v", typ, got)
		}
	}
}

func TestClientToken(t *testing.T) {
	a := ClientToken("sandbox-1", "podvm-a-sandbox", "m6a.large")
	if len(a) > 64 || len(a) != 56 || !strings.HasPrefix(a, "peerpod-") {
		t.Fatalf("token %q (%d chars)", a, len(a))
	}
	for _, r := range a {
		if r > 127 {
			t.Fatalf("non-ASCII token %q", a)
		}
	}
	if a != ClientToken("sandbox-1", "podvm-a-sandbox", "m6a.large") {
		t.Fatal("token not stable")
	}
	for _, other := range []string{ClientToken("sandbox-2", "podvm-a-sandbox", "m6a.large"), ClientToken("sandbox-1", "podvm-b-sandbox", "m6a.large"),
		ClientToken("sandbox-1", "podvm-a-sandbox", "c6a.large"), ClientToken("sandbox-1p", "odvm-a-sandbox", "m6a.large")} {
		if other == a {
			t.Fatal("different inputs share a token")
		}
	}
}
