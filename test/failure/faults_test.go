package failure

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/test/kataclient"
	"github.com/peerpod/peerpod/test/procprovider"
)

// halfway makes a VM and then fails, as a cloud call that created the VM
// but failed attaching something to it.
type halfway struct {
	*procprovider.Provider
	cause string
}

func (h halfway) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	if _, err := h.Provider.Create(ctx, req); err != nil {
		return nil, err
	}
	return nil, errors.New(h.cause)
}

func codeOf(err error) codes.Code {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok {
			return s.Code()
		}
	}
	return codes.Unknown
}

// checkNothingLeft asserts the provider, the agent socket and the sandbox
// table hold nothing of the failed start once StopVM has run.
func checkNothingLeft(t *testing.T, vmDir string, prov *procprovider.Provider, made []procprovider.VM, d *daemon.Daemon, sb *kataclient.Sandbox) {
	t.Helper()
	vms, slots := leftovers(t, vmDir, prov)
	if len(vms) > 0 || len(slots) > 0 {
		t.Errorf("provider holds %d VMs and slots %v", len(vms), slots)
	}
	for _, vm := range made {
		if vm.Alive() {
			t.Errorf("agent process %d of %s still runs", vm.PID, vm.Name)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", vm.NetNS)); err == nil {
			t.Errorf("netns %s left", vm.NetNS)
		}
	}
	if _, err := os.Stat(filepath.Dir(sb.AgentSocket)); err == nil {
		t.Errorf("agent socket directory %s left", filepath.Dir(sb.AgentSocket))
	}
	if err := sb.StopVM(context.Background()); err != nil {
		t.Errorf("StopVM after the failed start: %v", err)
	}
	if n := len(d.Status().Sandboxes); n != 0 {
		t.Errorf("%d sandboxes left after StopVM", n)
	}
}

func snapshotVMs(t *testing.T, prov *procprovider.Provider, into *[]procprovider.VM) {
	t.Helper()
	vms, err := prov.VMs()
	if err != nil {
		t.Fatal(err)
	}
	*into = append(*into, vms...)
}

func TestCreateFailsHalfway(t *testing.T) {
	needRoot(t)
	agentBin, _ := binaries(t)
	base := shortDir(t)
	vmDir := filepath.Join(base, "vms")
	prov, err := procprovider.New(procprovider.Config{StateDir: vmDir, AgentPath: agentBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.DeleteAll(context.Background()) })
	const cause = "attach data disk: quota of premium disks exhausted"
	var made []procprovider.VM
	hp := &observed{halfway: halfway{Provider: prov, cause: cause}, after: func() { snapshotVMs(t, prov, &made) }}
	ip := runDaemon(t, base, daemonOptions(hp), nil)
	kc, _ := kataclient.New(kataclient.Config{HypervisorSocket: ip.cfg.Endpoint, HypervisorTimeout: time.Minute})
	ctx := context.Background()
	sb, err := kc.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: "halfway", Namespace: "failure"}, "")
	if err != nil {
		t.Fatal(err)
	}
	err = sb.StartVM(ctx)
	if err == nil || !strings.Contains(err.Error(), cause) {
		t.Fatalf("StartVM = %v, want an error naming %q", err, cause)
	}
	if len(made) != 1 {
		t.Fatalf("the provider made %d VMs before failing, want 1", len(made))
	}
	checkNothingLeft(t, vmDir, prov, made, ip.d, sb)
}

// observed calls after once Create has returned.
type observed struct {
	halfway
	after func()
}

func (o *observed) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	inst, err := o.halfway.Create(ctx, req)
	o.after()
	return inst, err
}

func TestAgentNeverAnswers(t *testing.T) {
	needRoot(t)
	base := shortDir(t)
	vmDir := filepath.Join(base, "vms")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The "VM" accepts the tunnel's TCP connection and never speaks.
	prov, err := procprovider.New(procprovider.Config{StateDir: vmDir, Command: func(vm *procprovider.VM) []string {
		return []string{"env", envSilent + "=" + vm.VMIP.String() + ":15150", self, "-test.run=^$"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prov.DeleteAll(context.Background()) })
	var made []procprovider.VM
	rec := &snapshotting{Provider: prov, after: func() { snapshotVMs(t, prov, &made) }}
	const timeout = 3 * time.Second
	ip := runDaemon(t, base, daemonOptions(rec), map[string]string{"PROXY_TIMEOUT": timeout.String()})
	kc, _ := kataclient.New(kataclient.Config{HypervisorSocket: ip.cfg.Endpoint, HypervisorTimeout: time.Minute})
	ctx := context.Background()
	sb, err := kc.NewSandbox(ctx, kataclient.NewSandboxID(), kataclient.Pod{Name: "silent", Namespace: "failure"}, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = sb.StartVM(ctx)
	took := time.Since(start)
	if err == nil {
		t.Fatal("StartVM succeeded with an agent that never answers")
	}
	if codeOf(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("StartVM = %v (code %v), want DeadlineExceeded saying the agent did not answer", err, codeOf(err))
	}
	if took < timeout || took > timeout+45*time.Second {
		t.Fatalf("StartVM failed after %v, want about PROXY_TIMEOUT %v", took, timeout)
	}
	if len(made) != 1 {
		t.Fatalf("the provider made %d VMs, want 1", len(made))
	}
	checkNothingLeft(t, vmDir, prov, made, ip.d, sb)
}

// snapshotting records the provider's VMs after each Create.
type snapshotting struct {
	*procprovider.Provider
	after func()
}

func (s *snapshotting) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	inst, err := s.Provider.Create(ctx, req)
	s.after()
	return inst, err
}

func daemonOptions(p provider.Provider) daemon.Options { return daemon.Options{Provider: p} }
