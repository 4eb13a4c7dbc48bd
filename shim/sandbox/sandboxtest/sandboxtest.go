// Package sandboxtest is a test fixture: an in-memory provider.Provider whose
// "VMs" are in-process pod agents (a real tunnel server with attested fake
// evidence, serving grpc.Health and the config stream) listening on their own
// loopback address. It makes peerpodd's lifecycle testable without
// processes, namespaces or virtualization, with faults to inject. Never use
// it outside tests.
package sandboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
	"github.com/peerpod/peerpod/tunnel/provision"
)

// Faults change how the provider and its VMs behave. Set them before the
// calls they should affect.
type Faults struct {
	// CreateDelay is how long each Create takes.
	CreateDelay time.Duration
	// CreateErr, when set, makes Create fail after it has made a VM (a
	// half-made VM the provider does NOT clean up, to test the caller's cleanup).
	CreateErr error
	// CreateErrClean, when set, makes Create fail cleanly (nothing made).
	CreateErrClean error
	// SilentAgent makes VMs accept tunnel sessions but never answer Health.Check.
	SilentAgent bool
	// NoListener makes VMs never listen (connection refused).
	NoListener bool
	// WrongInitdata makes VMs attest a different initdata digest.
	WrongInitdata bool
	// RefuseProvision makes warm VMs refuse every sandbox handed to them
	// (they believe they booted with another tunnel port).
	RefuseProvision bool
}

// VM is one fake pod VM.
type VM struct {
	provider.Instance
	UserData *userdata.Config
	// Conns counts the connections the VM's agent port accepted once its
	// tunnel served (reachability probes and tunnel sessions).
	Conns int
	// Secrets is what the node sent on the config stream (nil until then).
	Secrets *userdata.Secrets

	cancel context.CancelFunc
	ln     net.Listener
	done   chan struct{}
}

// Provider is the in-memory provider. Create it with New.
type Provider struct {
	// Port is the tunnel port every VM listens on (pass it as ForwarderPort).
	Port int
	log  *slog.Logger

	mu      sync.Mutex
	faults  Faults
	vms     map[string]*VM // by ID
	creates int
	deletes int
}

// New makes a provider; its VMs listen on 127.x.y.z:Port.
func New(log *slog.Logger) *Provider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{Port: 20000 + rand.N(20000), log: log, vms: map[string]*VM{}}
}

// SetFaults replaces the faults.
func (p *Provider) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "sandboxtest" }

// Validate implements provider.Provider.
func (p *Provider) Validate(context.Context) error { return nil }

// Create implements provider.Provider: idempotent on Name.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	if req.Name == "" {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create: empty name")
	}
	p.mu.Lock()
	f := p.faults
	p.creates++
	for _, vm := range p.vms {
		if vm.Name == req.Name {
			inst := vm.Instance
			p.mu.Unlock()
			return &inst, nil
		}
	}
	p.mu.Unlock()
	if f.CreateErrClean != nil {
		return nil, f.CreateErrClean
	}
	if f.CreateDelay > 0 {
		select {
		case <-time.After(f.CreateDelay):
		case <-ctx.Done():
			return nil, provider.Classify(provider.ErrTransient, ctx.Err())
		}
	}
	ud, err := userdata.Decode(req.UserData)
	if err != nil {
		return nil, provider.Classify(provider.ErrInvalidConfig, err)
	}
	addr := netip.AddrFrom4([4]byte{127, byte(1 + rand.N(250)), byte(rand.N(256)), byte(1 + rand.N(254))})
	vm := &VM{
		Instance: provider.Instance{ID: fmt.Sprintf("vm-%s-%d", req.Name, rand.N(1<<30)), Name: req.Name, IPs: []netip.Addr{addr},
			Tags: req.Tags, Created: time.Now(), InstanceType: first(req.InstanceTypes)},
		UserData: ud, done: make(chan struct{}),
	}
	if !f.NoListener {
		if err := p.boot(vm, f); err != nil {
			return nil, provider.Classify(provider.ErrTransient, err)
		}
	} else {
		close(vm.done)
	}
	p.mu.Lock()
	p.vms[vm.ID] = vm
	p.mu.Unlock()
	if f.CreateErr != nil {
		return nil, f.CreateErr
	}
	inst := vm.Instance
	return &inst, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// boot starts the VM's agent: tunnel server with a fake-attested
