package policygen

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PolicyData is the policy_data document the rules read.
type PolicyData struct {
	// Namespace is the pod's namespace, "" = any.
	Namespace string `json:"namespace"`
	// SandboxNameRegex matches the pod names the workload produces.
	SandboxNameRegex string `json:"sandbox_name_regex"`
	// Containers lists the sandbox (pause) container first, then the init
	// containers and containers in order.
	Containers []Container `json:"containers"`
	// ContainerIndex maps a container name to its index in Containers.
	ContainerIndex  map[string]int  `json:"container_index"`
	Common          Common          `json:"common"`
	RequestDefaults map[string]bool `json:"request_defaults"`
}

// Container is what one container may look like.
type Container struct {
	Name    string `json:"name"`
	Sandbox bool   `json:"sandbox"`
	// Image is the digest-pinned reference the guest pulls.
	Image string   `json:"image"`
	Args  []string `json:"args"`
	// Env lists exact NAME=value entries the process must have.
	Env []string `json:"env"`
	// EnvAnyValue lists names whose value is not known in advance
	// (valueFrom, Secrets): any value is allowed.
	EnvAnyValue []string `json:"env_any_value"`
	Cwd         string   `json:"cwd"`
	// UID is the required user ID, nil when not pinned.
	UID             *uint32  `json:"uid"`
	Privileged      bool     `json:"privileged"`
	ReadOnlyRoot    bool     `json:"read_only_root"`
	NoNewPrivileges bool     `json:"no_new_privileges"`
	Capabilities    []string `json:"capabilities"`
	Mounts          []Mount  `json:"mounts"`
	// RequiredMounts are the destinations that must be mounted (the pod's
	// volumes); ReadOnlyMounts those that must carry "ro".
	RequiredMounts []string `json:"required_mounts"`
	ReadOnlyMounts []string `json:"ro_mounts"`
	// ExecCommands are the commands ExecProcess may run (exec probes and
	// lifecycle hooks).
	ExecCommands [][]string `json:"exec_commands"`
}

// Mount is an allowed mount.
type Mount struct {
	Destination string `json:"destination"`
	Type        string `json:"type_"`
	ReadOnly    bool   `json:"read_only"`
	// Required mounts must be present (the pod's volumes).
	Required bool `json:"required"`
	// SourcePrefix is where the source must lie ("" = anywhere, for
	// non-bind mounts).
	SourcePrefix string `json:"source_prefix"`
}

// Common holds the settings shared by all containers.
type Common struct {
	// EnvRegex matches variables the runtime adds (service links, HOSTNAME).
	EnvRegex string `json:"env_regex"`
	// EnvLinesRegex matches any number of such variables, each followed by
	// a newline: the rules check all of a request's runtime variables with
	// one match.
	EnvLinesRegex string `json:"env_lines_regex"`
	// CopyFileRegex is where CopyFile may write.
	CopyFileRegex string `json:"copy_file_regex"`
}

// DefaultCapabilities are the capabilities containerd grants a
// non-privileged container.
var DefaultCapabilities = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_CHROOT",
}

// runtimeEnv matches one variable the runtime adds: HOSTNAME, TERM and the
// service links. The service-link forms share their "<NAME>_" prefix in one
// branch, so a regular expression engine that backtracks tries the name
// once per line rather than once per form (three times faster on a pod's
// usual eight lines). The name is matched lazily ("+?"): the forms follow
// the first "_" of a usual name, so a backtracking engine finds them
// without first taking the whole variable and giving it back one
// character at a time. Lazy or greedy, the language is the same.
const runtimeEnv = `HOSTNAME=[A-Za-z0-9.-]+|TERM=xterm|[A-Z0-9_]+?_(?:` +
	`SERVICE_HOST=[0-9a-fA-F.:]+|` +
	`SERVICE_PORT(?:_[A-Z0-9_]+)?=[0-9]+|` +
	`PORT=(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:[0-9]+|` +
	`PORT_[0-9]+_(?:TCP|UDP|SCTP)(?:` +
	`=(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:[0-9]+|` +
	`_PROTO=(?:tcp|udp|sctp)|` +
	`_PORT=[0-9]+|` +
	`_ADDR=[0-9a-fA-F.:]+))`

// defaultCommon are the shared settings.
func defaultCommon() Common {
	return Common{
		EnvRegex:      "^(?:" + runtimeEnv + ")$",
		EnvLinesRegex: "^(?:(?:" + runtimeEnv + ")\n)*$",
		CopyFileRegex: `^/run/kata-containers/shared/containers/(watchable/)?[0-9a-f]{64}-[a-z0-9]{16}-[^/]+(/.*)?$`,
	}
}

// Where bind mount sources lie in the VM: files the shim copied in, and
// the sandbox's shared memory.
const (
	sharedPrefix  = "/run/kata-containers/shared/containers/"
	sandboxPrefix = "/run/kata-containers/sandbox/"
)

