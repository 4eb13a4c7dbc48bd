// Package podnet_test checks the pod network end to end with real kernel
// networking: a CNI-like pod namespace on the node, peerpodd attaching it
// to a process-provider VM (podvm-agent in a namespace of its own) in
// tunnel and vxlan mode, and traffic between a client on the pod's bridge
// and servers in the VM's pod namespace.
package podnet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const blobSize = 100 << 20

func TestPodNetwork(t *testing.T) {
	for _, tc := range []struct {
		mode string
		mtu  int
	}{
		{"tunnel", 1500},
		{"tunnel", 9000},
		{"vxlan", 1500},
		{"vxlan", 9000},
	} {
		t.Run(fmt.Sprintf("%s/mtu%d", tc.mode, tc.mtu), func(t *testing.T) {
			r := newRig(t, tc.mode, tc.mtu)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			before := r.podState()
			r.start(ctx)

			// The VM's pod interface is CNI's: same name, MAC, address, routes.
			ifc := run(t, "ip", "-n", r.pod, "-br", "link", "show", "eth0")
			mac := strings.Fields(ifc)[2]
			out, err := output(ctx, r.inPod("ip", "-br", "link", "show", "eth0"))
			if err != nil || !strings.Contains(out, mac) {
				r.fatalf("VM pod interface %q (%v), want MAC %s", out, err, mac)
			}
			out, _ = output(ctx, r.inPod("ip", "route"))
			for _, want := range []string{"default via " + clientIP, "10.251.0.0/16 via " + clientIP} {
				if !strings.Contains(out, want) {
					r.fatalf("VM pod routes %q lack %q", out, want)
				}
			}
			out, _ = output(ctx, r.inPod("ip", "neigh", "show", "nud", "permanent"))
			if !strings.Contains(out, "10.250.0.99") {
				r.fatalf("VM pod neighbours %q lack the permanent one", out)
			}
			out, _ = output(ctx, r.inPod("ip", "-o", "addr", "show", "eth0"))
			if !strings.Contains(out, podIP+"/24") {
				r.fatalf("VM pod addresses %q lack %s", out, podIP)
			}
			if tc.mode == "tunnel" {
				out, _ = output(ctx, r.inPod("ip", "link", "show", "eth0"))
				if !strings.Contains(out, fmt.Sprintf("mtu %d", tc.mtu)) {
					r.fatalf("VM pod interface %q: want MTU %d", out, tc.mtu)
				}
			}

			// Client → pod and pod → client, HTTP and ping.
			// The servers answer with the caller's address: no NAT on the way.
			out, err = output(ctx, r.inCluster("show", fmt.Sprintf("http://%s:%d/hello", podIP, podPort)))
			if err != nil || !strings.Contains(out, " to "+clientIP+":") {
				r.fatalf("client → pod: %q %v", out, err)
			}
			r.background(r.inCluster("serve", fmt.Sprintf("%s:%d", clientIP, cliPort)))
			out, err = output(ctx, r.inPod("show", fmt.Sprintf("http://%s:%d/hello", clientIP, cliPort)))
			if err != nil || !strings.Contains(out, " to "+podIP+":") {
				r.fatalf("pod → client: %q %v", out, err)
			}
			if _, err := output(ctx, r.inCluster("ping", "-c", "3", "-i", "0.2", "-W", "5", podIP)); err != nil {
				r.fatalf("ping client → pod: %v", err)
			}
			if _, err := output(ctx, r.inPod("ping", "-c", "3", "-i", "0.2", "-W", "5", clientIP)); err != nil {
				r.fatalf("ping pod → client: %v", err)
			}
			// A full-size ping, which must not be fragmented on the CNI side.
			size := tc.mtu - 28
			if tc.mode == "vxlan" {
				size = min(size, 1450-28) // the VM's interface is capped below the underlay MTU
			}
			if _, err := output(ctx, r.inCluster("ping", "-c", "2", "-W", "5", "-M", "do", "-s", fmt.Sprint(size), podIP)); err != nil {
				r.fatalf("ping of %d bytes client → pod: %v", size, err)
			}

			// 100 MiB both ways, checked by hash.
			want := fmt.Sprintf("%s %d", blobHash(blobSize), blobSize)
			out, err = output(ctx, r.inCluster("get", fmt.Sprintf("http://%s:%d/blob?n=%d", podIP, podPort, blobSize)))
			if err != nil || strings.TrimSpace(out) != want {
				r.fatalf("100 MiB pod → client: %q %v, want %q", out, err, want)
			}
			out, err = output(ctx, r.inPod("get", fmt.Sprintf("http://%s:%d/blob?n=%d", clientIP, cliPort, blobSize)))
			if err != nil || strings.TrimSpace(out) != want {
				r.fatalf("100 MiB client → pod: %q %v, want %q", out, err, want)
			}

			// StopVM leaves the pod namespace as CNI left it, nothing in ours.
			if err := r.sb.StopVM(ctx); err != nil {
				r.fatalf("StopVM: %v", err)
			}
			if after := r.podState(); after != before {
				r.fatalf("pod netns changed by attach/detach:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if hostLeftover(t, r.sb.ID) {
				r.fatalf("device of sandbox %s left in the host namespace", r.sb.ID)
			}
		})
	}
}

// TestRestartMidTransfer restarts peerpodd while 100 MiB flow from the pod
// to the client: the node's device and redirects stay, the new peerpodd
// re-dials and re-attaches (finding them again), and the pod's TCP
// connection survives.
func TestRestartMidTransfer(t *testing.T) {
	for _, mode := range []string{"tunnel", "vxlan"} {
		t.Run(mode, func(t *testing.T) { testRestartMidTransfer(t, mode) })
	}
}

func testRestartMidTransfer(t *testing.T, mode string) {
	r := newRig(t, mode, 1500)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r.start(ctx)
	want, done := slowTransfer(ctx, r)
	select {
	case got := <-done:
		r.fatalf("the transfer ended before the restart: %q %v", got.out, got.err)
	default:
	}
	r.stop()
	time.Sleep(500 * time.Millisecond)
	r.startDaemon()
	got := <-done
	if got.err != nil || strings.TrimSpace(got.out) != want {
		r.fatalf("100 MiB across a peerpodd restart: %q %v, want %q", got.out, got.err, want)
	}
	if n := strings.Count(readLog(r), "pod network attached"); n != 2 {
		r.fatalf("pod network attached %d times, want 2 (start, then re-attach after the restart)", n)
	}
	if _, err := output(ctx, r.inCluster("ping", "-c", "2", "-W", "5", podIP)); err != nil {
		r.fatalf("ping after restart: %v", err)
	}
	if err := r.sb.StopVM(ctx); err != nil {
		r.fatalf("StopVM: %v", err)
	}
	if hostLeftover(t, r.sb.ID) {
		r.fatalf("device left in the host namespace")
	}
}

// transferResult is what the client read, or why it failed.
type transferResult struct {
	out string
	err error
}

// slowTransfer starts the client reading the pod's 100 MiB blob at 20 MiB/s
// (so the transfer spans what the test does next) and returns, after 1.5 s,
// the output a complete transfer gives and where the result will arrive.
func slowTransfer(ctx context.Context, r *rig) (string, <-chan transferResult) {
	want := fmt.Sprintf("%s %d", blobHash(blobSize), blobSize)
	get := r.inCluster("get", fmt.Sprintf("http://%s:%d/blob?n=%d", podIP, podPort, blobSize), fmt.Sprint(20<<20))
	done := make(chan transferResult, 1)
	go func() { out, err := output(ctx, get); done <- transferResult{out, err} }()
	time.Sleep(1500 * time.Millisecond)
	return want, done
}

func readLog(r *rig) string {
	r.logf.Sync()
	b, _ := os.ReadFile(r.logf.Name())
	return string(b)
}

// TestTunnelRedial kills the tunnel's TCP connection (ss -K) while 100 MiB
// flow from the pod to the client: the tunnel client re-dials, the node
// opens a new net stream, the VM's agent moves the pod's TAP onto it, and
// the pod's TCP connection survives the outage.
func TestTunnelRedial(t *testing.T) {
	r := newRig(t, "tunnel", 1500)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("needs ss (iproute2)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r.start(ctx)
	want, done := slowTransfer(ctx, r)
	out, err := exec.Command("ss", "-K", "-t", "dst", r.vm.VMIP.String()).CombinedOutput()
	if err != nil {
		r.fatalf("ss -K: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), r.vm.VMIP.String()) {
		r.fatalf("ss -K killed no tunnel connection:\n%s", out)
	}
	got := <-done
	if got.err != nil || strings.TrimSpace(got.out) != want {
		r.fatalf("100 MiB across a tunnel re-dial: %q %v, want %q", got.out, got.err, want)
	}
	if !strings.Contains(readLog(r), "net stream re-opened") {
		r.fatalf("no re-opened net stream logged")
	}
	if _, err := output(ctx, r.inCluster("ping", "-c", "2", "-W", "5", podIP)); err != nil {
		r.fatalf("ping after the re-dial: %v", err)
	}
}
