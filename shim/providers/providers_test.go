package providers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/shim/config"
)

func TestUnknownProviderNamesKey(t *testing.T) {
	for _, name := range []string{"gcp", "procprovider", "sandboxtest", ""} {
		_, err := New(context.Background(), name, func(string) string { return "" })
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != "CLOUD_PROVIDER" {
			t.Errorf("CLOUD_PROVIDER=%q: %v", name, err)
		}
	}
}

func TestMissingKeysNamed(t *testing.T) {
	cases := []struct{ provider, key string }{
		{"azure", "AZURE_"},
		{"aws", "PODVM_AMI_ID"},
		{"libvirt", "LIBVIRT_"},
	}
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			_, err := New(context.Background(), tc.provider, func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want one naming %s", err, tc.key)
			}
		})
	}
}
