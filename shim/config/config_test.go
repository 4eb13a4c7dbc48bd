package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func base() map[string]string {
	return map[string]string{"CLOUD_PROVIDER": "libvirt", "ATTESTER": "tdx", "NODE_NAME": "worker-1"}
}

func with(kv ...string) map[string]string {
	m := base()
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(base()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint != DefaultEndpoint || c.PodsDir != DefaultPodsDir || c.StateDir != DefaultStateDir ||
		c.ProxyTimeout != 5*time.Minute || c.ForwarderPort != 15150 || c.ProbePort != 8000 ||
		c.PodsLimit != 10 || c.TunnelType != "tunnel" || c.VXLANPort != 4789 || c.Attester != "tdx" || c.WarmPoolSize != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	if c, err := Load(env(with("WARM_POOL_SIZE", "2")), []string{"-warm-pool-size", "3"}, nil); err != nil || c.WarmPoolSize != 3 {
		t.Fatalf("WARM_POOL_SIZE=2 with -warm-pool-size 3: %v, %v", c, err)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		key  string // the key the error must name
		want string
	}{
		{"no provider", with("CLOUD_PROVIDER", ""), nil, "CLOUD_PROVIDER", "required"},
		{"no attester", with("ATTESTER", ""), nil, "ATTESTER", "required"},
		{"bad attester", with("ATTESTER", "sgx"), nil, "ATTESTER", `"sgx"`},
		{"no node", with("NODE_NAME", ""), nil, "NODE_NAME", "required"},
		{"bad timeout", with("PROXY_TIMEOUT", "5 minutes"), nil, "PROXY_TIMEOUT", "not a duration"},
		{"negative timeout", with("PROXY_TIMEOUT", "-1s"), nil, "PROXY_TIMEOUT", "positive"},
		{"bad port", with("FORWARDER_PORT", "70000"), nil, "FORWARDER_PORT", "port"},
		{"bad probe port", with("PROBE_PORT", "http"), nil, "PROBE_PORT", "port"},
		{"bad vxlan port", with("VXLAN_PORT", "0"), nil, "VXLAN_PORT", "port"},
		{"bad limit", with("PEERPODS_LIMIT_PER_NODE", "ten"), nil, "PEERPODS_LIMIT_PER_NODE", "integer"},
		{"bad warm pool", with("WARM_POOL_SIZE", "-1"), nil, "WARM_POOL_SIZE", "non-negative integer"},
		{"warm pool over limit", with("WARM_POOL_SIZE", "11"), nil, "WARM_POOL_SIZE", "more than PEERPODS_LIMIT_PER_NODE (10)"},
		{"relative endpoint", with("REMOTE_HYPERVISOR_ENDPOINT", "run/x.sock"), nil, "REMOTE_HYPERVISOR_ENDPOINT", "absolute"},
		{"long pods dir", with("PODS_DIR", "/"+strings.Repeat("p", 60)), nil, "PODS_DIR", "too long"},
		{"skip verify", with("TLS_SKIP_VERIFY", "true"), nil, "TLS_SKIP_VERIFY", "refused"},
		{"bad bool", with("DISABLECVM", "yes please"), nil, "DISABLECVM", "boolean"},
		{"cvm conflict", with("DISABLECVM", "true"), nil, "DISABLECVM", "conflicts"},
		{"az cvm conflict", with("DISABLECVM", "true", "ATTESTER", "az-snp-vtpm"), nil, "DISABLECVM", "conflicts"},
		{"bad tags", with("TAGS", "a=b,c"), nil, "TAGS", "key=value"},
		{"reserved tag", with("TAGS", "peerpod.io/node=x"), nil, "TAGS", "reserved"},
		{"half manual tls", with("CERT_FILE", "/x.crt"), nil, "CACERT_FILE", "together"},
		{"tunnel type", with("TUNNEL_TYPE", "gre"), nil, "TUNNEL_TYPE", "not supported"},
		{"tls min", with("TLS_MIN_VERSION", "VersionTLS10"), nil, "TLS_MIN_VERSION", "VersionTLS10"},
		{"scratch", with("ENABLE_SCRATCH_SPACE", "true"), nil, "ENABLE_SCRATCH_SPACE", "not supported"},
		{"grace", with("RECONCILE_GRACE", "soon"), nil, "RECONCILE_GRACE", "duration"},
		{"log level", with("LOG_LEVEL", "loud"), nil, "LOG_LEVEL", "loud"},
		{"initdata no decoder", with("INITDATA", "H4sI"), nil, "INITDATA", "decoder"},
		{"bad flag value", base(), []string{"-probe-port", "x"}, "PROBE_PORT", "port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(env(c.env), c.args, nil)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != c.key {
				t.Fatalf("error %v does not name key %s", err, c.key)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
		})
	}
}

func TestAttesterKinds(t *testing.T) {
	for _, kind := range []string{"fake", "tdx", "snp", "az-snp-vtpm"} {
		c, err := Load(env(with("ATTESTER", kind)), nil, nil)
		if err != nil || c.Attester != kind {
			t.Errorf("ATTESTER=%s: %v", kind, err)
		}
	}
	_, err := Load(env(with("ATTESTER", "vtpm")), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "az-snp-vtpm") {
		t.Errorf("unknown ATTESTER error does not list the valid kinds: %v", err)
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := Load(env(map[string]string{"PROXY_TIMEOUT": "x"}), nil, nil)
	for _, k := range []string{"CLOUD_PROVIDER", "ATTESTER", "NODE_NAME", "PROXY_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("error %v does not name %s", err, k)
		}
	}
}

func TestFlagsOverrideEnvAndDev(t *testing.T) {
	m := with("PROBE_PORT", "9000", "ATTESTER", "", "NODE_NAME", "")
	c, err := Load(env(m), []string{"-probe-port", "9100", "-dev", "-state-dir", "/tmp/pp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProbePort != 9100 || c.StateDir != "/tmp/pp" || c.Attester != "fake" || c.NodeName == "" || !c.Dev {
		t.Fatalf("%+v", c)
	}
	if !strings.Contains(strings.Join(c.Warnings, ";"), "NOT verified") {
		t.Fatalf("no loud warning for fake attester: %v", c.Warnings)
	}
}

func TestInitdataDecoder(t *testing.T) {
	dec := func(v string) (string, error) {
		if v == "good" {
			return "version = \"0.1.0\"\n", nil
		}
		return "", errors.New("not base64 of gzip")
	}
	c, err := Load(env(with("INITDATA", "good")), nil, dec)
	if err != nil || c.Initdata == "" {
		t.Fatalf("%v %+v", err, c)
	}
	if _, err := Load(env(with("INITDATA", "bad")), nil, dec); err == nil || !strings.Contains(err.Error(), "INITDATA: not base64") {
		t.Fatalf("err = %v", err)
	}
}

func TestTags(t *testing.T) {
	c, err := Load(env(with("TAGS", "team=a, cost = b")), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tags["team"] != "a" || c.Tags["cost"] != "b" {
		t.Fatalf("%v", c.Tags)
	}
}