// systemMounts are the mounts the runtime gives every container.
func systemMounts(privileged bool) []Mount {
	return []Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts"},
		{Destination: "/dev/mqueue", Type: "mqueue"},
		{Destination: "/sys", Type: "sysfs", ReadOnly: !privileged},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", ReadOnly: !privileged},
		{Destination: "/dev/shm", Type: "bind", SourcePrefix: sandboxPrefix},
		{Destination: "/etc/hosts", Type: "bind", SourcePrefix: sharedPrefix},
		{Destination: "/etc/hostname", Type: "bind", SourcePrefix: sharedPrefix},
		{Destination: "/etc/resolv.conf", Type: "bind", SourcePrefix: sharedPrefix},
		{Destination: "/dev/termination-log", Type: "bind", SourcePrefix: sharedPrefix},
		{Destination: "/var/run/secrets/kubernetes.io/serviceaccount", Type: "bind", ReadOnly: true, SourcePrefix: sharedPrefix},
	}
}

func buildData(ctx context.Context, w *workload, opts Options) (*PolicyData, []string, error) {
	d := &PolicyData{
		Namespace:        w.Namespace,
		SandboxNameRegex: w.SandboxNameRegex,
		Common:           defaultCommon(),
		RequestDefaults: map[string]bool{
			"ReadStreamRequest":      !opts.RedactStdout,
			"WriteStreamRequest":     opts.AllowStdin,
			"UpdateContainerRequest": opts.AllowUpdate,
		},
	}
	if opts.Namespace != "" {
		d.Namespace = opts.Namespace
	}
	if d.Namespace == "" {
		d.Namespace = "default"
	}
	if opts.AnyNamespace {
		d.Namespace = ""
	}
	var warnings []string
	d.Containers = append(d.Containers, Container{
		Sandbox:         true,
		Image:           opts.PauseImage,
		Args:            []string{"/pause"},
		Env:             []string{},
		EnvAnyValue:     []string{"PATH"},
		Cwd:             "/",
		ReadOnlyRoot:    true,
		NoNewPrivileges: true,
		Capabilities:    slices.Clone(DefaultCapabilities),
		Mounts:          systemMounts(false),
		ExecCommands:    [][]string{},
	})
	d.Containers[0].RequiredMounts, d.Containers[0].ReadOnlyMounts = mountSets(d.Containers[0].Mounts)
	spec := &w.Spec
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	if len(spec.Containers) == 0 {
		return nil, nil, fmt.Errorf("the pod has no containers")
	}
	for i := range all {
		c, warn, err := buildContainer(ctx, w, &all[i], opts)
		if err != nil {
			return nil, nil, fmt.Errorf("container %q: %w", all[i].Name, err)
		}
		warnings = append(warnings, warn...)
		d.Containers = append(d.Containers, *c)
	}
	d.ContainerIndex = map[string]int{}
	for i, c := range d.Containers[1:] {
		if _, dup := d.ContainerIndex[c.Name]; dup {
			return nil, nil, fmt.Errorf("two containers are named %q", c.Name)
		}
		d.ContainerIndex[c.Name] = i + 1
	}
	if len(spec.EphemeralContainers) > 0 {
		warnings = append(warnings, "ephemeral (debug) containers are not in the policy and will be refused")
	}
	return d, warnings, nil
}

