package image

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Keychain resolves registry credentials from a containers-auth.json document
// ({"auths": {"registry.example": {"auth": base64("user:password")}}}).
// A registry with no entry is accessed anonymously.
type Keychain struct {
	auths map[string]authn.AuthConfig
}

// ParseAuthJSON parses a containers-auth.json document. An empty document
// gives a keychain that answers anonymous for every registry.
func ParseAuthJSON(b []byte) (*Keychain, error) {
	k := &Keychain{auths: map[string]authn.AuthConfig{}}
	if len(strings.TrimSpace(string(b))) == 0 {
		return k, nil
	}
	var doc struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		// The error of json.Unmarshal never quotes the input, so no secret leaks.
		return nil, fmt.Errorf("parse auth.json: %w", err)
	}
	for host, cfg := range doc.Auths {
		k.auths[normalizeRegistry(host)] = cfg
	}
	return k, nil
}

// Registries lists the registries the keychain holds credentials for.
func (k *Keychain) Registries() []string {
	out := make([]string, 0, len(k.auths))
	for h := range k.auths {
		out = append(out, h)
	}
	return out
}

// Resolve implements authn.Keychain.
func (k *Keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if k == nil {
		return authn.Anonymous, nil
	}
	cfg, ok := k.auths[normalizeRegistry(r.RegistryStr())]
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}

// normalizeRegistry maps the spellings auth.json files use for a registry
// ("https://index.docker.io/v1/", "docker.io", "host:5000/") to one key.
func normalizeRegistry(s string) string {
	s = strings.TrimPrefix(s, "https://")
	s = strings.TrimPrefix(s, "http://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	switch s {
	case "docker.io", "registry-1.docker.io", "index.docker.io":
		return "index.docker.io"
	}
	return s
}
