package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultCACerts is where the CA bundle goes in the image (and where it is read on the host).
const DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"

// File is one regular file of the image.
type File struct {
	Source string      // path on the host
	Path   string      // absolute path in the image
	Mode   os.FileMode // permission bits
}

// Spec describes an image.
type Spec struct {
	Ref        string    // tag recorded in the archive, e.g. ghcr.io/peerpod/peerpod:dev
	Files      []File    // regular files
	Entrypoint []string  // config entrypoint
	Created    time.Time // timestamp of every entry and of the config
	Arch       string    // GOARCH of the binaries; empty means runtime.GOARCH
}

// Build assembles the image on an empty base: one layer holding Files, their
// parent directories and /tmp, with fixed timestamps and root ownership.
func Build(s Spec) (v1.Image, error) {
	layerTar, err := layerBytes(s)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	// Docker media types: a docker-archive reads back as a Docker v2 manifest,
	// so the digest stays the same after `crane push`.
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: s.Created},
			CreatedBy: "peerpod deploy/image",
		},
		MediaType: types.DockerLayer,
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = s.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.OS = "linux"
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: s.Created})
	if err != nil {
		return nil, fmt.Errorf("set created: %w", err)
	}
	return img, nil
}

// Write builds the image and writes it as a docker-archive tarball to out
// (via a temporary file, so a failure leaves nothing half-written). It
// returns the image digest.
func Write(s Spec, out string) (string, error) {
	ref, err := name.NewTag(s.Ref)
	if err != nil {
		return "", fmt.Errorf("image tag %q: %w", s.Ref, err)
	}
	img, err := Build(s)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", s.Ref, err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", s.Ref, err)
	}
	return d.String(), nil
}

type entry struct {
	hdr  tar.Header
	data []byte
}

// layerBytes returns the uncompressed layer tar: sorted entries, parent
// directories made explicit, all owned by root with timestamp s.Created.
func layerBytes(s Spec) ([]byte, error) {
	entries := map[string]*entry{}
	addDir := func(p string, mode int64) {
		for d := p; d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				m := int64(0o755)
				if d == p {
					m = mode
				}
				entries[d] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: m}}
			}
		}
	}
	addDir("/tmp", 0o1777)
	for _, f := range s.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("file %s: image path %q must be absolute and clean", f.Source, f.Path)
		}
		if _, ok := entries[f.Path]; ok {
			return nil, fmt.Errorf("file %s: image path %s given twice", f.Source, f.Path)
		}
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Source, err)
		}
		addDir(path.Dir(f.Path), 0o755)
		entries[f.Path] = &entry{
			hdr:  tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: int64(f.Mode.Perm()), Size: int64(len(data))},
			data: data,
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.Uid, e.hdr.Gid = 0, 0
		e.hdr.Uname, e.hdr.Gname = "root", "root"
		e.hdr.ModTime = s.Created
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}
