// Command image builds a reproducible OCI image of static binaries without a
// container engine and writes it as a docker-archive tarball, which
// `crane push` and `skopeo copy docker-archive:` accept.
//
//	go run ./deploy/image -name peerpod \
//	  -bin _output/images/bin/peerpodd:/usr/local/bin/peerpodd \
//	  -entrypoint /usr/local/bin/peerpodd -out _output/images/peerpod.tar
//
// Every entry has a fixed timestamp (SOURCE_DATE_EPOCH, else 0), owner
// root:root, and entries are sorted, so the same inputs give the same digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		slog.Error("build image", "err", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	name := fs.String("name", "", "image name; the tag is REPO/NAME:TAG")
	repo := fs.String("repo", "ghcr.io/peerpod", "repository prefix of the tag")
	tag := fs.String("tag", "dev", "image tag")
	arch := fs.String("arch", runtime.GOARCH, "architecture recorded in the image config")
	out := fs.String("out", "", "docker-archive tarball to write")
	ca := fs.String("ca-certs", DefaultCACerts, "CA bundle copied to "+DefaultCACerts+" if it exists (empty: none)")
	var bins, entry stringList
	fs.Var(&bins, "bin", "HOST:IMAGEPATH file to add with mode 0755 (repeatable)")
	fs.Var(&entry, "entrypoint", "entrypoint argument (repeatable; first is the program)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return errors.New("-name and -out are required")
	}
	epoch, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	spec := Spec{
		Ref:        fmt.Sprintf("%s/%s:%s", *repo, *name, *tag),
		Entrypoint: entry,
		Created:    epoch,
		Arch:       *arch,
	}
	for _, b := range bins {
		host, path, ok := strings.Cut(b, ":")
		if !ok || host == "" || path == "" {
			return fmt.Errorf("-bin %q: want HOST:IMAGEPATH", b)
		}
		spec.Files = append(spec.Files, File{Source: host, Path: path, Mode: 0o755})
	}
	if *ca != "" {
		if _, err := os.Stat(*ca); err == nil {
			spec.Files = append(spec.Files, File{Source: *ca, Path: DefaultCACerts, Mode: 0o644})
		}
	}
	digest, err := Write(spec, *out)
	if err != nil {
		return err
	}
	slog.Info("image written", "ref", spec.Ref, "digest", digest, "out", *out)
	return nil
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH (seconds); empty means the Unix epoch.
func sourceDateEpoch(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want non-negative seconds", v)
	}
	return time.Unix(n, 0).UTC(), nil
}
