package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/peerpod/peerpod/podnet"
	"github.com/peerpod/peerpod/test/e2e/harness"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/netnsstate"
)

// The CNI-like pod network of TestPodNetwork: a "cluster" namespace whose
// bridge holds the client's address, and the pod's namespace joined to it
// by a veth holding the pod IP, as a bridge CNI plugin leaves a node.
const (
	netClientIP = "10.250.0.1"
	netPodIP    = "10.250.0.2"
	netPodPort  = 8080
	netGreeting = "hello from the pod's container on its pod IP"
)

// TestPodNetwork runs a pod with a pod network namespace on a real libvirt
// VM in each transport mode: the client in the cluster namespace reaches
// an HTTP server in the pod's container on the pod IP, pings the pod, and
// the container reaches a server of the client's from the pod IP. Deleting
// the pod leaves the pod namespace as CNI made it, no device in the host
// namespace and nothing of the VM. vxlan mode needs the image's vxlan
// modules; without them the pod fails to start, and so does the test.
func TestPodNetwork(t *testing.T) {
	for _, mode := range []string{podnet.ModeTunnel, podnet.ModeVXLAN} {
		t.Run(mode, func(t *testing.T) { testPodNetwork(t, mode) })
	}
}

func testPodNetwork(t *testing.T, mode string) {
	port := 20000 + randInt(t, 10000)
	env, c := setupWith(t, harness.Options{Env: []string{"TUNNEL_TYPE=" + mode, "VXLAN_PORT=" + strconv.Itoa(port)}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cni := newCNI(t)
	before := cni.state(t)

	sb, err := c.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: "e2e-net-" + mode, Namespace: "default",
		VCPUs: 1, MemoryMiB: 512, Initdata: harness.TestInitdata()}, "/var/run/netns/"+cni.pod)
	if err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	start := time.Now()
	if err := sb.Start(ctx); err != nil {
		_ = sb.StopVM(context.WithoutCancel(ctx))
		t.Fatalf("start pod in %s mode: %v", mode, err)
	}
	t.Logf("pod started in %s mode in %s", mode, time.Since(start).Round(time.Millisecond))

	// The pod's server, in a container of the pod VM.
	script := fmt.Sprintf("echo %q > /tmp/index.html && exec /bin/busybox httpd -f -p %d -h /tmp", netGreeting, netPodPort)
	ct := kataclient.Container{ID: "web", Image: env.BusyboxRef, Args: []string{"/bin/busybox", "sh", "-c", script}}
	if err := sb.CreateContainer(ctx, ct); err != nil {
		t.Fatalf("create web container: %v", err)
	}
	if err := sb.StartContainer(ctx, ct.ID); err != nil {
		t.Fatalf("start web container: %v", err)
	}

	// Client → container, on the pod IP.
	url := fmt.Sprintf("http://%s:%d/index.html", netPodIP, netPodPort)
	var body string
	for i := 0; ; i++ {
		if body, err = cni.get(ctx, url); err == nil || i == 120 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || strings.TrimSpace(body) != netGreeting {
		t.Fatalf("client → pod %s: %q, %v; want %q", url, body, err, netGreeting)
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", cni.cluster, "ping", "-c", "3", "-W", "10", netPodIP).CombinedOutput(); err != nil {
		t.Fatalf("client pings the pod: %v\n%s", err, out)
	}

	// Container → client, from the pod IP.
	addr := cni.serve(t)
	got := strings.TrimSpace(execIn(ctx, t, sb, ct.ID, "/bin/busybox", "wget", "-q", "-O", "-", "http://"+addr+"/"))
	if got != "hello "+netPodIP {
		t.Fatalf("container → client: %q, want %q (the client sees the pod IP)", got, "hello "+netPodIP)
	}

	stopPod(ctx, t, sb)
	if after := cni.state(t); after != before {
		t.Fatalf("the pod namespace differs from what CNI made after the pod was deleted:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if exec.Command("ip", "link", "show", podnet.DeviceName(sb.ID)).Run() == nil {
		t.Fatalf("device %s left in the host namespace", podnet.DeviceName(sb.ID))
	}
	assertClean(ctx, t, env)
}

// cni is the namespaces a bridge CNI plugin would leave: the cluster's
// (bridge and client) and the pod's (veth with the pod IP).
type cni struct {
	cluster, pod string
}

func newCNI(t *testing.T) *cni {
	t.Helper()
	sfx := randHex(t)
	n := &cni{cluster: "ppec-" + sfx, pod: "ppep-" + sfx}
	for _, ns := range []string{n.cluster, n.pod} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	c, p := n.cluster, n.pod
	for _, s := range [][]string{
		{"-n", c, "link", "set", "lo", "up"},
		{"-n", c, "link", "add", "br0", "type", "bridge"},
		{"-n", c, "link", "add", "vp0", "type", "veth", "peer", "name", "eth0", "netns", p},
		{"-n", c, "link", "set", "vp0", "master", "br0", "up"},
		{"-n", c, "addr", "add", netClientIP + "/24", "dev", "br0"},
		{"-n", c, "link", "set", "br0", "up"},
		{"-n", p, "link", "set", "lo", "up"},
		{"-n", p, "addr", "add", netPodIP + "/24", "dev", "eth0"},
		{"-n", p, "link", "set", "eth0", "up"},
		{"-n", p, "route", "add", "default", "via", netClientIP},
	} {
		ipCmd(t, s...)
	}
	// Let IPv6 duplicate address detection settle before the snapshot.
	for i := 0; strings.TrimSpace(ipCmd(t, "-n", p, "-6", "addr", "show", "tentative")) != ""; i++ {
		if i == 100 {
			t.Fatal("IPv6 addresses of the pod namespace still tentative after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// state is what CNI left in the pod namespace, as text.
func (n *cni) state(t *testing.T) string {
	t.Helper()
	st, err := netnsstate.Of(n.pod, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// in runs fn on a thread of its own in the cluster namespace; sockets fn
// makes belong to that namespace. The thread is discarded afterwards.
func (n *cni) in(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := netns.GetFromName(n.cluster)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", n.cluster, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.cluster, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// get fetches url from the client in the cluster namespace.
func (n *cni) get(ctx context.Context, url string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.in(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// serve starts an HTTP server on the client's address in the cluster
// namespace that answers "hello <caller's IP>", and returns its address.
func (n *cni) serve(t *testing.T) string {
	t.Helper()
	var ln net.Listener
	if err := n.in(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(netClientIP, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "hello %s\n", host)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func randInt(t *testing.T, n int) int {
	t.Helper()
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return (int(b[0])<<8 | int(b[1])) % n
}
