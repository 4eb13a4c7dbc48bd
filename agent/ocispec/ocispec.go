// Package ocispec converts the Kata agent protocol's grpc.Spec and
// grpc.Process into OCI runtime-spec documents runc reads.
package ocispec

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	pb "github.com/peerpod/peerpod/api/agent"
)

// Spec converts s. Hooks are dropped: the Kata runtime never sends them and
// the agent runs no host-supplied programs.
func Spec(s *pb.Spec) *specs.Spec {
	if s == nil {
		return &specs.Spec{Version: specs.Version}
	}
	out := &specs.Spec{
		Version:     s.Version,
		Process:     Process(s.Process),
		Hostname:    s.Hostname,
		Annotations: s.Annotations,
		Linux:       linux(s.Linux),
	}
	if out.Version == "" {
		out.Version = specs.Version
	}
	if s.Root != nil {
		out.Root = &specs.Root{Path: s.Root.Path, Readonly: s.Root.Readonly}
	}
	for _, m := range s.Mounts {
		if m == nil {
			continue
		}
		out.Mounts = append(out.Mounts, specs.Mount{Destination: m.Destination, Source: m.Source, Type: m.Type, Options: m.Options})
	}
	return out
}

// Process converts p.
func Process(p *pb.Process) *specs.Process {
	if p == nil {
		return nil
	}
	out := &specs.Process{
		Terminal:        p.Terminal,
		Args:            p.Args,
		Env:             p.Env,
		Cwd:             p.Cwd,
		NoNewPrivileges: p.NoNewPrivileges,
		ApparmorProfile: p.ApparmorProfile,
		SelinuxLabel:    p.SelinuxLabel,
	}
	if p.ConsoleSize != nil {
		out.ConsoleSize = &specs.Box{Height: uint(p.ConsoleSize.Height), Width: uint(p.ConsoleSize.Width)}
	}
	if p.User != nil {
		out.User = specs.User{UID: p.User.UID, GID: p.User.GID, AdditionalGids: p.User.AdditionalGids, Username: p.User.Username}
	}
	if c := p.Capabilities; c != nil {
		out.Capabilities = &specs.LinuxCapabilities{Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable, Permitted: c.Permitted, Ambient: c.Ambient}
	}
	for _, r := range p.Rlimits {
		if r != nil {
			out.Rlimits = append(out.Rlimits, specs.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	if p.OOMScoreAdj != 0 {
		v := int(p.OOMScoreAdj)
		out.OOMScoreAdj = &v
	}
	return out
}

func linux(l *pb.Linux) *specs.Linux {
	if l == nil {
		return nil
	}
	out := &specs.Linux{
		Sysctl:            l.Sysctl,
		Resources:         Resources(l.Resources),
		CgroupsPath:       l.CgroupsPath,
		RootfsPropagation: l.RootfsPropagation,
		MaskedPaths:       l.MaskedPaths,
		ReadonlyPaths:     l.ReadonlyPaths,
		MountLabel:        l.MountLabel,
		Seccomp:           seccomp(l.Seccomp),
	}
	for _, m := range l.UIDMappings {
		out.UIDMappings = append(out.UIDMappings, specs.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Size})
	}
	for _, m := range l.GIDMappings {
		out.GIDMappings = append(out.GIDMappings, specs.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Size})
	}
	for _, n := range l.Namespaces {
		out.Namespaces = append(out.Namespaces, specs.LinuxNamespace{Type: specs.LinuxNamespaceType(n.Type), Path: n.Path})
	}
	for _, d := range l.Devices {
		mode := os.FileMode(d.FileMode)
		uid, gid := d.UID, d.GID
		out.Devices = append(out.Devices, specs.LinuxDevice{Path: d.Path, Type: d.Type, Major: d.Major, Minor: d.Minor, FileMode: &mode, UID: &uid, GID: &gid})
	}
	if l.IntelRdt != nil {
		out.IntelRdt = &specs.LinuxIntelRdt{L3CacheSchema: l.IntelRdt.L3CacheSchema}
	}
	return out
}

// Resources converts r (nil for nil).
func Resources(r *pb.LinuxResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	for _, d := range r.Devices {
		major, minor := d.Major, d.Minor
		dc := specs.LinuxDeviceCgroup{Allow: d.Allow, Type: d.Type, Access: d.Access}
		if major != -1 {
			dc.Major = &major
		}
		if minor != -1 {
			dc.Minor = &minor
		}
		out.Devices = append(out.Devices, dc)
	}
	if m := r.Memory; m != nil {
		out.Memory = &specs.LinuxMemory{DisableOOMKiller: &m.DisableOOMKiller}
		if m.Limit != 0 {
			out.Memory.Limit = &m.Limit
		}
		if m.Reservation != 0 {
			out.Memory.Reservation = &m.Reservation
		}
		if m.Swap != 0 {
			out.Memory.Swap = &m.Swap
		}
		if m.Swappiness != 0 {
			out.Memory.Swappiness = &m.Swappiness
		}
	}
	if c := r.CPU; c != nil {
		out.CPU = &specs.LinuxCPU{Cpus: c.Cpus, Mems: c.Mems}
		if c.Shares != 0 {
			out.CPU.Shares = &c.Shares
		}
		if c.Quota != 0 {
			out.CPU.Quota = &c.Quota
		}
		if c.Period != 0 {
			out.CPU.Period = &c.Period
		}
	}
	if p := r.Pids; p != nil && p.Limit > 0 {
		out.Pids = &specs.LinuxPids{Limit: &p.Limit}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	return out
}

func seccomp(s *pb.LinuxSeccomp) *specs.LinuxSeccomp {
	if s == nil {
		return nil
	}
	out := &specs.LinuxSeccomp{DefaultAction: specs.LinuxSeccompAction(s.DefaultAction)}
	for _, a := range s.Architectures {
		out.Architectures = append(out.Architectures, specs.Arch(a))
	}
	for _, f := range s.Flags {
		out.Flags = append(out.Flags, specs.LinuxSeccompFlag(f))
	}
	for _, sc := range s.Syscalls {
		c := specs.LinuxSyscall{Names: sc.Names, Action: specs.LinuxSeccompAction(sc.Action)}
		if e, ok := sc.ErrnoRet.(*pb.LinuxSyscall_Errnoret); ok {
			v := uint(e.Errnoret)
			c.ErrnoRet = &v
		}
		for _, a := range sc.Args {
			c.Args = append(c.Args, specs.LinuxSeccompArg{Index: uint(a.Index), Value: a.Value, ValueTwo: a.ValueTwo, Op: specs.LinuxSeccompOperator(a.Op)})
		}
		out.Syscalls = append(out.Syscalls, c)
	}
	return out
}
