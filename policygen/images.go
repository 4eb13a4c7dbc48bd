package policygen

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is what the policy needs from a container image.
type Image struct {
	// Ref is the digest-pinned reference (repository@sha256:...).
	Ref string
	// ConfigKnown is false when the configuration was not read.
	ConfigKnown bool
	Entrypoint  []string
	Cmd         []string
	Env         []string
	WorkingDir  string
	User        string
}

// ImageResolver pins an image reference and reads its configuration.
type ImageResolver interface {
	Resolve(ctx context.Context, ref string) (*Image, error)
}

// RegistryResolver asks the image's registry (go-containerregistry): a tag
// is resolved to the digest it names now, and the configuration is read
// from the image for Platform.
type RegistryResolver struct {
	// Insecure allows plain-HTTP registries (a local test registry).
	Insecure bool
	// Platform selects from a multi-platform index (default linux/amd64).
	Platform *v1.Platform
	// Keychain provides registry credentials (default: docker config).
	Keychain authn.Keychain
}

// Resolve implements ImageResolver.
func (r *RegistryResolver) Resolve(ctx context.Context, ref string) (*Image, error) {
	var opts []name.Option
	if r.Insecure {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	platform := v1.Platform{OS: "linux", Architecture: "amd64"}
	if r.Platform != nil {
		platform = *r.Platform
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithPlatform(platform)}
	desc, err := remote.Get(parsed, ropts...)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	if d, ok := parsed.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, fmt.Errorf("image %q: registry returned digest %s", ref, desc.Digest)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %q: read config: %w", ref, err)
	}
	out := &Image{
		Ref:         parsed.Context().Digest(desc.Digest.String()).String(),
		ConfigKnown: true,
		Entrypoint:  cfg.Config.Entrypoint,
		Cmd:         cfg.Config.Cmd,
		Env:         cfg.Config.Env,
		WorkingDir:  cfg.Config.WorkingDir,
		User:        cfg.Config.User,
	}
	return out, nil
}

// OfflineResolver asks no registry: every image must already be pinned by
// digest (name@sha256:...), and the image configuration is unknown, so the
// pod spec must give each container's command.
type OfflineResolver struct{}

// Resolve implements ImageResolver.
func (OfflineResolver) Resolve(_ context.Context, ref string) (*Image, error) {
	d, err := name.NewDigest(ref)
	if err != nil || !strings.Contains(ref, "@sha256:") {
		return nil, fmt.Errorf("image %q is not pinned by digest: use name@sha256:<digest> or resolve images against the registry", ref)
	}
	return &Image{Ref: d.String()}, nil
}
