package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/peerpod/peerpod/test/kataclient"
)

// TestRig checks the benchmark rig without timing anything: peerpodd as a
// process over the farm in another, sandboxes that answer through their
// agent sockets, the direct socket, and nothing left after StopVM — so the
// benchmarks' set-up is covered by `go test`.
func TestRig(t *testing.T) {
	r := newRig(t, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sbs []*kataclient.Sandbox
	for i := range 3 {
		s, err := r.kc.NewSandbox(ctx, kataclient.NewSandboxID(), pod(i), "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.StartVM(ctx); err != nil {
			t.Fatalf("StartVM: %v\n%s", err, r.d.Tail(20))
		}
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
		sbs = append(sbs, s)
	}
	vms, err := r.farm.VMs(ctx)
	if err != nil || len(vms) != 3 {
		t.Fatalf("farm VMs %v, %v", vms, err)
	}
	conn, err := net.Dial("unix", r.farm.DirectSocket(vms[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := version(ctx, conn); err != nil {
		t.Fatalf("direct echo: %v", err)
	}
	if n, err := r.d.Metric(`peerpod_sandboxes{state="running"}`); err != nil || n != 3 {
		t.Fatalf("running sandboxes metric %v, %v", n, err)
	}
	if rss, err := r.d.RSS(); err != nil || rss <= 0 {
		t.Fatalf("RSS %d, %v", rss, err)
	}
	for _, s := range sbs {
		if err := s.StopVM(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if vms, err := r.farm.VMs(ctx); err != nil || len(vms) != 0 {
		t.Fatalf("VMs left after StopVM: %v, %v", vms, err)
	}
}
