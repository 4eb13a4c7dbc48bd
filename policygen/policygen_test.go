package policygen

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/protobuf/proto"

	"github.com/peerpod/peerpod/agent/policy"
	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/initdata"
)

// testRegistry serves an OCI registry on loopback with one image,
// shop/app:1.0, and returns the registry host and the image's digest.
func testRegistry(t testing.TB) (host, digest string) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: []string{"/app/server"},
		Cmd:        []string{"--help"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"},
		WorkingDir: "/app",
		User:       "65532",
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/shop/app:1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host, d.String()
}

func podYAML(t testing.TB, host string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), "REGISTRY", host))
}

const (
	sandboxID = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	appID     = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	sidecarID = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

var serviceEnv = []string{
	"HOSTNAME=web",
	"KUBERNETES_SERVICE_HOST=10.96.0.1",
	"KUBERNETES_SERVICE_PORT=443",
	"KUBERNETES_SERVICE_PORT_HTTPS=443",
	"KUBERNETES_PORT=tcp://10.96.0.1:443",
	"KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
	"KUBERNETES_PORT_443_TCP_PROTO=tcp",
	"KUBERNETES_PORT_443_TCP_PORT=443",
	"KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1",
}

func shared(cid, name string) string {
	return "/run/kata-containers/shared/containers/" + cid + "-0123456789abcdef-" + name
}

// baseMounts are the mounts containerd and the Kata shim give a container.
func baseMounts(cid string) []*agent.Mount {
	return []*agent.Mount{
		{Destination: "/proc", Source: "proc", Type: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Source: "tmpfs", Type: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Source: "devpts", Type: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Source: "mqueue", Type: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Source: "sysfs", Type: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Source: "cgroup", Type: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: "/etc/hosts", Source: shared(cid, "hosts"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/dev/termination-log", Source: shared(cid, "termination-log"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/hostname", Source: shared(cid, "hostname"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/resolv.conf", Source: shared(cid, "resolv.conf"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/dev/shm", Source: "/run/kata-containers/sandbox/shm", Type: "bind", Options: []string{"rbind"}},
		{Destination: "/var/run/secrets/kubernetes.io/serviceaccount", Source: shared(cid, "serviceaccount"), Type: "bind", Options: []string{"rbind", "rprivate", "ro"}},
	}
}

func request(cid, containerType, name, image string, proc *agent.Process, readonly bool, mounts []*agent.Mount) *agent.CreateContainerRequest {
	anno := map[string]string{
		"io.kubernetes.cri.container-type":      containerType,
		"io.kubernetes.cri.sandbox-name":        "web",
		"io.kubernetes.cri.sandbox-namespace":   "shop",
		"io.kubernetes.cri.sandbox-id":          sandboxID,
		"io.katacontainers.pkg.oci.bundle_path": "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + cid,
	}
	if containerType == "container" {
		anno["io.kubernetes.cri.container-name"] = name
		anno["io.kubernetes.cri.image-name"] = image
	}
	return &agent.CreateContainerRequest{
		ContainerId: cid,
		ExecId:      cid,
		Storages: []*agent.Storage{{
			Driver:        "image_guest_pull",
			DriverOptions: []string{`image_guest_pull={"metadata":{}}`},
			Source:        image,
			Fstype:        "overlay",
			MountPoint:    "/run/kata-containers/" + cid + "/rootfs",
		}},
		OCI: &agent.Spec{
			Version:     "1.1.0",
			Process:     proc,
			Root:        &agent.Root{Path: "/run/kata-containers/" + cid + "/rootfs", Readonly: readonly},
			Hostname:    "web",
			Mounts:      mounts,
			Annotations: anno,
			Linux: &agent.Linux{
				CgroupsPath:   "/kubepods/besteffort/pod1/" + cid,
				Namespaces:    []*agent.LinuxNamespace{{Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
				MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/proc/keys"},
				ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/sys"},
				Resources:     &agent.LinuxResources{Memory: &agent.LinuxMemory{Limit: 128 << 20}},
			},
		},
	}
}

func caps(list ...string) *agent.LinuxCapabilities {
	return &agent.LinuxCapabilities{Bounding: list, Effective: list, Permitted: list}
}

// podRequests are what the Kata shim sends for testdata/pod.yaml (written
// from the pod spec and the image, independently of the generator).
func podRequests(pinned string) (pause, app, sidecar *agent.CreateContainerRequest) {
	imageEnv := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
	pause = request(sandboxID, "sandbox", "", "pause", &agent.Process{
		User:            &agent.User{UID: 65535, GID: 65535},
		Args:            []string{"/pause"},
		Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cwd:             "/",
		Capabilities:    caps(DefaultCapabilities...),
		NoNewPrivileges: true,
	}, true, baseMounts(sandboxID)[:6])

	appMounts := append(baseMounts(appID),
		&agent.Mount{Destination: "/etc/app", Source: shared(appID, "config"), Type: "bind", Options: []string{"rbind", "rprivate", "ro"}},
		&agent.Mount{Destination: "/cache", Source: shared(appID, "cache"), Type: "bind", Options: []string{"rbind", "rprivate", "rw"}},
	)
	app = request(appID, "container", "app", pinned, &agent.Process{
		User:            &agent.User{UID: 1000, GID: 0},
		Args:            []string{"/app/server", "--port", "8080"},
		Env:             append(append(slices.Clone(imageEnv), "MODE=production", "DB_PASSWORD=s3cret"), serviceEnv...),
		Cwd:             "/srv",
		Capabilities:    caps("CAP_NET_BIND_SERVICE"),
		NoNewPrivileges: true,
	}, true, appMounts)

	sidecar = request(sidecarID, "container", "sidecar", pinned, &agent.Process{
		User:         &agent.User{UID: 65532},
		Args:         []string{"/bin/sh", "-c", "echo debug"},
		Env:          append(append(slices.Clone(imageEnv), "MODE=debug"), serviceEnv...),
		Cwd:          "/app",
		Capabilities: caps(DefaultCapabilities...),
	}, false, baseMounts(sidecarID))
	return pause, app, sidecar
}

func engineFor(t testing.TB, res *Result) *policy.Engine {
	t.Helper()
	id, err := initdata.Parse(res.Initdata)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(context.Background(), id.Policy(), policy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func generate(t testing.TB) (*Result, string) {
	t.Helper()
	host, digest := testRegistry(t)
	res, err := Generate(context.Background(), podYAML(t, host), Options{Resolver: &RegistryResolver{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return res, host + "/shop/app@" + digest
}

func TestGeneratedPolicyAllowsThePod(t *testing.T) {
	res, pinned := generate(t)
	if res.Workload != "Pod/web" {
		t.Fatalf("workload %q", res.Workload)
	}
	if got := res.Data.Containers[1].Image; got != pinned {
		t.Fatalf("pinned image %q, want %q", got, pinned)
	}
	if tag := strings.Split(pinned, "@")[0] + ":1.0"; res.Pinned[tag] != pinned || len(res.Pinned) != 1 {
		t.Fatalf("Pinned = %v", res.Pinned)
	}
	anno, err := initdata.DecodeAnnotation(res.Annotation)
	if err != nil || string(anno) != string(res.Initdata) {
		t.Fatalf("annotation does not decode to the initdata: %v", err)
	}
	e := engineFor(t, res)
	ctx := context.Background()
	pause, app, sidecar := podRequests(pinned)
	for _, r := range []struct {
		method string
		req    proto.Message
	}{
		{"CreateSandbox", &agent.CreateSandboxRequest{Hostname: "web", SandboxId: sandboxID, Storages: []*agent.Storage{{Driver: "ephemeral", Source: "shm", Fstype: "tmpfs", MountPoint: "/run/kata-containers/sandbox/shm"}}}},
		{"CreateContainer", pause},
		{"StartContainer", &agent.StartContainerRequest{ContainerId: sandboxID}},
		{"CopyFile", &agent.CopyFileRequest{Path: shared(appID, "hosts"), FileMode: 0o100644, Data: []byte("127.0.0.1 localhost\n")}},
		{"CopyFile", &agent.CopyFileRequest{Path: shared(appID, "config") + "/..data", FileMode: 0o120777, Data: []byte("..2026_11_26_20_00_00.1")}},
		{"CreateContainer", app},
		{"CreateContainer", sidecar},
		{"ExecProcess", &agent.ExecProcessRequest{ContainerId: appID, ExecId: "e1", Process: &agent.Process{Args: []string{"/app/check", "--ready"}, Cwd: "/srv"}}},
		{"ReadStdout", &agent.ReadStreamRequest{ContainerId: appID, ExecId: appID}},
		{"RemoveContainer", &agent.RemoveContainerRequest{ContainerId: sidecarID}},
	} {
		if err := e.Authorize(ctx, r.method, r.req); err != nil {
			t.Fatalf("%s: %v", r.method, err)
		}
	}
}

func TestGeneratedPolicyDenialsNameTheDifference(t *testing.T) {
	res, pinned := generate(t)
	tests := []struct {
		name   string
		mutate func(r *agent.CreateContainerRequest)
		want   string
	}{
		{"command", func(r *agent.CreateContainerRequest) { r.OCI.Process.Args[2] = "9090" }, `command: policy ["/app/server", "--port", "8080"] request ["/app/server", "--port", "9090"]`},
		{"env changed", func(r *agent.CreateContainerRequest) { r.OCI.Process.Env[2] = "MODE=debug" }, `env: not allowed ["MODE=debug"] missing ["MODE=production"]`},
		{"env added", func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "LD_PRELOAD=/tmp/x.so")
		}, `env: not allowed ["LD_PRELOAD=/tmp/x.so"]`},
		{"runtime variable with a bad value", func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "EVIL_SERVICE_HOST=10.0.0.1;x")
		}, `env: not allowed ["EVIL_SERVICE_HOST=10.0.0.1;x"]`},
		{"runtime variable hiding a second line", func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Env = append(r.OCI.Process.Env, "HOSTNAME=web\nTERM=xterm")
		}, `env: not allowed ["HOSTNAME=web\nTERM=xterm"]`},
		{"image digest", func(r *agent.CreateContainerRequest) {
			r.Storages[0].Source = strings.Split(pinned, "@")[0] + "@sha256:" + strings.Repeat("1", 64)
		}, "image: policy " + pinned},
		{"extra mount", func(r *agent.CreateContainerRequest) {
			r.OCI.Mounts = append(r.OCI.Mounts, &agent.Mount{Destination: "/host", Source: "/", Type: "bind", Options: []string{"rbind"}})
		}, `mounts: not allowed ["/host"]`},
		{"mount source outside the shared dir", func(r *agent.CreateContainerRequest) { r.OCI.Mounts[12].Source = "/etc" }, `mounts: not allowed ["/etc/app"]`},
		{"read-only volume made writable", func(r *agent.CreateContainerRequest) { r.OCI.Mounts[12].Options = []string{"rbind", "rw"} }, `not read-only ["/etc/app"]`},
		{"volume missing", func(r *agent.CreateContainerRequest) { r.OCI.Mounts = r.OCI.Mounts[:13] }, `missing ["/cache"]`},
		{"privileged", func(r *agent.CreateContainerRequest) {
			r.OCI.Process.Capabilities = caps("CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE")
		}, `capabilities not allowed: ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]`},
		{"privilege escalation", func(r *agent.CreateContainerRequest) { r.OCI.Process.NoNewPrivileges = false }, "noNewPrivileges true"},
		{"user", func(r *agent.CreateContainerRequest) { r.OCI.Process.User.UID = 0 }, "user: policy uid 1000 request uid 0"},
		{"working dir", func(r *agent.CreateContainerRequest) { r.OCI.Process.Cwd = "/" }, `working dir: policy /srv request /`},
		{"namespace", func(r *agent.CreateContainerRequest) {
			r.OCI.Annotations["io.kubernetes.cri.sandbox-namespace"] = "default"
		}, "namespace: policy shop request default"},
		{"unknown container", func(r *agent.CreateContainerRequest) { r.OCI.Annotations["io.kubernetes.cri.container-name"] = "miner" }, "CreateContainerRequest is blocked"},
		{"hooks", func(r *agent.CreateContainerRequest) { r.OCI.Hooks = &agent.Hooks{} }, "hooks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := engineFor(t, res)
			_, app, _ := podRequests(pinned)
			tt.mutate(app)
			err := e.Authorize(context.Background(), "CreateContainer", app)
			if err == nil {
				t.Fatal("allowed")
			}
			if !policy.IsDenied(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("denial %q\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

func TestGeneratedPolicyRefusesOtherRequests(t *testing.T) {
	res, pinned := generate(t)
	e := engineFor(t, res)
	ctx := context.Background()
	_, app, _ := podRequests(pinned)
	if err := e.Authorize(ctx, "CreateContainer", app); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		method string
		req    proto.Message
		want   string
	}{
		{"ExecProcess", &agent.ExecProcessRequest{ContainerId: appID, Process: &agent.Process{Args: []string{"/bin/sh"}}}, `exec: ["/bin/sh"] is not an exec command`},
		{"ExecProcess", &agent.ExecProcessRequest{ContainerId: "unknown", Process: &agent.Process{Args: []string{"/app/check", "--ready"}}}, "ExecProcessRequest is blocked"},
		{"SetPolicy", &agent.SetPolicyRequest{Policy: "package agent_policy"}, "SetPolicyRequest is blocked"},
		{"CopyFile", &agent.CopyFileRequest{Path: "/etc/shadow", FileMode: 0o100644}, "CopyFile: /etc/shadow"},
		{"CopyFile", &agent.CopyFileRequest{Path: shared(appID, "x"), FileMode: 0o120777, Data: []byte("../../../etc")}, "CopyFileRequest is blocked"},
		{"CreateSandbox", &agent.CreateSandboxRequest{GuestHookPath: "/usr/share/oci/hooks"}, "CreateSandboxRequest is blocked"},
		{"WriteStdin", &agent.WriteStreamRequest{ContainerId: appID}, "WriteStreamRequest"},
	} {
		err := e.Authorize(ctx, r.method, r.req)
		if err == nil || !strings.Contains(err.Error(), r.want) {
			t.Fatalf("%s: %v, want denial containing %q", r.method, err, r.want)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, yaml string
		resolver   ImageResolver
		want       string
	}{
		{"no workload", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", OfflineResolver{}, "no Pod"},
		{"two workloads", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: x}]}\n---\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c, image: x}]}\n", OfflineResolver{}, "more than one workload"},
		{"tag offline", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: nginx:1.27, command: [nginx]}]}\n", OfflineResolver{}, "not pinned by digest"},
		{"no command offline", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: \"nginx@sha256:" + strings.Repeat("a", 64) + "\"}]}\n", OfflineResolver{}, "no command in the pod spec"},
		{"unknown field", "kind: Pod\nmetadata: {name: a}\nspec: {containerz: []}\n", OfflineResolver{}, "unknown field"},
		{"envFrom missing", "kind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, command: [x], image: \"nginx@sha256:" + strings.Repeat("a", 64) + "\", envFrom: [{configMapRef: {name: cm}}]}]}\n", OfflineResolver{}, `envFrom ConfigMap "cm" is not in the input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Generate(ctx, []byte(tt.yaml), Options{Resolver: tt.resolver})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestDeploymentAndEnvFrom(t *testing.T) {
	y := `apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {LEVEL: info}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: "registry.example/api@sha256:` + strings.Repeat("b", 64) + `"
        command: ["/api", "--level=$(LEVEL)"]
        envFrom: [{configMapRef: {name: settings}, prefix: APP_}]
        env: [{name: LEVEL, value: debug}]
`
	res, err := Generate(context.Background(), []byte(y), Options{Resolver: OfflineResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Data.Containers[1]
	if !slices.Equal(c.Args, []string{"/api", "--level=debug"}) {
		t.Fatalf("args %v", c.Args)
	}
	if !slices.Equal(c.Env, []string{"APP_LEVEL=info", "LEVEL=debug"}) {
		t.Fatalf("env %v", c.Env)
	}
	if res.Data.Namespace != "prod" || res.Data.SandboxNameRegex != `^api-[a-z0-9]{1,10}-[a-z0-9]{5}$` {
		t.Fatalf("namespace %q regex %q", res.Data.Namespace, res.Data.SandboxNameRegex)
	}
	if len(res.Warnings) == 0 {
		t.Fatal("offline generation gave no warning")
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)-$(B)": "1-two", "$$(A)": "$(A)", "$(C)": "$(C)", "x$": "x$", "$(A": "$(A", "plain": "plain",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// The runtime-variable patterns accept the service links and HOSTNAME the
// runtime adds and nothing else; the one-per-line form agrees with the
// per-variable form.
func TestRuntimeEnvRegex(t *testing.T) {
	common := defaultCommon()
	one := regexp.MustCompile(common.EnvRegex)
	lines := regexp.MustCompile(common.EnvLinesRegex)
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"HOSTNAME=web-7d9f8-abcde", true},
		{"TERM=xterm", true},
		{"KUBERNETES_SERVICE_HOST=10.96.0.1", true},
		{"KUBERNETES_SERVICE_PORT=443", true},
		{"KUBERNETES_SERVICE_PORT_HTTPS=443", true},
		{"KUBERNETES_PORT=tcp://10.96.0.1:443", true},
		{"KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443", true},
		{"DNS_PORT_53_UDP=udp://[fd00::a]:53", true},
		{"KUBERNETES_PORT_443_TCP_PROTO=tcp", true},
		{"KUBERNETES_PORT_443_TCP_PORT=443", true},
		{"KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1", true},
		{"REDIS_PORT_6379_SCTP_ADDR=fd00::1", true},
		{"LD_PRELOAD=/tmp/x.so", false},
		{"EVIL_SERVICE_HOST=10.0.0.1;x", false},
		{"KUBERNETES_PORT=http://10.96.0.1:443", false},
		{"KUBERNETES_PORT_443_TCP_PROTO=icmp", false},
		{"_SERVICE_PORT=1", false},
		{"TERM=vt100", false},
		{"HOSTNAME=web\nTERM=xterm", false},
		{"PATH=/bin", false},
	} {
		if got := one.MatchString(tc.env); got != tc.want {
			t.Errorf("env_regex on %q = %v, want %v", tc.env, got, tc.want)
		}
		if strings.Contains(tc.env, "\n") {
			continue // the rules refuse a variable holding a newline before the lines match
		}
		if got := lines.MatchString(tc.env + "\n"); got != tc.want {
			t.Errorf("env_lines_regex on %q = %v, want %v", tc.env, got, tc.want)
		}
	}
	all := "HOSTNAME=web\nKUBERNETES_SERVICE_HOST=10.96.0.1\nKUBERNETES_PORT_443_TCP_ADDR=10.96.0.1\n"
	if !lines.MatchString(all) || lines.MatchString(all+"PATH=/bin\n") {
		t.Error("env_lines_regex does not check every line")
	}
}

// BenchmarkRuntimeEnvRegex compares env_lines_regex with the same forms
// written as separate alternatives (each repeating the name pattern), on
// the runtime lines of a pod with one service.
func BenchmarkRuntimeEnvRegex(b *testing.B) {
	separate := regexp.MustCompile("^(?:(?:" + strings.Join([]string{
		`HOSTNAME=[A-Za-z0-9.-]+`,
		`TERM=xterm`,
		`[A-Z0-9_]+_SERVICE_HOST=[0-9a-fA-F.:]+`,
		`[A-Z0-9_]+_SERVICE_PORT(?:_[A-Z0-9_]+)?=[0-9]+`,
		`[A-Z0-9_]+_PORT=(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:[0-9]+`,
		`[A-Z0-9_]+_PORT_[0-9]+_(?:TCP|UDP|SCTP)=(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:[0-9]+`,
		`[A-Z0-9_]+_PORT_[0-9]+_(?:TCP|UDP|SCTP)_PROTO=(?:tcp|udp|sctp)`,
		`[A-Z0-9_]+_PORT_[0-9]+_(?:TCP|UDP|SCTP)_PORT=[0-9]+`,
		`[A-Z0-9_]+_PORT_[0-9]+_(?:TCP|UDP|SCTP)_ADDR=[0-9a-fA-F.:]+`,
	}, "|") + ")\n)*$")
	shared := regexp.MustCompile(defaultCommon().EnvLinesRegex)
	lines := "HOSTNAME=web\nKUBERNETES_SERVICE_HOST=10.96.0.1\nKUBERNETES_SERVICE_PORT=443\n" +
		"KUBERNETES_PORT=tcp://10.96.0.1:443\nKUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443\n" +
		"KUBERNETES_PORT_443_TCP_PROTO=tcp\nKUBERNETES_PORT_443_TCP_PORT=443\nKUBERNETES_PORT_443_TCP_ADDR=10.96.0.1\n"
	for _, re := range []*regexp.Regexp{separate, shared} {
		if !re.MatchString(lines) {
			b.Fatalf("%s does not match the lines", re)
		}
	}
	b.Run("separate", func(b *testing.B) {
		for range b.N {
			separate.MatchString(lines)
		}
	})
	b.Run("shared-prefix", func(b *testing.B) {
		for range b.N {
			shared.MatchString(lines)
		}
	})
}
