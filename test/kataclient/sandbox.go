package kataclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
)

// Annotation keys the runtime sends with CreateVM (PROTOCOLS.md §2).
const (
	AnnotSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	hvPrefix              = "io.katacontainers.config.hypervisor."
	AnnotMachineType      = hvPrefix + "machine_type"
	AnnotImage            = hvPrefix + "image"
	AnnotDefaultVCPUs     = hvPrefix + "default_vcpus"
	AnnotDefaultMemory    = hvPrefix + "default_memory"
	AnnotInitdata         = hvPrefix + "cc_init_data"
	AnnotDefaultGPUs      = hvPrefix + "default_gpus"
	AnnotGPUModel         = hvPrefix + "default_gpu_model"
)

// AnnotationKeys are the keys every CreateVM carries, possibly empty.
var AnnotationKeys = []string{
	AnnotSandboxName, AnnotSandboxNamespace, AnnotMachineType, AnnotImage,
	AnnotDefaultVCPUs, AnnotDefaultMemory, AnnotInitdata, AnnotDefaultGPUs, AnnotGPUModel,
}

// Pod is what the runtime knows of a pod when it creates its sandbox.
type Pod struct {
	Name, Namespace string
	// MachineType and Image are the machine_type and image annotations.
	MachineType, Image string
	// VCPUs and MemoryMiB are the sandbox size (0 sends an empty value).
	VCPUs, MemoryMiB int
	// GPUs and GPUModel are the GPU annotations.
	GPUs     int
	GPUModel string
	// Initdata is the decoded initdata TOML text (cc_init_data).
	Initdata string
	// Policy is the Rego text of io.katacontainers.config.agent.policy;
	// when set, SetPolicy is sent after Health.Check.
	Policy string
}

// Annotations are the CreateVM annotations for p: every key of
// AnnotationKeys present, empty when p has no value.
func (p Pod) Annotations() map[string]string {
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	return map[string]string{
		AnnotSandboxName:      p.Name,
		AnnotSandboxNamespace: p.Namespace,
		AnnotMachineType:      p.MachineType,
		AnnotImage:            p.Image,
		AnnotDefaultVCPUs:     num(p.VCPUs),
		AnnotDefaultMemory:    num(p.MemoryMiB),
		AnnotInitdata:         p.Initdata,
		AnnotDefaultGPUs:      num(p.GPUs),
		AnnotGPUModel:         p.GPUModel,
	}
}

// Sandbox is one pod sandbox driven through peerpodd.
type Sandbox struct {
	c *Client
	// ID is the sandbox id (the pause container's id).
	ID string
	// Pod is the pod the sandbox was made for.
	Pod Pod
	// NetNS is the network namespace path sent with CreateVM.
	NetNS string
	// AgentSocket is the path CreateVM returned.
	AgentSocket string
}

// NewSandboxID returns a random 64-hex-digit id like the runtime's.
func NewSandboxID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewSandbox sends CreateVM for a new sandbox of pod (hypervisor.CreateVM in
// the runtime's createSandboxFromConfig) and returns it.
func (c *Client) NewSandbox(ctx context.Context, id string, pod Pod, netns string) (*Sandbox, error) {
	path, err := c.CreateVM(ctx, id, pod.Annotations(), netns)
	if err != nil {
		return nil, err
	}
	return &Sandbox{c: c, ID: id, Pod: pod, NetNS: netns, AgentSocket: path}, nil
}

// Attach returns a Sandbox for an existing sandbox whose agent socket is known
// (after a peerpodd restart, for example).
func (c *Client) Attach(id, agentSocket string, pod Pod) *Sandbox {
	return &Sandbox{c: c, ID: id, Pod: pod, AgentSocket: agentSocket}
}

// StartVM sends StartVM for the sandbox.
func (s *Sandbox) StartVM(ctx context.Context) error { return s.c.StartVM(ctx, s.ID) }

// StopVM sends StopVM for the sandbox.
func (s *Sandbox) StopVM(ctx context.Context) error { return s.c.StopVM(ctx, s.ID) }

// agentCall makes one agent request on a fresh connection to the agent
// socket, with timeout (0 = none, as for WaitProcess).
func (s *Sandbox) agentCall(ctx context.Context, service, method string, timeout time.Duration, f func(ctx context.Context, tc *ttrpc.Client) error) error {
	start := time.Now()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err := func() error {
		conn, err := s.c.dialAgent(ctx, s.AgentSocket)
		if err != nil {
			return err
		}
		tc := ttrpc.NewClient(conn)
		defer tc.Close()
		return f(ctx, tc)
	}()
	if err != nil {
		err = fmt.Errorf("%s.%s (sandbox %s): %w", service, method, s.ID, err)
	}
	s.c.record(service, method, s.ID, start, err)
	return err
}

func (s *Sandbox) svc(ctx context.Context, method string, timeout time.Duration, f func(ctx context.Context, a agent.AgentServiceService) error) error {
	return s.agentCall(ctx, "grpc.AgentService", method, timeout, func(ctx context.Context, tc *ttrpc.Client) error {
		return f(ctx, agent.NewAgentServiceClient(tc))
	})
}

// Check sends Health.Check (30 s) and requires SERVING.
func (s *Sandbox) Check(ctx context.Context) error {
	return s.agentCall(ctx, "grpc.Health", "Check", CheckTimeout, func(ctx context.Context, tc *ttrpc.Client) error {
		resp, err := agent.NewHealthClient(tc).Check(ctx, &agent.CheckRequest{})
		if err != nil {
			return err
		}
		if resp.Status != agent.HealthCheckResponse_SERVING {
			return fmt.Errorf("agent status %v", resp.Status)
		}
		return nil
	})
}

// SetPolicy sends SetPolicy.
func (s *Sandbox) SetPolicy(ctx context.Context, rego string) error {
	return s.svc(ctx, "SetPolicy", RemoteStartTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.SetPolicy(ctx, &agent.SetPolicyRequest{Policy: rego})
		return err
	})
}

