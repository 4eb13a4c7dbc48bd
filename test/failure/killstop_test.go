package failure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/test/daemonproc"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/procprovider"
)

// TestKillDuringStop kills peerpodd while StopVM runs for every sandbox:
// after the restart the interrupted deletions are finished (or StopVM,
// sent again as the runtime would, finishes them) and nothing is left.
func TestKillDuringStop(t *testing.T) {
	needRoot(t)
	agentBin, peerpodd := binaries(t)
	rounds, n := 3, 5
	if testing.Short() {
		rounds = 1
	}
	base := shortDir(t)
	vmDir := filepath.Join(base, "vms")
	prov, err := procprovider.New(procprovider.Config{StateDir: vmDir, AgentPath: agentBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.DeleteAll(context.Background()) })
	opts := daemonproc.Options{Dir: base, Binary: peerpodd, Env: map[string]string{
		"PROCPROVIDER_STATE_DIR": vmDir, "PROCPROVIDER_AGENT": agentBin, "LOG_LEVEL": "debug", "RECONCILE_GRACE": "1h",
	}}
	for round := range rounds {
		t.Run(fmt.Sprintf("round-%d", round), func(t *testing.T) {
			d := daemonproc.Start(t, opts)
			kc, _ := kataclient.New(kataclient.Config{HypervisorSocket: d.Endpoint, HypervisorTimeout: 2 * time.Minute})
			ctx := context.Background()
			sbs := make([]*kataclient.Sandbox, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					sb, err := kc.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: fmt.Sprintf("stop-%d", i), Namespace: "failure"}, "")
					if err == nil {
						err = sb.StartVM(ctx)
					}
					if err != nil {
						t.Errorf("sandbox %d: %v", i, err)
					}
					sbs[i] = sb
				})
			}
			wg.Wait()
			if t.Failed() {
				t.Logf("peerpodd log:\n%s", d.Tail(40))
				return
			}
			for _, sb := range sbs {
				wg.Go(func() { sb.StopVM(ctx) }) // most are cut short by the kill
			}
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
			d.Kill()
			wg.Wait()

			d = d.Restart(t)
			kc, _ = kataclient.New(kataclient.Config{HypervisorSocket: d.Endpoint})
			st := settled(t, d)
			for _, s := range st.Sandboxes {
				if s.State != journal.Running {
					t.Errorf("sandbox %s is %s after the restart", s.SandboxID[:12], s.State)
				}
			}
			for _, sb := range sbs {
				if err := kc.StopVM(ctx, sb.ID); err != nil && !isNotFound(err) {
					t.Errorf("StopVM %s again: %v", sb.ID[:12], err)
				}
			}
			if vms, _ := leftovers(t, vmDir, prov); len(vms) > 0 {
				t.Errorf("provider holds %d VMs after every StopVM", len(vms))
			}
			if st, err := daemonStatus(d.ProbeAddr); err != nil || len(st.Sandboxes) != 0 {
				t.Errorf("sandboxes left: %+v (%v)", st, err)
			}
			if t.Failed() {
				t.Logf("peerpodd log:\n%s", d.Tail(40))
				prov.DeleteAll(ctx)
			}
			d.Kill()
		})
		if t.Failed() {
			return
		}
	}
}
