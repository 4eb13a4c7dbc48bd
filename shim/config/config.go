// Package config reads peerpodd's configuration from the environment (the
// peer-pods-cm ConfigMap and Secret, with cloud-api-adaptor's key names) and
// from command-line flags for local runs. A bad or missing value is an error
// naming the key.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
)

// Defaults, matching cloud-api-adaptor where it has the key.
const (
	DefaultEndpoint          = "/run/peerpod/hypervisor.sock"
	DefaultPodsDir           = "/run/peerpod/pods"
	DefaultStateDir          = "/var/lib/peerpod"
	DefaultProxyTimeout      = 5 * time.Minute
	DefaultProbePort         = 8000
	DefaultPodsLimit         = 10
	DefaultTunnelType        = "tunnel"
	DefaultVXLANPort         = 4789
	DefaultReconcileGrace    = 5 * time.Minute
	DefaultReconcileInterval = time.Minute
)

// Config is peerpodd's configuration.
type Config struct {
	// CloudProvider selects the provider (CLOUD_PROVIDER).
	CloudProvider string
	// Endpoint is the hypervisor API socket (REMOTE_HYPERVISOR_ENDPOINT).
	Endpoint string
	// PodsDir holds the per-sandbox agent sockets (PODS_DIR).
	PodsDir string
	// StateDir holds the journal and the node CA (STATE_DIR).
	StateDir string
	// ProxyTimeout bounds StartVM's wait for the agent (PROXY_TIMEOUT).
	ProxyTimeout time.Duration
	// ForwarderPort is the pod VM's tunnel port (FORWARDER_PORT).
	ForwarderPort int
	// Tags are extra tags put on every VM (TAGS, "k=v,k2=v2").
	Tags map[string]string
	// Initdata is the default initdata TOML text, decoded from INITDATA
	// (base64 of gzip); "" when unset.
	Initdata string
	// PodsLimit is the node's peer-pod capacity (PEERPODS_LIMIT_PER_NODE);
	// the scheduler enforces it through the kata.peerpods.io/vm resource,
	// and peerpodd refuses a CreateVM beyond it (0: no limit of its own).
	PodsLimit int
	// WarmPoolSize is how many warm pod VMs of the default size the node
	// keeps booted ahead of pods (WARM_POOL_SIZE, default 0: none).
	WarmPoolSize int
	// ProbePort serves /healthz, /readyz, /startup and /metrics (PROBE_PORT).
	ProbePort int
	// CACertFile, CertFile and CertKey select manual TLS mode (CACERT_FILE,
	// CERT_FILE, CERT_KEY): all three or none.
	CACertFile, CertFile, CertKey string
	// TunnelType is the pod network tunnel (TUNNEL_TYPE).
	TunnelType string
	// VXLANPort is the pod network's VXLAN UDP port (VXLAN_PORT).
	VXLANPort int
	// DisableCVM asks for plain VMs instead of confidential ones (DISABLECVM).
	DisableCVM bool
	// Attester is the evidence kind pod VMs must present (ATTESTER: fake, tdx, snp, az-snp-vtpm).
	Attester string
	// ClusterID and NodeName identify this node's VMs in tags (CLUSTER_ID, NODE_NAME).
	ClusterID, NodeName string
	// PodUID is the daemon's own pod UID (POD_UID, downward API), the owner
	// of the node's peer-pod capacity.
	PodUID string
	// ReconcileGrace is how long an unowned VM is left alone before the
	// reconciler deletes it (RECONCILE_GRACE); ReconcileInterval is how
	// often it looks (RECONCILE_INTERVAL).
	ReconcileGrace, ReconcileInterval time.Duration
	// LogLevel is the slog level (LOG_LEVEL: debug, info, warn, error).
	LogLevel slog.Level
	// Dev allows development defaults (-dev or PEERPOD_DEV=true): ATTESTER
	// defaults to fake and NODE_NAME to the host name.
	Dev bool
	// Warnings are non-fatal findings the daemon logs at start.
	Warnings []string
}