// CreateSandbox sends the agent's CreateSandbox as the runtime does for a
// remote hypervisor (no storages, no kernel modules, no pid namespace).
func (s *Sandbox) CreateSandbox(ctx context.Context) error {
	return s.svc(ctx, "CreateSandbox", RemoteStartTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.CreateSandbox(ctx, &agent.CreateSandboxRequest{Hostname: s.Pod.Name, SandboxId: s.ID})
		return err
	})
}

// GuestDetails sends GetGuestDetails{mem_block_size, mem_hotplug_probe}.
func (s *Sandbox) GuestDetails(ctx context.Context) (*agent.GuestDetailsResponse, error) {
	var out *agent.GuestDetailsResponse
	err := s.svc(ctx, "GetGuestDetails", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		var err error
		out, err = a.GetGuestDetails(ctx, &agent.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
		return err
	})
	return out, err
}

// Start runs the runtime's sandbox start after CreateVM: StartVM, then
// Health.Check, SetPolicy (when the pod has a policy), CreateSandbox,
// GetGuestDetails, and the pause container's CreateContainer and
// StartContainer.
func (s *Sandbox) Start(ctx context.Context) error {
	if err := s.StartVM(ctx); err != nil {
		return err
	}
	if err := s.Check(ctx); err != nil {
		return err
	}
	if s.Pod.Policy != "" {
		if err := s.SetPolicy(ctx, s.Pod.Policy); err != nil {
			return err
		}
	}
	if err := s.CreateSandbox(ctx); err != nil {
		return err
	}
	if _, err := s.GuestDetails(ctx); err != nil {
		return err
	}
	if err := s.CreateContainer(ctx, s.PauseContainer()); err != nil {
		return err
	}
	return s.StartContainer(ctx, s.ID)
}

// Stop runs the runtime's sandbox stop: DestroySandbox, then StopVM.
func (s *Sandbox) Stop(ctx context.Context) error {
	if err := s.DestroySandbox(ctx); err != nil {
		return err
	}
	return s.StopVM(ctx)
}

// DestroySandbox sends DestroySandbox.
func (s *Sandbox) DestroySandbox(ctx context.Context) error {
	return s.svc(ctx, "DestroySandbox", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.DestroySandbox(ctx, &agent.DestroySandboxRequest{})
		return err
	})
}

// Container describes a container to create.
type Container struct {
	// ID is the container id.
	ID string
	// Image is the image reference ("pause" for the sandbox container).
	Image string
	// Sandbox marks the pause container (container-type "sandbox").
	Sandbox bool
	// Args, Env and Cwd are the process; Terminal asks for a tty.
	Args     []string
	Env      []string
	Cwd      string
	Terminal bool
	// Mounts are extra OCI mounts.
	Mounts []*agent.Mount
	// Files are host files bind-mounted into the container, by destination
	// path ("/etc/hosts"). With no shared file system the runtime copies
	// each into the guest with CopyFile (SharedPath) before CreateContainer
	// and bind-mounts the copy; CreateContainer does the same.
	Files map[string][]byte
	// Annotations are added to the spec's (CRI) annotations.
	Annotations map[string]string
}

