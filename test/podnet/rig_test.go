package podnet_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/podnet"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/netnsstate"
	"github.com/peerpod/peerpod/test/procprovider"
)

// The CNI-like pod network the tests make: a "cluster" namespace whose
// bridge holds the client's address, and a pod namespace joined to the
// bridge by a veth, as a bridge CNI plugin would do on a node.
const (
	clientIP = "10.250.0.1"
	podIP    = "10.250.0.2"
	podPort  = 8080
	cliPort  = 8081
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TAP, tc)")
	}
	for _, b := range []string{"ip", "tc", "nsenter", "ping"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s", b)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
}

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// buildAgent builds cmd/podvm-agent once per test binary.
func buildAgent(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		mod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			agentErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(mod)))
		dir, err := os.MkdirTemp("", "podnet-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentBin = filepath.Join(dir, "podvm-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "./cmd/podvm-agent")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("go build ./cmd/podvm-agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rig is one pod: its CNI-like namespaces, peerpodd in this process and
// its VM (a podvm-agent process of the process provider).
type rig struct {
	t       testing.TB
	mode    string
	cluster string // netns of the bridge and the client
	pod     string // the pod's netns (CNI's)
	base    string
	self    string
	prov    *procprovider.Provider
	cfg     *config.Config
	logf    *os.File
	stop    func()
	kc      *kataclient.Client
	sb      *kataclient.Sandbox
	vm      procprovider.VM
}

// newRig makes the namespaces with the given MTU on the CNI side and
// starts peerpodd in mode; start makes the VM.
func newRig(t testing.TB, mode string, mtu int) *rig {
	t.Helper()
	return newRigWith(t, mode, mtu, rigOptions{})
}

// rigOptions tune newRigWith.
type rigOptions struct {
	// agentArgs are extra podvm-agent flags.
	agentArgs []string
	// cgroups gives the agent this process's cgroup mounts (runc needs
	// them; "ip netns exec" mounts a /sys of its own without them).
	cgroups bool
}

func newRigWith(t testing.TB, mode string, mtu int, o rigOptions) *rig {
	t.Helper()
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sfx := randHex(4)
	r := &rig{t: t, mode: mode, cluster: "ppc-" + sfx, pod: "ppp-" + sfx, self: self}
	base, err := os.MkdirTemp("", "podnet-")
	if err != nil {
		t.Fatal(err)
	}
	r.base = base
	t.Cleanup(func() { os.RemoveAll(base) })
	for _, ns := range []string{r.cluster, r.pod} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	m := strconv.Itoa(mtu)
	c, p := r.cluster, r.pod
	for _, s := range [][]string{
		{"-n", c, "link", "set", "lo", "up"},
		{"-n", c, "link", "add", "br0", "mtu", m, "type", "bridge"},
		{"-n", c, "link", "add", "vp0", "mtu", m, "type", "veth", "peer", "name", "eth0", "mtu", m, "netns", p},
		{"-n", c, "link", "set", "vp0", "master", "br0", "up"},
		{"-n", c, "addr", "add", clientIP + "/24", "dev", "br0"},
		{"-n", c, "link", "set", "br0", "up"},
		{"-n", p, "link", "set", "lo", "up"},
		{"-n", p, "addr", "add", podIP + "/24", "dev", "eth0"},
		{"-n", p, "link", "set", "eth0", "up"},
		{"-n", p, "route", "add", "default", "via", clientIP},
		{"-n", p, "route", "add", "10.251.0.0/16", "via", clientIP},
		{"-n", p, "neigh", "add", "10.250.0.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "permanent"},
	} {
		run(t, "ip", s...)
	}
	// Let IPv6 duplicate address detection finish, so the namespace's
	// state is settled before the tests snapshot it.
	for i := 0; strings.TrimSpace(run(t, "ip", "-n", p, "-6", "addr", "show", "tentative")) != ""; i++ {
		if i == 100 {
			t.Fatal("IPv6 addresses of the pod namespace still tentative after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	agent := buildAgent(t)
	args := append([]string{"--dev-allow-all-policy", "--log-level", "debug", "--set-hostname=false"}, o.agentArgs...)
	var command func(vm *procprovider.VM) []string
	if o.cgroups {
		script := cgroupMounts(t) + `exec "$@"`
		command = func(vm *procprovider.VM) []string {
			return append([]string{"/bin/sh", "-ec", script, "agent",
				agent, "--userdata-file", vm.UserData, "--state-dir", vm.AgentDir}, args...)
		}
	}
	r.prov, err = procprovider.New(procprovider.Config{
		StateDir: filepath.Join(base, "vms"), AgentPath: agent, AgentArgs: args, Command: command,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.prov.DeleteAll(context.Background()) })
	env := map[string]string{
		"CLOUD_PROVIDER": procprovider.Name, "ATTESTER": "fake", "NODE_NAME": "podnet-" + sfx, "CLUSTER_ID": "podnet",
		"REMOTE_HYPERVISOR_ENDPOINT": filepath.Join(base, "hypervisor.sock"), "PODS_DIR": filepath.Join(base, "pods"),
		"STATE_DIR": filepath.Join(base, "state"), "PROXY_TIMEOUT": "60s",
		"TUNNEL_TYPE": mode, "VXLAN_PORT": strconv.Itoa(20000 + int(sfx[0])*40 + int(sfx[1])),
	}
	r.cfg, err = config.Load(func(k string) string { return env[k] }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.logf, _ = os.Create(filepath.Join(base, "peerpodd.log"))
	r.startDaemon()
	r.kc, err = kataclient.New(kataclient.Config{HypervisorSocket: r.cfg.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startDaemon runs peerpodd in this process until r.stop.
func (r *rig) startDaemon() {
	t := r.t
	d, err := daemon.New(daemon.Options{Config: r.cfg, Provider: r.prov, ProbeAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(r.logf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Started():
	case err := <-done:
		t.Fatalf("peerpodd: %v", err)
	}
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
}

// dump logs peerpodd's and the agent's logs (on failure).
func (r *rig) dump() {
	r.logf.Sync()
	b, _ := os.ReadFile(r.logf.Name())
	r.t.Logf("peerpodd log:\n%s", b)
	vms, _ := r.prov.VMs()
	for _, vm := range vms {
		b, _ := os.ReadFile(vm.Log)
		r.t.Logf("agent log of %s:\n%s", vm.Name, b)
	}
}

func (r *rig) fatalf(format string, args ...any) {
	r.t.Helper()
	r.dump()
	r.t.Fatalf(format, args...)
}

// start makes the sandbox and its VM with the pod netns, and starts the
// pod's server in the VM's pod namespace.
func (r *rig) start(ctx context.Context) {
	t := r.t
	id := kataclient.NewSandboxID()
	sb, err := r.kc.NewSandbox(ctx, id, kataclient.Pod{Name: "web", Namespace: "podnet", VCPUs: 1, MemoryMiB: 256},
		"/var/run/netns/"+r.pod)
	if err != nil {
		t.Fatal(err)
	}
	r.sb = sb
	t.Cleanup(func() { sb.StopVM(context.Background()) })
	if err := sb.StartVM(ctx); err != nil {
		r.fatalf("StartVM: %v", err)
	}
	vms, err := r.prov.VMs()
	if err != nil || len(vms) != 1 {
		r.fatalf("VMs: %+v, %v", vms, err)
	}
	r.vm = vms[0]
	srv := r.inPod("serve", fmt.Sprintf(":%d", podPort))
	r.background(srv)
}

// inPod is a helper command run in the VM's pod network namespace (where
// the agent puts the pod's containers).
func (r *rig) inPod(args ...string) *exec.Cmd {
	argv := append([]string{"-t", strconv.Itoa(r.vm.PID), "-m", "--", "nsenter", "--net=" + filepath.Join(r.vm.AgentDir, "podns"), "--"}, args...)
	if args[0] == "serve" || args[0] == "get" || args[0] == "show" {
		argv = append(argv[:len(argv)-len(args)], append([]string{r.self}, args...)...)
	}
	cmd := exec.Command("nsenter", argv...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	return cmd
}

// inCluster is a helper command run in the client's namespace.
func (r *rig) inCluster(args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", r.cluster}, args...)
	if args[0] == "serve" || args[0] == "get" || args[0] == "show" {
		argv = append([]string{"netns", "exec", r.cluster, r.self}, args...)
	}
	cmd := exec.Command("ip", argv...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	return cmd
}

// background starts a server helper and waits for it to listen.
func (r *rig) background(cmd *exec.Cmd) {
	t := r.t
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "listening" {
		r.fatalf("server %v: %q %v %s", cmd.Args, line, err, stderr.String())
	}
}

// output runs a command with a deadline and returns its stdout.
func output(ctx context.Context, cmd *exec.Cmd) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	if err := cmd.Wait(); err != nil {
		return stdout.String(), fmt.Errorf("%v: %v: %s", cmd.Args, err, stderr.String())
	}
	return stdout.String(), nil
}

// podState is what CNI left in the pod namespace, as text.
func (r *rig) podState() string {
	r.t.Helper()
	st, err := netnsstate.Of(r.pod, "eth0")
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// hostLeftover says whether the sandbox's device is in this namespace.
func hostLeftover(t testing.TB, id string) bool {
	t.Helper()
	return exec.Command("ip", "link", "show", podnet.DeviceName(id)).Run() == nil
}

// cgroupMounts is a shell script that mounts this process's cgroup
// hierarchies again under a fresh /sys (as "ip netns exec" leaves it).
func cgroupMounts(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var sc strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || (f[1] != "/sys/fs/cgroup" && !strings.HasPrefix(f[1], "/sys/fs/cgroup/")) {
			continue
		}
		fmt.Fprintf(&sc, "mkdir -p %s && mount -t %s -o %s %s %s\n", f[1], f[2], f[3], f[0], f[1])
	}
	if sc.Len() == 0 {
		t.Skip("needs cgroups mounted at /sys/fs/cgroup")
	}
	return sc.String()
}
