package agenttest

import (
	pb "github.com/peerpod/peerpod/api/agent"
)

// SandboxShm is where the Kata runtime asks for the sandbox's shm tmpfs.
const SandboxShm = "/run/kata-containers/sandbox/shm"

// Spec is a container spec shaped like the one the Kata runtime sends.
func Spec(args ...string) *pb.Spec {
	return &pb.Spec{
		Version: "1.0.2",
		Process: &pb.Process{
			Args: args, Cwd: "/", Env: []string{"PATH=/bin", "HOME=/root"},
			User: &pb.User{},
			Capabilities: &pb.LinuxCapabilities{
				Bounding:  []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"},
				Effective: []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"},
				Permitted: []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"},
			},
			NoNewPrivileges: true,
		},
		Root: &pb.Root{Path: "rootfs"},
		Mounts: []*pb.Mount{
			{Destination: "/proc", Source: "proc", Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Source: "tmpfs", Type: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Source: "devpts", Type: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Source: SandboxShm, Type: "bind", Options: []string{"rbind"}},
			{Destination: "/dev/mqueue", Source: "mqueue", Type: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		},
		Linux: &pb.Linux{
			Namespaces:    []*pb.LinuxNamespace{{Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "pid"}, {Type: "network"}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
		Annotations: map[string]string{},
	}
}

// ImageStorage is the rootfs storage for image ref.
func ImageStorage(containerID, ref string) []*pb.Storage {
	return []*pb.Storage{{
		Driver: "image_guest_pull", Source: ref, Fstype: "overlay",
		MountPoint: "/run/kata-containers/" + containerID + "/rootfs",
	}}
}

// ShmStorage is the sandbox shm storage CreateSandbox carries.
func ShmStorage() *pb.Storage {
	return &pb.Storage{Driver: "ephemeral", Source: "shm", Fstype: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "mode=1777", "size=67108864"}, MountPoint: SandboxShm}
}