// PauseContainer is the sandbox's pause container as the runtime creates it.
func (s *Sandbox) PauseContainer() Container {
	return Container{ID: s.ID, Image: "pause", Sandbox: true, Args: []string{"/pause"}, Cwd: "/"}
}

// PodFiles are the files kubelet bind-mounts into every container of pod
// (/etc/hosts, /etc/hostname, /etc/resolv.conf), for Container.Files.
func PodFiles(pod Pod) map[string][]byte {
	return map[string][]byte{
		"/etc/hosts":       []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
		"/etc/hostname":    []byte(pod.Name + "\n"),
		"/etc/resolv.conf": []byte("nameserver 10.96.0.10\nsearch " + pod.Namespace + ".svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"),
	}
}

// RootfsPath is where the guest mounts a container's image_guest_pull rootfs.
func RootfsPath(cid string) string { return path.Join("/run/kata-containers", cid, "rootfs") }

// SharedPath is where CopyFile puts a host file shared with container cid
// (fs_share_linux.go: <cid>-<16 hex>-<basename> under the shared directory).
func SharedPath(cid, base string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return path.Join("/run/kata-containers/shared/containers", cid+"-"+hex.EncodeToString(b)+"-"+path.Base(base))
}

// Request builds the CreateContainerRequest the runtime sends for ct: the
// rootfs is an image_guest_pull storage whose driver option carries the
// container's annotations, hooks are dropped and no network namespace path
// is passed.
func (s *Sandbox) Request(ct Container) (*agent.CreateContainerRequest, error) {
	annots := map[string]string{
		"io.kubernetes.cri.sandbox-id":        s.ID,
		"io.kubernetes.cri.sandbox-name":      s.Pod.Name,
		"io.kubernetes.cri.sandbox-namespace": s.Pod.Namespace,
	}
	if ct.Sandbox {
		annots["io.kubernetes.cri.container-type"] = "sandbox"
	} else {
		annots["io.kubernetes.cri.container-type"] = "container"
		annots["io.kubernetes.cri.image-name"] = ct.Image
		annots["io.kubernetes.cri.container-name"] = ct.ID
	}
	for k, v := range ct.Annotations {
		annots[k] = v
	}
	meta, err := json.Marshal(map[string]any{"metadata": annots})
	if err != nil {
		return nil, fmt.Errorf("container %s: image_guest_pull options: %w", ct.ID, err)
	}
	rootfs := RootfsPath(ct.ID)
	env := ct.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cwd := ct.Cwd
	if cwd == "" {
		cwd = "/"
	}
	mounts := []*agent.Mount{
		{Destination: "/proc", Source: "proc", Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Source: "tmpfs", Type: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/sys", Source: "sysfs", Type: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	mounts = append(mounts, ct.Mounts...)
	ns := []*agent.LinuxNamespace{{Type: "ipc"}, {Type: "uts"}, {Type: "mount"}}
	if ct.Sandbox {
		ns = append(ns, &agent.LinuxNamespace{Type: "pid"})
	}
	return &agent.CreateContainerRequest{
		ContainerId: ct.ID,
		ExecId:      ct.ID,
		Storages: []*agent.Storage{{
			Driver:        "image_guest_pull",
			DriverOptions: []string{"image_guest_pull=" + string(meta)},
			Source:        ct.Image,
			Fstype:        "overlay",
			MountPoint:    rootfs,
		}},
		OCI: &agent.Spec{
			Version: "1.1.0",
			Process: &agent.Process{
				Terminal: ct.Terminal, User: &agent.User{}, Args: ct.Args, Env: env, Cwd: cwd,
				NoNewPrivileges: true,
			},
			Root:        &agent.Root{Path: rootfs},
			Hostname:    s.Pod.Name,
			Mounts:      mounts,
			Annotations: annots,
			Linux:       &agent.Linux{Namespaces: ns, MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}},
		},
	}, nil
}

// CreateContainer copies ct's Files into the guest (CopyFile each, as the
// runtime shares bind-mounted host files), then sends CreateContainer for ct
// (create_container_timeout) with a bind mount of each copy.
func (s *Sandbox) CreateContainer(ctx context.Context, ct Container) error {
	dsts := make([]string, 0, len(ct.Files))
	for dst := range ct.Files {
		dsts = append(dsts, dst)
	}
	slices.Sort(dsts)
	ct.Mounts = slices.Clone(ct.Mounts)
	for _, dst := range dsts {
		guest := SharedPath(ct.ID, dst)
		if err := s.CopyFile(ctx, guest, ct.Files[dst], 0o644); err != nil {
			return err
		}
		ct.Mounts = append(ct.Mounts, &agent.Mount{Destination: dst, Source: guest, Type: "bind", Options: []string{"rbind", "rprivate", "ro"}})
	}
	req, err := s.Request(ct)
	if err != nil {
		return err
	}
	return s.CreateContainerRequest(ctx, req)
}

// CreateContainerRequest sends a ready-made CreateContainerRequest.
func (s *Sandbox) CreateContainerRequest(ctx context.Context, req *agent.CreateContainerRequest) error {
	return s.svc(ctx, "CreateContainer", s.c.cfg.CreateContainerTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.CreateContainer(ctx, req)
		return err
	})
}

