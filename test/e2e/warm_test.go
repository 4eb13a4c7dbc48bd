package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/test/e2e/harness"
)

// TestWarmPool runs a pod on a warm VM: peerpodd keeps one booted
// (WARM_POOL_SIZE=1), the pod takes it and runs a container, the pool boots
// a replacement, a peerpodd restart keeps the pod's VM and replaces the
// warm one, and nothing is left once the pod is deleted and peerpodd stops.
func TestWarmPool(t *testing.T) {
	env, c := setupWith(t, harness.Options{Env: []string{"WARM_POOL_SIZE=1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	warm, err := env.WaitWarmReady(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(warm) != 1 || !strings.HasPrefix(warm[0].Name, "podvm-warm-") {
		t.Fatalf("warm VMs %+v", warm)
	}
	sb := startPod(ctx, t, c, "e2e-warm")
	runApp(ctx, t, env, sb, "app", "hello from a warm VM")
	longRunning(ctx, t, env, sb, "sleeper")
	vms, err := env.WarmVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, vm := range vms {
		names[vm.Name] = true
	}
	if len(vms) != 2 || !names[warm[0].Name] {
		t.Fatalf("after the pod started: warm-tagged VMs %v, want %s (the pod's) and a replacement", names, warm[0].Name)
	}
	p, err := env.Provider(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := p.List(ctx, map[string]string{"peerpod.io/node": env.Node})
	p.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d VMs on the node, want 2 (the pod took the warm VM instead of booting its own)", len(all))
	}

	// A restart keeps the pod's VM; the new peerpodd replaces the warm one.
	env.StopPeerpodd()
	if vms, err = env.WarmVMs(ctx); err != nil || len(vms) != 1 || vms[0].Name != warm[0].Name {
		t.Fatalf("after peerpodd stopped: warm-tagged VMs %+v (%v), want only the pod's %s", vms, err, warm[0].Name)
	}
	if err := env.StartPeerpodd(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if err = sb.Check(ctx); err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("after restart the pod does not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := strings.TrimSpace(execIn(ctx, t, sb, "sleeper", "/bin/echo", "still here")); got != "still here" {
		t.Fatalf("exec after restart: %q", got)
	}
	if _, err := env.WaitWarmReady(ctx, 2); err != nil {
		t.Fatal(err)
	}
	stopPod(ctx, t, sb)
	env.StopPeerpodd()
	assertClean(ctx, t, env)
}
