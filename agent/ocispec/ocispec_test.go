package ocispec

import (
	"testing"

	pb "github.com/peerpod/peerpod/api/agent"
)

func TestSpec(t *testing.T) {
	in := &pb.Spec{
		Process: &pb.Process{Args: []string{"sh"}, Env: []string{"A=1"}, Cwd: "/", User: &pb.User{UID: 1, GID: 2},
			Terminal: true, ConsoleSize: &pb.Box{Height: 24, Width: 80}, OOMScoreAdj: 5,
			Capabilities: &pb.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}, Rlimits: []*pb.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 9, Soft: 8}}},
		Root:     &pb.Root{Path: "rootfs", Readonly: true},
		Hostname: "h",
		Mounts:   []*pb.Mount{{Destination: "/d", Source: "/s", Type: "bind", Options: []string{"rbind"}}},
		Linux: &pb.Linux{CgroupsPath: "/a/b", Namespaces: []*pb.LinuxNamespace{{Type: "pid"}},
			Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: 16 << 20}, CPU: &pb.LinuxCPU{Quota: 1000, Period: 100000},
				Devices: []*pb.LinuxDeviceCgroup{{Allow: false, Access: "rwm", Major: -1, Minor: -1}}},
			Seccomp: &pb.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO", Syscalls: []*pb.LinuxSyscall{{Names: []string{"read"}, Action: "SCMP_ACT_ALLOW", ErrnoRet: &pb.LinuxSyscall_Errnoret{Errnoret: 1}}}}},
	}
	out := Spec(in)
	checks := []struct {
		name string
		ok   bool
	}{
		{"args", out.Process.Args[0] == "sh"},
		{"user", out.Process.User.UID == 1 && out.Process.User.GID == 2},
		{"console", out.Process.ConsoleSize.Height == 24},
		{"oom adj", *out.Process.OOMScoreAdj == 5},
		{"caps", out.Process.Capabilities.Bounding[0] == "CAP_KILL"},
		{"rlimit", out.Process.Rlimits[0].Soft == 8},
		{"root", out.Root.Path == "rootfs" && out.Root.Readonly},
		{"mount", out.Mounts[0].Options[0] == "rbind"},
		{"cgroup", out.Linux.CgroupsPath == "/a/b"},
		{"ns", out.Linux.Namespaces[0].Type == "pid"},
		{"memory", *out.Linux.Resources.Memory.Limit == 16<<20},
		{"cpu", *out.Linux.Resources.CPU.Quota == 1000},
		{"device wildcard", out.Linux.Resources.Devices[0].Major == nil},
		{"seccomp errno", *out.Linux.Seccomp.Syscalls[0].ErrnoRet == 1},
		{"version", out.Version != ""},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s not converted", c.name)
		}
	}
	if Spec(nil) == nil || Process(nil) != nil {
		t.Error("nil handling")
	}
}
