package daemon_test

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/agent/daemon"
	"github.com/peerpod/peerpod/agent/internal/agenttest"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/tunnel"
)

func encoded(t *testing.T, sandbox string) []byte {
	t.Helper()
	caPEM, _ := agenttest.NodePKI(t)
	b, err := userdata.Encode(&userdata.Config{Version: userdata.Version, SandboxID: sandbox, TunnelCA: caPEM, Attester: userdata.AttesterFake})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadUserDataOrder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ud")
	fwcfg := filepath.Join(dir, "fwcfg")
	if err := os.WriteFile(file, encoded(t, "from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fwcfg, encoded(t, "from-fwcfg"), 0o600); err != nil {
		t.Fatal(err)
	}
	azure := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" {
			http.Error(w, "no Metadata header", http.StatusBadRequest)
			return
		}
		io.WriteString(w, base64.StdEncoding.EncodeToString(encoded(t, "from-azure")))
	}))
	defer azure.Close()
	aws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			io.WriteString(w, "tok")
		case r.Method == http.MethodGet && r.URL.Path == "/latest/user-data" && r.Header.Get("X-aws-ec2-metadata-token") == "tok":
			w.Write(encoded(t, "from-aws"))
		default:
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		}
	}))
	defer aws.Close()
	down := "http://127.0.0.1:1"
	tests := []struct {
		name    string
		src     daemon.Sources
		want    string
		wantErr bool
	}{
		{"file first", daemon.Sources{File: file, FwCfg: fwcfg, AzureIMDS: azure.URL, AWSIMDS: aws.URL + "/latest"}, "from-file", false},
		{"fw_cfg next", daemon.Sources{FwCfg: fwcfg, AzureIMDS: azure.URL, AWSIMDS: aws.URL + "/latest"}, "from-fwcfg", false},
		{"azure next", daemon.Sources{FwCfg: filepath.Join(dir, "none"), AzureIMDS: azure.URL, AWSIMDS: aws.URL + "/latest"}, "from-azure", false},
		{"aws last", daemon.Sources{FwCfg: "-", AzureIMDS: down, AWSIMDS: aws.URL + "/latest"}, "from-aws", false},
		{"nothing", daemon.Sources{FwCfg: "-", AzureIMDS: "-", AWSIMDS: down}, "", true},
		{"missing file", daemon.Sources{File: filepath.Join(dir, "none")}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.Timeout = time.Second
			cfg, _, err := daemon.LoadUserData(context.Background(), tt.src)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && cfg.SandboxID != tt.want {
				t.Fatalf("sandbox = %q, want %q", cfg.SandboxID, tt.want)
			}
		})
	}
}

// start runs the daemon with opts on loopback and returns a node session.
func start(t *testing.T, o daemon.Options) *tunnel.Session {
	t.Helper()
	caPEM, client := agenttest.NodePKI(t)
	serverTLS, _, err := daemon.ServerTLS(context.Background(), &userdata.Config{Version: userdata.Version, SandboxID: "s", TunnelCA: caPEM, Attester: userdata.AttesterFake})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Listener, o.TLS = ln, serverTLS
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return agenttest.Dial(t, ln.Addr().String(), client)
}

// TestForwardAndStreams: agent streams go byte for byte to an upstream
// socket; health echoes; config delivers the secrets.
func TestForwardAndStreams(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "kata-agent.sock")
	up, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); b, _ := io.ReadAll(c); c.Write([]byte(strings.ToUpper(string(b)))) }()
		}
	}()
	got := make(chan string, 1)
	sess := start(t, daemon.Options{KataAgentSocket: sock, OnSecrets: func(_ context.Context, s *userdata.Secrets) error {
		got <- string(s.AuthJSON)
		return nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	roundTrip := func(kind tunnel.Kind, msg string) string {
		t.Helper()
		c, err := sess.Open(ctx, kind, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			t.Fatal("stream cannot half-close")
		}
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if out := roundTrip(tunnel.KindAgent, "ttrpc bytes \x00\x01"); out != "TTRPC BYTES \x00\x01" {
		t.Fatalf("forwarded = %q", out)
	}
	if out := roundTrip(tunnel.KindHealth, "ping"); out != "ping" {
		t.Fatalf("health = %q", out)
	}
	if out := roundTrip(tunnel.KindConfig, `{"auth_json":{"auths":{}}}`); out != "ok\n" {
		t.Fatalf("config answer = %q", out)
	}
	if s := <-got; s != `{"auths":{}}` {
		t.Fatalf("secrets = %q", s)
	}
	if out := roundTrip(tunnel.KindConfig, `{not json`); !strings.HasPrefix(out, "error: ") {
		t.Fatalf("bad config answer = %q", out)
	}
}

func TestServerTLSRefusesBadUserData(t *testing.T) {
	tests := []struct {
		name string
		cfg  userdata.Config
	}{
		{"no CA", userdata.Config{Version: 1, SandboxID: "s", TunnelCA: "junk", Attester: userdata.AttesterFake}},
		{"bad initdata", userdata.Config{Version: 1, SandboxID: "s", TunnelCA: "junk", Attester: userdata.AttesterFake, Initdata: "not toml ="}},
	}
	for _, tt := range tests {
		if _, _, err := daemon.ServerTLS(context.Background(), &tt.cfg); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}
