// Package agenttest starts a real podvm-agent service (sandbox, runc,
// tunnel with the fake attester) inside a test and gives a client that
// calls it the way the Kata runtime does: one tunnel stream per request.
package agenttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"encoding/json"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/peerpod/peerpod/agent"
	"github.com/peerpod/peerpod/agent/cgroups"
	"github.com/peerpod/peerpod/agent/daemon"
	"github.com/peerpod/peerpod/agent/internal/testimage"
	"github.com/peerpod/peerpod/agent/sandbox"
	"github.com/peerpod/peerpod/agent/service"
	pb "github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
	"github.com/peerpod/peerpod/tunnel/attest/verify"
)

// NeedRoot skips unless the test runs as root with runc and busybox.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (runc, mounts, cgroups)")
	}
	if _, err := exec.LookPath("/usr/sbin/runc"); err != nil {
		t.Skip("needs runc at /usr/sbin/runc (Debian package runc)")
	}
	if _, err := os.Stat(testimage.Busybox); err != nil {
		t.Skip("needs /bin/busybox (Debian package busybox-static)")
	}
}

// Agent is a running agent and a client for it.
type Agent struct {
	// Sandbox and Service are the agent's own objects.
	Sandbox *sandbox.Sandbox
	Service *service.Service
	// StateDir, KataRoot and CgroupParent are where the agent keeps its things.
	StateDir, KataRoot, CgroupParent string
	// Cgroups is the host's cgroup layout.
	Cgroups *cgroups.Manager
	// Session is the node side's tunnel session.
	Session *tunnel.Session
}

// Options tune Start.
type Options struct {
	// Authorizer defaults to agent.AllowAll.
	Authorizer agent.Authorizer
}

// PauseBundle writes a pause bundle whose process is busybox sleeping.
func PauseBundle(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(testimage.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	s := specs.Spec{Version: specs.Version, Root: &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/busybox", "sleep", "2147483647"}, Cwd: "/", Env: []string{"PATH=/bin"}}}
	b, _ := json.Marshal(&s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Start runs an agent for the test on a loopback port and dials it.
func Start(t testing.TB, o Options) *Agent {
	t.Helper()
	NeedRoot(t)
	if o.Authorizer == nil {
		o.Authorizer = agent.AllowAll{}
	}
	cg, err := cgroups.Detect("")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{
		StateDir:     t.TempDir(),
		KataRoot:     t.TempDir(),
		CgroupParent: fmt.Sprintf("/peerpod-test-%08x", mrand.Uint32()),
		Cgroups:      cg,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sb, err := sandbox.New(sandbox.Config{
		StateDir: a.StateDir, KataRoot: a.KataRoot, PauseBundle: PauseBundle(t),
		Cgroups: cg, CgroupParent: a.CgroupParent, ReapOrphans: true, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sb.Close()
		_ = sb.Destroy(context.Background())
		_ = cg.Remove(a.CgroupParent)
	})
	a.Sandbox = sb
	a.Service = service.New(sb, o.Authorizer, log)
	srv, err := a.Service.NewServer()
	if err != nil {
		t.Fatal(err)
	}

	ca, caKey := newCA(t)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	ud := &userdata.Config{Version: userdata.Version, SandboxID: "sb", TunnelCA: string(caPEM), Attester: userdata.AttesterFake}
	ctx, cancel := context.WithCancel(context.Background())
	serverTLS, _, err := daemon.ServerTLS(ctx, ud)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, daemon.Options{Listener: ln, TLS: serverTLS, Agent: srv, Logger: log}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon.Run: %v", err)
		}
	})

	verifier, err := verify.NewVerifier(attest.KindFake, verify.Expectations{})
	if err != nil {
		t.Fatal(err)
	}
	client := clientCert(t, ca, caKey)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	sess, err := tunnel.Dial(dctx, ln.Addr().String(), tunnel.Config{
		TLS:      &tls.Config{Certificates: []tls.Certificate{client}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
		Verifier: verifier,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	a.Session = sess
	return a
}

// Call performs one request on a fresh agent stream, as the Kata runtime does.
func (a *Agent) Call(ctx context.Context, service, method string, req, resp any) error {
	conn, err := a.Session.Open(ctx, tunnel.KindAgent, nil)
	if err != nil {
		return err
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	return c.Call(ctx, service, method, req, resp)
}

// Agent calls grpc.AgentService.method.
func (a *Agent) Agent(ctx context.Context, method string, req, resp any) error {
	return a.Call(ctx, "grpc.AgentService", method, req, resp)
}

// Client is an AgentService client on one long-lived stream (for loops).
func (a *Agent) Client(t testing.TB) (pb.AgentServiceService, pb.HealthService) {
	t.Helper()
	conn, err := a.Session.Open(context.Background(), tunnel.KindAgent, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { _ = c.Close() })
	return pb.NewAgentServiceClient(c), pb.NewHealthClient(c)
}

func newCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test node CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func clientCert(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// NodePKI makes a node CA (PEM, for user data's tunnel_ca) and a client
// certificate it signed.
func NodePKI(t testing.TB) (caPEM string, client tls.Certificate) {
	t.Helper()
	ca, key := newCA(t)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})), clientCert(t, ca, key)
}

// Dial opens a node-side tunnel session to addr, verifying the fake evidence.
func Dial(t testing.TB, addr string, client tls.Certificate) *tunnel.Session {
	t.Helper()
	verifier, err := verify.NewVerifier(attest.KindFake, verify.Expectations{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := tunnel.Dial(ctx, addr, tunnel.Config{
		TLS:      &tls.Config{Certificates: []tls.Certificate{client}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13},
		Verifier: verifier,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	return sess
}
