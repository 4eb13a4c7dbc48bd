// Package image pulls container images inside the pod VM: it fetches an image
// from its registry (credentials from a containers-auth.json), unpacks each
// layer once per digest into a local cache, and assembles container rootfs
// directories from cached layers with overlayfs (or a copy where overlay fails).
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is a pulled image: its identity, run configuration and the
// unpacked layer directories, lowest first.
type Image struct {
	// Ref is the reference it was pulled by.
	Ref string `json:"ref"`
	// Digest is the manifest digest.
	Digest string `json:"digest"`
	// Config is the image's run configuration (env, entrypoint, cmd, ...).
	Config v1.Config `json:"config"`
	// Layers are the unpacked layer directories, lowest first.
	Layers []string `json:"layers"`
}

// Store is the image and layer cache under one directory.
type Store struct {
	dir string

	mu       sync.Mutex
	keychain *Keychain
	layerMu  map[string]*sync.Mutex // per layer digest: one unpack at a time
	images   map[string]*Image      // by reference
}

// NewStore opens (creating) the cache under dir.
func NewStore(dir string) (*Store, error) {
	for _, d := range []string{"layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store %s: %w", dir, err)
		}
	}
	// Half-unpacked layers of an earlier run are garbage.
	tmp := filepath.Join(dir, "tmp")
	if ents, err := os.ReadDir(tmp); err == nil {
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	}
	return &Store{dir: dir, keychain: &Keychain{}, layerMu: map[string]*sync.Mutex{}, images: map[string]*Image{}}, nil
}

// SetAuthJSON replaces the registry credentials with a containers-auth.json document.
func (s *Store) SetAuthJSON(b []byte) error {
	k, err := ParseAuthJSON(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.keychain = k
	s.mu.Unlock()
	return nil
}

// Pull returns the image named by ref, from the cache when it was pulled
// before by the same reference, else from its registry. Errors name the
// image and carry the registry's answer.
func (s *Store) Pull(ctx context.Context, ref string) (*Image, error) {
	if img, ok := s.cached(ref); ok {
		return img, nil
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("pull image %q: bad reference: %w", ref, err)
	}
	s.mu.Lock()
	kc := s.keychain
	s.mu.Unlock()
	rimg, err := remote.Image(r,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	)
	if err != nil {
		return nil, fmt.Errorf("pull image %q from registry %s: %w", ref, r.Context().RegistryStr(), err)
	}
	digest, err := rimg.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull image %q: manifest digest: %w", ref, err)
	}
	cfg, err := rimg.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("pull image %q: config: %w", ref, err)
	}
	layers, err := rimg.Layers()
	if err != nil {
		return nil, fmt.Errorf("pull image %q: layers: %w", ref, err)
	}
	img := &Image{Ref: ref, Digest: digest.String(), Config: cfg.Config}
	for _, l := range layers {
		d, err := s.unpack(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("pull image %q from registry %s: %w", ref, r.Context().RegistryStr(), err)
		}
		img.Layers = append(img.Layers, d)
	}
	if err := s.remember(img); err != nil {
		return nil, err
	}
	return img, nil
}

func refKey(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return hex.EncodeToString(sum[:])
}

// cached finds an image pulled earlier by ref, in memory or on disk, whose
// layers are all still present.
func (s *Store) cached(ref string) (*Image, bool) {
	s.mu.Lock()
	img, ok := s.images[ref]
	s.mu.Unlock()
	if ok {
		return img, true
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "images", refKey(ref)+".json"))
	if err != nil {
		return nil, false
	}
	img = &Image{}
	if json.Unmarshal(b, img) != nil || img.Ref != ref {
		return nil, false
	}
	for _, l := range img.Layers {
		if _, err := os.Stat(l); err != nil {
			return nil, false
		}
	}
	s.mu.Lock()
	s.images[ref] = img
	s.mu.Unlock()
	return img, true
}

func (s *Store) remember(img *Image) error {
	b, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("record image %q: %w", img.Ref, err)
	}
	p := filepath.Join(s.dir, "images", refKey(img.Ref)+".json")
	if err := writeFileAtomic(p, b); err != nil {
		return fmt.Errorf("record image %q: %w", img.Ref, err)
	}
	s.mu.Lock()
	s.images[img.Ref] = img
	s.mu.Unlock()
	return nil
}

// unpack returns the directory of layer l, unpacking it first if no earlier
// pull did. The cache key is the uncompressed digest (diff ID).
func (s *Store) unpack(ctx context.Context, l v1.Layer) (string, error) {
	diff, err := l.DiffID()
	if err != nil {
		return "", fmt.Errorf("layer diff id: %w", err)
	}
	key := strings.ReplaceAll(diff.String(), ":", "-")
	dst := filepath.Join(s.dir, "layers", key)
	s.mu.Lock()
	m := s.layerMu[key]
	if m == nil {
		m = &sync.Mutex{}
		s.layerMu[key] = m
	}
	s.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), key+"-")
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", diff, err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("layer %s: fetch: %w", diff, err)
	}
	err = unpackLayer(rc, tmp)
	if cerr := rc.Close(); err == nil {
		err = cerr // the verifying reader reports a digest mismatch on Close
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("layer %s: %w", diff, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("layer %s: %w", diff, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("layer %s: %w", diff, err)
	}
	return dst, nil
}

// writeFileAtomic writes b to p through a temporary file and a rename.
func writeFileAtomic(p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p))
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

// ErrNoLayers is returned by Mount for an image without layers.
var ErrNoLayers = errors.New("image has no layers")
