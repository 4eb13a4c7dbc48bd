package failure

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/test/daemonproc"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/procprovider"
)

// answerBound is how soon after a restart a running sandbox must answer on
// its old agent socket (the 2 s, kept as a behavioural bound: the
// pod must not notice the restart).
const answerBound = 2 * time.Second

// TestKillDuringCreateAndRun kills peerpodd with SIGKILL while sandboxes are
// being created and others run, restarts it, and checks: the running ones
// answer on the same agent socket paths, the interrupted ones are completed
// or cleaned up, StopVM works for all, and the provider keeps no VM without
// a sandbox. It repeats the round (10 times; 2 with -short).
func TestKillDuringCreateAndRun(t *testing.T) {
	needRoot(t)
	agentBin, peerpodd := binaries(t)
	rounds, creating, running := 10, 20, 5
	if testing.Short() {
		rounds, creating, running = 2, 10, 3
	}
	base := shortDir(t)
	vmDir := filepath.Join(base, "vms")
	prov, err := procprovider.New(procprovider.Config{StateDir: vmDir, AgentPath: agentBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.DeleteAll(context.Background()) })
	opts := daemonproc.Options{Dir: base, Binary: peerpodd, Env: map[string]string{
		"PROCPROVIDER_STATE_DIR": vmDir, "PROCPROVIDER_AGENT": agentBin, "LOG_LEVEL": "debug",
		"RECONCILE_GRACE": "1h", // the restart alone must leave nothing behind
	}}
	for round := range rounds {
		t.Run(fmt.Sprintf("round-%d", round), func(t *testing.T) {
			killRound(t, opts, prov, vmDir, creating, running)
		})
		if t.Failed() {
			return
		}
	}
}

type attempt struct {
	sb       *kataclient.Sandbox
	created  bool // CreateVM answered
	startErr error
}

func killRound(t *testing.T, opts daemonproc.Options, prov *procprovider.Provider, vmDir string, creating, running int) {
	d := daemonproc.Start(t, opts)
	kc, err := kataclient.New(kataclient.Config{HypervisorSocket: d.Endpoint, HypervisorTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dump := func() {
		t.Logf("peerpodd log:\n%s", d.Tail(40))
	}

	// The running ones.
	var runningSBs []*kataclient.Sandbox
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range running {
		wg.Go(func() {
			sb, err := kc.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: fmt.Sprintf("run-%d", i), Namespace: "failure"}, "")
			if err == nil {
				err = sb.StartVM(ctx)
			}
			if err == nil {
				err = sb.Check(ctx)
			}
			if err != nil {
				t.Errorf("running sandbox %d: %v", i, err)
				return
			}
			mu.Lock()
			runningSBs = append(runningSBs, sb)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		dump()
		return
	}

	// The ones being created when peerpodd dies.
	attempts := make([]*attempt, creating)
	for i := range creating {
		a := &attempt{}
		attempts[i] = a
		wg.Go(func() {
			id := kataclient.NewSandboxID()
			sb, err := kc.NewSandbox(ctx, id, kataclient.Pod{Name: fmt.Sprintf("new-%d", i), Namespace: "failure"}, "")
			if err != nil {
				a.sb = kc.Attach(id, "", kataclient.Pod{})
				return
			}
			a.sb, a.created = sb, true
			a.startErr = sb.StartVM(ctx)
		})
	}
	// Die somewhere in the middle: before any VM, among the creates, or as
	// agents come up.
	time.Sleep(time.Duration(50+rand.IntN(3000)) * time.Millisecond)
	d.Kill()
	wg.Wait()
	survivors := 0
	for _, a := range attempts {
		if a.created && a.startErr == nil {
			survivors++
		}
	}
	t.Logf("killed peerpodd: %d of %d creates had finished", survivors, creating)

	// Restart: running sandboxes answer on their old paths at once.
	d = d.Restart(t)
	kc, _ = kataclient.New(kataclient.Config{HypervisorSocket: d.Endpoint, HypervisorTimeout: 2 * time.Minute})
	restarted := time.Now()
	for _, sb := range runningSBs {
		wg.Go(func() {
			again := kc.Attach(sb.ID, sb.AgentSocket, sb.Pod)
			cctx, cancel := context.WithTimeout(ctx, answerBound)
			defer cancel()
			if err := again.Check(cctx); err != nil {
				t.Errorf("sandbox %s: no answer on %s within %v of the restart: %v", sb.ID[:12], sb.AgentSocket, answerBound, err)
			}
		})
	}
	wg.Wait()
	t.Logf("running sandboxes answered %v after the restart", time.Since(restarted).Round(time.Millisecond))

	// Interrupted ones: once restore's work is done, each is running (its
	// start had finished), created (StartVM never reached peerpodd),
	// failed with its VM deleted, or unknown. No VM lacks a running sandbox.
	st := settled(t, d)
	states := map[string]journal.State{}
	for _, s := range st.Sandboxes {
		states[s.SandboxID] = s.State
		if s.State == journal.Failed && s.VMID != "" {
			t.Errorf("sandbox %s failed but keeps VM %s: %s", s.SandboxID[:12], s.VMID, s.Error)
		}
	}
	counts := map[journal.State]int{}
	for _, a := range attempts {
		counts[states[a.sb.ID]]++
	}
	t.Logf("interrupted sandboxes after the restart, by state (\"\" = unknown to peerpodd): %v", counts)
	vms, slots := leftovers(t, vmDir, prov)
	for _, vm := range vms {
		if states[vm.Tags[provider.TagSandbox]] != journal.Running {
			t.Errorf("VM %s (%s) has no running sandbox (state %q)", vm.Name, vm.ID, states[vm.Tags[provider.TagSandbox]])
		}
	}
	if len(slots) > 0 {
		// Not a VM: the kill fell between procprovider reserving the
		// address and recording the VM. Reported, not failed.
		t.Logf("address slots reserved by interrupted creates and never recorded: %v", slots)
	}
	for _, sb := range runningSBs {
		if states[sb.ID] != journal.Running {
			t.Errorf("running sandbox %s is %q after the restart", sb.ID[:12], states[sb.ID])
		}
	}

	// StopVM works for all, as the runtime sends it after a failed start.
	all := append([]*kataclient.Sandbox(nil), runningSBs...)
	for _, a := range attempts {
		all = append(all, a.sb)
	}
	for _, sb := range all {
		wg.Go(func() {
			err := kc.StopVM(ctx, sb.ID)
			if err == nil {
				return
			}
			if isNotFound(err) {
				if _, known := states[sb.ID]; known {
					t.Errorf("StopVM %s: not found, but it was %s", sb.ID[:12], states[sb.ID])
				}
				return
			}
			t.Errorf("StopVM %s (%s): %v", sb.ID[:12], states[sb.ID], err)
		})
	}
	wg.Wait()
	if vms, _ = leftovers(t, vmDir, prov); len(vms) > 0 {
		t.Errorf("after StopVM of every sandbox the provider holds %d VMs", len(vms))
	}
	if st, err := daemonStatus(d.ProbeAddr); err != nil || len(st.Sandboxes) != 0 {
		t.Errorf("sandboxes left after StopVM: %+v (%v)", st, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(opts.Dir, "pods")); len(entries) > 0 {
		t.Errorf("agent socket directories left: %d", len(entries))
	}
	if t.Failed() {
		dump()
		prov.DeleteAll(ctx) // the next round starts clean
	}
	d.Kill()
}

func isNotFound(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok && s.Code() == codes.NotFound {
			return true
		}
	}
	return false
}