func buildContainer(ctx context.Context, w *workload, kc *corev1.Container, opts Options) (*Container, []string, error) {
	var warnings []string
	img, err := opts.Resolver.Resolve(ctx, kc.Image)
	if err != nil {
		return nil, nil, err
	}
	c := &Container{
		Name:         kc.Name,
		Image:        img.Ref,
		EnvAnyValue:  []string{},
		ExecCommands: [][]string{},
	}
	if !img.ConfigKnown {
		warnings = append(warnings, fmt.Sprintf("container %q: image configuration not read (offline): image environment is allowed with any value", kc.Name))
	}

	// Environment: image first, the pod's entries override by name.
	env := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, e := range img.Env {
		k, v, _ := strings.Cut(e, "=")
		set(k, v)
	}
	anyValue := map[string]bool{}
	if !img.ConfigKnown {
		anyValue["PATH"] = true
	}
	for _, ef := range kc.EnvFrom {
		names, values, err := w.envFrom(ef)
		if err != nil {
			return nil, nil, err
		}
		for _, n := range names {
			if v, ok := values[n]; ok {
				set(ef.Prefix+n, v)
			} else {
				anyValue[ef.Prefix+n] = true
			}
		}
	}
	for _, e := range kc.Env {
		if e.ValueFrom != nil {
			anyValue[e.Name] = true
			if _, ok := env[e.Name]; ok {
				delete(env, e.Name)
				order = slices.DeleteFunc(order, func(s string) bool { return s == e.Name })
			}
			continue
		}
		set(e.Name, expand(e.Value, env))
	}
	c.Env = []string{}
	for _, k := range order {
		if !anyValue[k] {
			c.Env = append(c.Env, k+"="+env[k])
		}
	}
	c.EnvAnyValue = sortedKeys(anyValue)
	if c.Env == nil {
		c.Env = []string{}
	}

	// Command: Kubernetes command replaces the entrypoint, args replace cmd.
	var args []string
	switch {
	case len(kc.Command) > 0:
		args = append(slices.Clone(kc.Command), kc.Args...)
	case len(kc.Args) > 0:
		args = append(slices.Clone(img.Entrypoint), kc.Args...)
	default:
		args = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(args) == 0 {
		if !img.ConfigKnown {
			return nil, nil, fmt.Errorf("no command in the pod spec and the image configuration was not read: set command or resolve images")
		}
		return nil, nil, fmt.Errorf("neither the pod spec nor the image %s has a command", img.Ref)
	}
	for i := range args {
		args[i] = expand(args[i], env)
	}
	c.Args = args

	c.Cwd = kc.WorkingDir
	if c.Cwd == "" {
		c.Cwd = img.WorkingDir
	}
	if c.Cwd == "" {
		c.Cwd = "/"
	}

	sc := kc.SecurityContext
	psc := w.Spec.SecurityContext
	var uid *int64
	if psc != nil && psc.RunAsUser != nil {
		uid = psc.RunAsUser
	}
	if sc != nil && sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	if uid == nil && img.ConfigKnown {
		u, _, _ := strings.Cut(img.User, ":")
		if u == "" {
			zero := int64(0)
			uid = &zero
		} else if n, err := strconv.ParseInt(u, 10, 64); err == nil {
			uid = &n
		} else {
			warnings = append(warnings, fmt.Sprintf("container %q: image user %q is a name: the UID is not pinned", kc.Name, img.User))
		}
	}
	if uid != nil {
		if *uid < 0 || *uid > 1<<32-1 {
			return nil, nil, fmt.Errorf("runAsUser %d out of range", *uid)
		}
		u := uint32(*uid)
		c.UID = &u
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		c.Privileged = true
		warnings = append(warnings, fmt.Sprintf("container %q is privileged: capabilities are not restricted", kc.Name))
	}
	if sc != nil && sc.ReadOnlyRootFilesystem != nil {
		c.ReadOnlyRoot = *sc.ReadOnlyRootFilesystem
	}
	if sc != nil && sc.AllowPrivilegeEscalation != nil {
		c.NoNewPrivileges = !*sc.AllowPrivilegeEscalation
	}
	caps := map[string]bool{}
	for _, cp := range DefaultCapabilities {
		caps[cp] = true
	}
	if sc != nil && sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			if strings.EqualFold(string(d), "ALL") {
				clear(caps)
				continue
			}
			delete(caps, capName(d))
		}
		for _, a := range sc.Capabilities.Add {
			caps[capName(a)] = true
		}
	}
	c.Capabilities = sortedKeys(caps)

	c.Mounts = systemMounts(c.Privileged)
	for _, vm := range kc.VolumeMounts {
		c.Mounts = append(c.Mounts, Mount{Destination: vm.MountPath, Type: "bind", ReadOnly: vm.ReadOnly, Required: true, SourcePrefix: sharedPrefix})
	}
	c.RequiredMounts, c.ReadOnlyMounts = mountSets(c.Mounts)

	for _, p := range []*corev1.Probe{kc.LivenessProbe, kc.ReadinessProbe, kc.StartupProbe} {
		if p != nil && p.Exec != nil && len(p.Exec.Command) > 0 {
			c.ExecCommands = appendUnique(c.ExecCommands, p.Exec.Command)
		}
	}
	if lc := kc.Lifecycle; lc != nil {
		for _, h := range []*corev1.LifecycleHandler{lc.PostStart, lc.PreStop} {
			if h != nil && h.Exec != nil && len(h.Exec.Command) > 0 {
				c.ExecCommands = appendUnique(c.ExecCommands, h.Exec.Command)
			}
		}
	}
	return c, warnings, nil
}

func capName(c corev1.Capability) string {
	s := strings.ToUpper(string(c))
	if !strings.HasPrefix(s, "CAP_") {
		s = "CAP_" + s
	}
	return s
}

func appendUnique(list [][]string, cmd []string) [][]string {
	for _, l := range list {
		if slices.Equal(l, cmd) {
			return list
		}
	}
	return append(list, slices.Clone(cmd))
}

// expand replaces $(NAME) with the value of NAME from env, as the kubelet
// does for command, args and env values; $$ escapes a dollar sign and an
// unknown reference is left as it is.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteByte(s[i])
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func mountSets(ms []Mount) (required, readOnly []string) {
	required, readOnly = []string{}, []string{}
	for _, m := range ms {
		if m.Required {
			required = append(required, m.Destination)
		}
		if m.ReadOnly {
			readOnly = append(readOnly, m.Destination)
		}
	}
	return required, readOnly
}