// StartContainer sends StartContainer.
func (s *Sandbox) StartContainer(ctx context.Context, cid string) error {
	return s.svc(ctx, "StartContainer", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.StartContainer(ctx, &agent.StartContainerRequest{ContainerId: cid})
		return err
	})
}

// MaxCopyChunk is the runtime's CopyFile chunk size (grpcMaxDataSize).
const MaxCopyChunk = 1 << 20

// CopyFile copies data to guestPath in chunks of at most 1 MiB, as
// fs_share_linux.go does for every bind-mounted host file.
func (s *Sandbox) CopyFile(ctx context.Context, guestPath string, data []byte, mode uint32) error {
	off := 0
	for {
		n := min(len(data)-off, MaxCopyChunk)
		req := &agent.CopyFileRequest{
			Path: guestPath, FileSize: int64(len(data)), FileMode: syscall.S_IFREG | mode, DirMode: syscall.S_IFDIR | 0o750,
			Offset: int64(off), Data: data[off : off+n],
		}
		if err := s.svc(ctx, "CopyFile", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
			_, err := a.CopyFile(ctx, req)
			return err
		}); err != nil {
			return err
		}
		off += n
		if off >= len(data) {
			return nil
		}
	}
}

// WaitProcess sends WaitProcess (no timeout) and returns the exit status.
func (s *Sandbox) WaitProcess(ctx context.Context, cid, execID string) (int32, error) {
	var st int32
	err := s.svc(ctx, "WaitProcess", 0, func(ctx context.Context, a agent.AgentServiceService) error {
		resp, err := a.WaitProcess(ctx, &agent.WaitProcessRequest{ContainerId: cid, ExecId: execID})
		if err != nil {
			return err
		}
		st = resp.Status
		return nil
	})
	return st, err
}

// ReadAll reads a process's stdout (or stderr) with ReadStdout/ReadStderr
// requests until one returns no data (end of stream), as iostream.go does.
func (s *Sandbox) ReadAll(ctx context.Context, cid, execID string, stderr bool) ([]byte, error) {
	method := "ReadStdout"
	if stderr {
		method = "ReadStderr"
	}
	var out []byte
	for {
		var data []byte
		err := s.svc(ctx, method, 0, func(ctx context.Context, a agent.AgentServiceService) error {
			req := &agent.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 32 << 10}
			var resp *agent.ReadStreamResponse
			var err error
			if stderr {
				resp, err = a.ReadStderr(ctx, req)
			} else {
				resp, err = a.ReadStdout(ctx, req)
			}
			if err != nil {
				return err
			}
			data = resp.Data
			return nil
		})
		if err != nil {
			return out, err
		}
		if len(data) == 0 {
			return out, nil
		}
		out = append(out, data...)
	}
}

// ExecProcess sends ExecProcess for a new process execID in container cid.
func (s *Sandbox) ExecProcess(ctx context.Context, cid, execID string, args []string, terminal bool) error {
	return s.svc(ctx, "ExecProcess", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.ExecProcess(ctx, &agent.ExecProcessRequest{ContainerId: cid, ExecId: execID,
			Process: &agent.Process{Terminal: terminal, User: &agent.User{}, Args: args, Cwd: "/",
				Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}})
		return err
	})
}