// certificate; a warm VM first waits for its sandbox's user data on the
// same port, as podvm-agent does.
func (p *Provider) boot(vm *VM, f Faults) error {
	ud := vm.UserData
	ln, err := net.Listen("tcp", net.JoinHostPort(vm.IPs[0].String(), strconv.Itoa(ud.Port())))
	if err != nil {
		return err
	}
	if !ud.Warm {
		if err := p.serve(vm, ud, f, ln); err != nil {
			ln.Close()
			return err
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	vm.cancel = func() { cancel(); ln.Close() }
	boot := *ud
	if f.RefuseProvision {
		boot.ListenPort = ud.Port() + 1
	}
	go func() {
		pod, tln, err := provision.Accept(ctx, ln, &boot, p.log)
		if err == nil {
			ln = tln
			p.mu.Lock()
			vm.UserData = pod
			f = p.faults
			p.mu.Unlock()
			// A stop that came meanwhile closed ln: serve ends at once.
			if err = p.serve(vm, pod, f, ln); err == nil {
				return
			}
		}
		p.log.Warn("warm VM stopped", "vm", vm.Name, "err", err)
		ln.Close()
		p.mu.Lock()
		vm.cancel = nil
		p.mu.Unlock()
		close(vm.done)
	}()
	return nil
}

// serve runs the agent for user data ud on ln.
func (p *Provider) serve(vm *VM, ud *userdata.Config, f Faults, ln net.Listener) error {
	var digest []byte
	if ud.Initdata != "" {
		in, err := initdata.Parse([]byte(ud.Initdata))
		if err != nil {
			return err
		}
		digest = in.Digest()
	}
	if f.WrongInitdata {
		digest = []byte("some other initdata digest......")
	}
	att, err := attest.NewAttester(ud.Attester)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	serverTLS, err := attest.ServerTLS(ctx, att, digest, ud.TunnelCA)
	if err != nil {
		cancel()
		return err
	}
	srv, err := tunnel.NewServer(tunnel.Config{TLS: serverTLS, Logger: p.log})
	if err != nil {
		cancel()
		return err
	}
	srv.Handle(tunnel.KindConfig, func(ctx context.Context, c net.Conn, h tunnel.Header) {
		b, err := io.ReadAll(io.LimitReader(c, 1<<20))
		if err != nil {
			return
		}
		var s userdata.Secrets
		if json.Unmarshal(b, &s) == nil {
			p.mu.Lock()
			vm.Secrets = &s
			p.mu.Unlock()
		}
	})
	tsrv, err := ttrpc.NewServer()
	if err != nil {
		cancel()
		return err
	}
	if !f.SilentAgent {
		agent.RegisterHealthService(tsrv, health{})
	}
	agentLn := srv.Listener(tunnel.KindAgent)
	if f.SilentAgent {
		// Accept agent streams and never answer.
		go func() {
			for {
				c, err := agentLn.Accept()
				if err != nil {
					return
				}
				go func() { <-ctx.Done(); c.Close() }()
			}
		}()
	} else {
		go tsrv.Serve(ctx, agentLn)
	}
	p.mu.Lock()
	vm.ln, vm.cancel = ln, func() { cancel(); tsrv.Close(); ln.Close() }
	p.mu.Unlock()
	go func() {
		defer close(vm.done)
		srv.Serve(ctx, &countingListener{Listener: ln, count: func() { p.mu.Lock(); vm.Conns++; p.mu.Unlock() }})
	}()
	return nil
}

type countingListener struct {
	net.Listener
	count func()
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.count()
	}
	return c, err
}

type health struct{}

func (health) Check(context.Context, *agent.CheckRequest) (*agent.HealthCheckResponse, error) {
	return &agent.HealthCheckResponse{Status: agent.HealthCheckResponse_SERVING}, nil
}

func (health) Version(context.Context, *agent.CheckRequest) (*agent.VersionCheckResponse, error) {
	return &agent.VersionCheckResponse{AgentVersion: "sandboxtest"}, nil
}

// Delete implements provider.Provider; a missing VM is not an error.
func (p *Provider) Delete(ctx context.Context, id string) error {
	p.mu.Lock()
	vm, ok := p.vms[id]
	delete(p.vms, id)
	p.deletes++
	p.mu.Unlock()
	if ok {
		p.stopVM(vm)
	}
	return nil
}

func (p *Provider) stopVM(vm *VM) {
	p.mu.Lock()
	cancel := vm.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	<-vm.done
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Instance
	for _, vm := range p.vms {
		if provider.Matches(vm.Tags, tags) {
			out = append(out, vm.Instance)
		}
	}
	return out, nil
}

// Stop stops the agent of the VM with id, leaving the VM listed (an agent
// that crashed in a VM that still runs).
func (p *Provider) Stop(id string) {
	p.mu.Lock()
	vm, ok := p.vms[id]
	p.mu.Unlock()
	if ok {
		p.stopVM(vm)
	}
}

// VMs returns a copy of the current VMs.
func (p *Provider) VMs() []VM {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]VM, 0, len(p.vms))
	for _, vm := range p.vms {
		out = append(out, VM{Instance: vm.Instance, UserData: vm.UserData, Secrets: vm.Secrets, Conns: vm.Conns})
	}
	return out
}

// Counts returns how many Create and Delete calls were made.
func (p *Provider) Counts() (creates, deletes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.creates, p.deletes
}

// Close stops every VM (test cleanup).
func (p *Provider) Close() {
	p.mu.Lock()
	vms := p.vms
	p.vms = map[string]*VM{}
	p.mu.Unlock()
	for _, vm := range vms {
		p.stopVM(vm)
	}
}
