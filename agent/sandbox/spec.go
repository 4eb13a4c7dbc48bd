package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/peerpod/peerpod/agent/image"
	"github.com/peerpod/peerpod/agent/ocispec"
	pb "github.com/peerpod/peerpod/api/agent"
)

// prepareSpec turns the runtime's spec into the bundle runc runs: rootfs,
// process defaults from the image (or the pause bundle), Kata paths mapped
// to their local places, the sandbox's hostname and resolv.conf, the
// container's cgroup, the pod's network namespace (or the VM's) and, when the sandbox
// shares one, the pause container's pid namespace.
func (s *Sandbox) prepareSpec(c *Container, req *pb.CreateContainerRequest, img *image.Image, pauseProc *specs.Process, sharePid bool, pausePid int) (*specs.Spec, error) {
	spec := ocispec.Spec(req.OCI)
	readonly := spec.Root != nil && spec.Root.Readonly
	spec.Root = &specs.Root{Path: c.rootfs, Readonly: readonly}
	spec.Hooks = nil

	switch {
	case pauseProc != nil:
		p := spec.Process
		if p == nil {
			p = &specs.Process{}
		}
		p.Args, p.Cwd, p.Terminal = pauseProc.Args, "/", false
		if len(p.Env) == 0 {
			p.Env = pauseProc.Env
		}
		spec.Process = p
	case spec.Process == nil:
		spec.Process = &specs.Process{}
	}
	p := spec.Process
	if img != nil {
		if len(p.Args) == 0 {
			p.Args = append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
		}
		if len(p.Env) == 0 {
			p.Env = img.Config.Env
		}
		if p.Cwd == "" {
			p.Cwd = img.Config.WorkingDir
		}
	}
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("no process args in the spec or the image: %w", ErrInvalid)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}

	// Mounts: Kata paths to local ones; files copied by CopyFile must stay in the shared directory.
	hasDest := map[string]bool{}
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		hasDest[filepath.Clean(m.Destination)] = true
		if !filepath.IsAbs(m.Source) {
			continue
		}
		src := filepath.Clean(m.Source)
		switch {
		case strings.HasPrefix(src, sharedPrefix()):
			local, err := s.shared.Local(src)
			if err != nil {
				return nil, fmt.Errorf("mount %s: %w: %w", m.Destination, err, ErrInvalid)
			}
			if _, err := os.Stat(local); err != nil {
				return nil, fmt.Errorf("mount %s: source %s was not copied: %w", m.Destination, src, ErrInvalid)
			}
			m.Source = local
		case strings.HasPrefix(src, KataRoot+"/"):
			m.Source = s.local(src)
		}
	}
	sb := s.dir()
	for _, f := range []struct{ dest, file string }{{"/etc/hostname", "hostname"}, {"/etc/resolv.conf", "resolv.conf"}} {
		if !hasDest[f.dest] {
			spec.Mounts = append(spec.Mounts, specs.Mount{Destination: f.dest, Type: "bind", Source: filepath.Join(sb, f.file), Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
		}
	}

	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	l := spec.Linux
	l.CgroupsPath = c.cgroupPath
	var ns []specs.LinuxNamespace
	have := map[specs.LinuxNamespaceType]bool{}
	for _, n := range l.Namespaces {
		if n.Type == specs.NetworkNamespace || have[n.Type] {
			continue // containers share the pod's (or the VM's) network namespace
		}
		have[n.Type] = true
		ns = append(ns, specs.LinuxNamespace{Type: n.Type}) // the runtime's paths name node namespaces
	}
	for _, t := range []specs.LinuxNamespaceType{specs.MountNamespace, specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		if !have[t] {
			ns = append(ns, specs.LinuxNamespace{Type: t})
			have[t] = true
		}
	}
	if s.cfg.NetNS != nil {
		if path := s.cfg.NetNS(); path != "" {
			ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
		}
	}
	if sharePid && pausePid > 0 {
		for i := range ns {
			if ns[i].Type == specs.PIDNamespace {
				ns[i].Path = fmt.Sprintf("/proc/%d/ns/pid", pausePid)
			}
		}
	}
	l.Namespaces = ns
	if spec.Hostname == "" {
		s.mu.Lock()
		spec.Hostname = s.hostname
		s.mu.Unlock()
	}
	return spec, nil
}

func sharedPrefix() string { return "/run/kata-containers/shared/containers/" }