// Error is a configuration error naming the key at fault.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("config: %s: %s", e.Key, e.Msg) }

// InitdataDecoder turns INITDATA's value into initdata TOML text, or says
// why it cannot.
type InitdataDecoder func(value string) (string, error)

// Load reads the configuration from getenv and args (flags win over the
// environment). decodeInitdata decodes and validates INITDATA; nil refuses
// any non-empty INITDATA.
func Load(getenv func(string) string, args []string, decodeInitdata InitdataDecoder) (*Config, error) {
	fs := flag.NewFlagSet("peerpodd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags := map[string]*string{}
	for _, k := range flagKeys {
		flags[k.key] = fs.String(k.flag, "", k.help+" (env "+k.key+")")
	}
	dev := fs.Bool("dev", false, "development mode: ATTESTER defaults to fake, NODE_NAME to the host name")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("config: flags: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	get := func(key string) string {
		if p, ok := flags[key]; ok && *p != "" {
			return strings.TrimSpace(*p)
		}
		return strings.TrimSpace(getenv(key))
	}
	c := &Config{}
	var errs []error
	fail := func(key, format string, a ...any) {
		errs = append(errs, &Error{Key: key, Msg: fmt.Sprintf(format, a...)})
	}

	c.Dev = *dev
	if v := get("PEERPOD_DEV"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fail("PEERPOD_DEV", "%q is not a boolean", v)
		}
		c.Dev = c.Dev || b
	}
	c.CloudProvider = get("CLOUD_PROVIDER")
	if c.CloudProvider == "" {
		fail("CLOUD_PROVIDER", "is required (azure, aws or libvirt)")
	}
	path := func(key, def string) string {
		v := get(key)
		if v == "" {
			return def
		}
		if !filepath.IsAbs(v) {
			fail(key, "%q is not an absolute path", v)
		}
		return filepath.Clean(v)
	}
	c.Endpoint = path("REMOTE_HYPERVISOR_ENDPOINT", DefaultEndpoint)
	c.PodsDir = path("PODS_DIR", DefaultPodsDir)
	c.StateDir = path("STATE_DIR", DefaultStateDir)
	// A unix socket path is limited to 107 bytes; the agent sockets live
	// two levels under PODS_DIR with a sandbox id of up to 64 characters.
	if n := len(c.Endpoint); n > 107 {
		fail("REMOTE_HYPERVISOR_ENDPOINT", "path is %d bytes, a unix socket path allows 107", n)
	}
	if n := len(c.PodsDir) + len("/") + 64 + len("/agent.ttrpc"); n > 107 {
		fail("PODS_DIR", "%q is too long for agent socket paths (%d bytes with a 64-character sandbox id; 107 allowed)", c.PodsDir, n)
	}

	duration := func(key string, def time.Duration) time.Duration {
		v := get(key)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			fail(key, "%q is not a duration (e.g. 5m, 30s)", v)
			return def
		}
		if d <= 0 {
			fail(key, "%q must be positive", v)
		}
		return d
	}
	c.ProxyTimeout = duration("PROXY_TIMEOUT", DefaultProxyTimeout)
	c.ReconcileGrace = duration("RECONCILE_GRACE", DefaultReconcileGrace)
	c.ReconcileInterval = duration("RECONCILE_INTERVAL", DefaultReconcileInterval)

	port := func(key string, def int) int {
		v := get(key)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			fail(key, "%q is not a port number (1-65535)", v)
			return def
		}
		return n
	}
	c.ForwarderPort = port("FORWARDER_PORT", userdata.DefaultListenPort)
	c.ProbePort = port("PROBE_PORT", DefaultProbePort)
	c.VXLANPort = port("VXLAN_PORT", DefaultVXLANPort)

	c.PodsLimit = DefaultPodsLimit
	if v := get("PEERPODS_LIMIT_PER_NODE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fail("PEERPODS_LIMIT_PER_NODE", "%q is not a non-negative integer", v)
		}
		c.PodsLimit = n
	}

	if v := get("WARM_POOL_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			fail("WARM_POOL_SIZE", "%q is not a non-negative integer", v)
		case c.PodsLimit > 0 && n > c.PodsLimit:
			fail("WARM_POOL_SIZE", "%d is more than PEERPODS_LIMIT_PER_NODE (%d): warm VMs beyond the pods a node may run are never used", n, c.PodsLimit)
		default:
			c.WarmPoolSize = n
		}
	}

	boolean := func(key string) bool {
		v := get(key)
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			fail(key, "%q is not a boolean (true or false)", v)
		}
		return b
	}
	c.DisableCVM = boolean("DISABLECVM")
	if boolean("TLS_SKIP_VERIFY") {
		fail("TLS_SKIP_VERIFY", "true is refused: peerpodd verifies every pod VM by its attestation evidence and cannot skip it (use ATTESTER=fake on test clusters)")
	}
	for _, k := range []string{"ENABLE_SCRATCH_SPACE", "EXTERNAL_NETWORK_VIA_PODVM", "ENABLE_CLOUD_PROVIDER_EXTERNAL_PLUGIN"} {
		if boolean(k) {
			fail(k, "true is not supported by peerpod")
		}
	}
	if boolean("CLOUD_CONFIG_VERIFY") {
		c.Warnings = append(c.Warnings, "CLOUD_CONFIG_VERIFY=true has no effect: peerpod binds initdata into attestation evidence instead")
	}
	switch v := get("TLS_MIN_VERSION"); v {
	case "", "VersionTLS13":
	case "VersionTLS12":
		c.Warnings = append(c.Warnings, "TLS_MIN_VERSION=VersionTLS12 ignored: the tunnel always uses TLS 1.3")
	default:
		fail("TLS_MIN_VERSION", "%q is not VersionTLS12 or VersionTLS13", v)
	}
	if get("TLS_CIPHER_SUITES") != "" {
		c.Warnings = append(c.Warnings, "TLS_CIPHER_SUITES ignored: TLS 1.3 suites are fixed")
	}

	tags, err := provider.ParseTags(get("TAGS"))
	if err != nil {
		msg := err.Error()
		var pe *provider.Error
		if errors.As(err, &pe) && pe.Err != nil {
			msg = pe.Err.Error()
		}
		fail("TAGS", "%s", strings.TrimPrefix(msg, "TAGS: "))
	}
	c.Tags = tags
	for k := range c.Tags {
		if strings.HasPrefix(k, "peerpod.io/") {
			fail("TAGS", "key %q uses the reserved prefix peerpod.io/", k)
		}
	}

	c.CACertFile, c.CertFile, c.CertKey = get("CACERT_FILE"), get("CERT_FILE"), get("CERT_KEY")
	set := 0
	for _, v := range []string{c.CACertFile, c.CertFile, c.CertKey} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		fail("CACERT_FILE", "CACERT_FILE, CERT_FILE and CERT_KEY must be set together (manual TLS) or not at all")
	}

	c.TunnelType = get("TUNNEL_TYPE")
	if c.TunnelType == "" {
		c.TunnelType = DefaultTunnelType
	}
	if c.TunnelType != "tunnel" && c.TunnelType != "vxlan" {
		fail("TUNNEL_TYPE", "%q is not supported (tunnel or vxlan)", c.TunnelType)
	}

	c.Attester = get("ATTESTER")
	switch c.Attester {
	case userdata.AttesterFake, userdata.AttesterTDX, userdata.AttesterSNP, userdata.AttesterAzSNPVTPM:
	case "":
		if c.Dev {
			c.Attester = userdata.AttesterFake
		} else {
			fail("ATTESTER", "is required (tdx, snp, az-snp-vtpm, or fake for test clusters)")
		}
	default:
		fail("ATTESTER", "%q is not one of fake, tdx, snp, az-snp-vtpm", c.Attester)
	}
	if c.Attester == userdata.AttesterFake {
		c.Warnings = append(c.Warnings, "ATTESTER=fake: pod VMs are NOT verified by hardware attestation; use only on test clusters")
	}
	if c.DisableCVM && (c.Attester == userdata.AttesterTDX || c.Attester == userdata.AttesterSNP || c.Attester == userdata.AttesterAzSNPVTPM) {
		fail("DISABLECVM", "true conflicts with ATTESTER=%s: a plain VM cannot produce %s evidence", c.Attester, c.Attester)
	}

	c.ClusterID = get("CLUSTER_ID")
	c.PodUID = get("POD_UID")
	c.NodeName = get("NODE_NAME")
	if c.NodeName == "" {
		if h, err := os.Hostname(); c.Dev && err == nil {
			c.NodeName = h
		} else {
			fail("NODE_NAME", "is required (set it from the downward API spec.nodeName)")
		}
	}

	switch v := strings.ToLower(get("LOG_LEVEL")); v {
	case "", "info":
		c.LogLevel = slog.LevelInfo
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		fail("LOG_LEVEL", "%q is not debug, info, warn or error", v)
	}

	if v := get("INITDATA"); v != "" {
		if decodeInitdata == nil {
			fail("INITDATA", "no initdata decoder configured")
		} else if s, err := decodeInitdata(v); err != nil {
			fail("INITDATA", "%v", err)
		} else {
			c.Initdata = s
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

type flagKey struct{ flag, key, help string }

// flagKeys are the keys settable by flag for local runs.
var flagKeys = []flagKey{
	{"provider", "CLOUD_PROVIDER", "cloud provider"},
	{"endpoint", "REMOTE_HYPERVISOR_ENDPOINT", "hypervisor API socket"},
	{"pods-dir", "PODS_DIR", "agent socket directory"},
	{"state-dir", "STATE_DIR", "journal and CA directory"},
	{"proxy-timeout", "PROXY_TIMEOUT", "StartVM wait for the agent"},
	{"forwarder-port", "FORWARDER_PORT", "pod VM tunnel port"},
	{"probe-port", "PROBE_PORT", "probe and metrics port"},
	{"attester", "ATTESTER", "attestation evidence kind"},
	{"node-name", "NODE_NAME", "node name"},
	{"cluster-id", "CLUSTER_ID", "cluster id"},
	{"reconcile-grace", "RECONCILE_GRACE", "orphan VM grace period"},
	{"warm-pool-size", "WARM_POOL_SIZE", "warm pod VMs kept booted ahead of pods"},
	{"reconcile-interval", "RECONCILE_INTERVAL", "orphan VM scan interval"},
	{"log-level", "LOG_LEVEL", "log level"},
}

// Usage describes the flags, for -h.
func Usage() string {
	var b strings.Builder
	b.WriteString("usage: peerpodd [flags]\n")
	for _, k := range flagKeys {
		fmt.Fprintf(&b, "  -%s value\t%s (env %s)\n", k.flag, k.help, k.key)
	}
	b.WriteString("  -dev\tdevelopment mode: ATTESTER defaults to fake, NODE_NAME to the host name\n")
	return b.String()
}

// LogValue shows the configuration without anything secret (it holds none,
// but file paths are shown rather than contents).
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("provider", c.CloudProvider),
		slog.String("endpoint", c.Endpoint),
		slog.String("pods_dir", c.PodsDir),
		slog.String("state_dir", c.StateDir),
		slog.Duration("proxy_timeout", c.ProxyTimeout),
		slog.Int("forwarder_port", c.ForwarderPort),
		slog.Int("probe_port", c.ProbePort),
		slog.Int("warm_pool_size", c.WarmPoolSize),
		slog.String("attester", c.Attester),
		slog.String("node", c.NodeName),
		slog.String("cluster", c.ClusterID),
		slog.Bool("manual_tls", c.CertFile != ""),
		slog.Bool("initdata_default", c.Initdata != ""),
		slog.Duration("reconcile_grace", c.ReconcileGrace),
	)
}