// SignalProcess sends SignalProcess (execID "" = every process of cid).
func (s *Sandbox) SignalProcess(ctx context.Context, cid, execID string, sig syscall.Signal) error {
	return s.svc(ctx, "SignalProcess", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.SignalProcess(ctx, &agent.SignalProcessRequest{ContainerId: cid, ExecId: execID, Signal: uint32(sig)})
		return err
	})
}

// RemoveContainer sends RemoveContainer (only container_id, as the runtime).
func (s *Sandbox) RemoveContainer(ctx context.Context, cid string) error {
	return s.svc(ctx, "RemoveContainer", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.RemoveContainer(ctx, &agent.RemoveContainerRequest{ContainerId: cid})
		return err
	})
}

// RemoveStaleVirtiofsShareMounts sends RemoveStaleVirtiofsShareMounts.
func (s *Sandbox) RemoveStaleVirtiofsShareMounts(ctx context.Context) error {
	return s.svc(ctx, "RemoveStaleVirtiofsShareMounts", RequestTimeout, func(ctx context.Context, a agent.AgentServiceService) error {
		_, err := a.RemoveStaleVirtiofsShareMounts(ctx, &agent.RemoveStaleVirtiofsShareMountsRequest{})
		return err
	})
}

// DeleteContainer runs the runtime's container delete: SignalProcess(SIGKILL,
// all), WaitProcess, RemoveContainer, RemoveStaleVirtiofsShareMounts.
func (s *Sandbox) DeleteContainer(ctx context.Context, cid string) error {
	if err := s.SignalProcess(ctx, cid, "", syscall.SIGKILL); err != nil {
		return err
	}
	if _, err := s.WaitProcess(ctx, cid, cid); err != nil {
		return err
	}
	if err := s.RemoveContainer(ctx, cid); err != nil {
		return err
	}
	return s.RemoveStaleVirtiofsShareMounts(ctx)
}

// Run creates and starts an app container the way the runtime does —
// CopyFile for each file, CreateContainer, StartContainer — then waits for
// it while draining its stdout, and returns the output and exit status.
// files maps guest paths (see SharedPath) to contents, copied in addition
// to ct.Files.
func (s *Sandbox) Run(ctx context.Context, ct Container, files map[string][]byte) ([]byte, int32, error) {
	for p, data := range files {
		if err := s.CopyFile(ctx, p, data, 0o644); err != nil {
			return nil, 0, err
		}
	}
	if err := s.CreateContainer(ctx, ct); err != nil {
		return nil, 0, err
	}
	if err := s.StartContainer(ctx, ct.ID); err != nil {
		return nil, 0, err
	}
	type result struct {
		out []byte
		err error
	}
	rc := make(chan result, 1)
	go func() {
		out, err := s.ReadAll(ctx, ct.ID, ct.ID, false)
		rc <- result{out, err}
	}()
	st, err := s.WaitProcess(ctx, ct.ID, ct.ID)
	r := <-rc
	if err != nil {
		return r.out, st, err
	}
	return r.out, st, r.err
}

// MonitorInterval is how often the runtime's sandbox monitor checks the
// agent (monitor.go defaultCheckInterval).
const MonitorInterval = 5 * time.Second

// Monitor runs the runtime's sandbox monitor until ctx ends: Health.Check
// every interval (MonitorInterval if 0), each on a new connection. The
// first failed check is sent on the returned channel, which is closed when
// Monitor stops.
func (s *Sandbox) Monitor(ctx context.Context, interval time.Duration) <-chan error {
	if interval <= 0 {
		interval = MonitorInterval
	}
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := s.Check(ctx); err != nil {
				if ctx.Err() == nil {
					errc <- err
				}
				return
			}
		}
	}()
	return errc
}

// WatchOOM runs the runtime's OOM watcher until ctx ends or a request
// fails: GetOOMEvent with no timeout, again and again, each on a new
// connection. Every container id reported is sent on the returned channel,
// which is closed when WatchOOM stops.
func (s *Sandbox) WatchOOM(ctx context.Context) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		for {
			var cid string
			err := s.svc(ctx, "GetOOMEvent", 0, func(ctx context.Context, a agent.AgentServiceService) error {
				ev, err := a.GetOOMEvent(ctx, &agent.GetOOMEventRequest{})
				if err != nil {
					return err
				}
				cid = ev.ContainerId
				return nil
			})
			if err != nil {
				return
			}
			select {
			case out <- cid:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
