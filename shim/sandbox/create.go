package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/annotations"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/proxy"
	"github.com/peerpod/peerpod/tunnel"
)

// CreateVM records a new sandbox (state created), chooses its instance
// types and opens its agent socket, whose path it returns. Nothing is made
// in the cloud yet. A repeated CreateVM of a sandbox still in "created"
// returns the same path.
func (mg *Manager) CreateVM(ctx context.Context, id string, annots map[string]string, netns string) (string, error) {
	if err := journal.ValidID(id); err != nil {
		return "", invalid("id", "%v", trimID(err))
	}
	spec, err := annotations.Parse(annots)
	if err != nil {
		var ae *annotations.Error
		if errors.As(err, &ae) {
			return "", invalid(ae.Key, "%s", ae.Msg)
		}
		return "", err
	}
	initText, err := mg.initdata(spec.Initdata)
	if err != nil {
		return "", err
	}
	types, err := mg.instanceTypes(ctx, spec)
	if err != nil {
		return "", err
	}
	e := journal.Entry{
		SandboxID: id, State: journal.Created,
		PodName: spec.PodName, PodNamespace: spec.PodNamespace, PodUID: spec.PodUID,
		NetNS: netns, AgentSocket: mg.socketPath(id),
		InstanceTypes: types, VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB, GPUs: spec.GPUs,
		Image: spec.Image, Initdata: initText,
	}
	log := sandboxLogger(mg.log, &e)

	end, err := mg.begin(id)
	if err != nil {
		return "", err
	}
	defer end()
	mg.mu.Lock()
	if old, ok := mg.sandboxes[id]; ok {
		mg.mu.Unlock()
		if st := old.snapshot(); st.State == journal.Created {
			return st.AgentSocket, nil
		} else {
			return "", fmt.Errorf("sandbox %s: %w (state %s)", id, ErrExists, st.State)
		}
	}
	if limit := mg.opts.MaxSandboxes; limit > 0 && mg.liveLocked() >= limit {
		mg.mu.Unlock()
		return "", fmt.Errorf("create sandbox %s: %w: %d sandboxes on node %s (PEERPODS_LIMIT_PER_NODE)", id, ErrLimit, limit, mg.opts.NodeName)
	}
	s := mg.newSandbox(e, log)
	s.mu.Lock() // held until the socket is up, so StartVM/StopVM wait for it
	defer s.mu.Unlock()
	mg.sandboxes[id] = s
	mg.mu.Unlock()

	if err := mg.put(s, e); err != nil {
		mg.forget(id)
		return "", fmt.Errorf("create sandbox %s: %w", id, err)
	}
	if err := mg.listen(s); err != nil {
		mg.opts.Journal.Remove(id)
		mg.forget(id)
		return "", fmt.Errorf("create sandbox %s: %w", id, err)
	}
	log.Info("sandbox created", "agent_socket", e.AgentSocket, "instance_types", types,
		"vcpus", e.VCPUs, "memory_mib", e.MemoryMiB, "gpus", e.GPUs, "initdata", initText != "")
	return e.AgentSocket, nil
}

func trimID(err error) string {
	msg := err.Error()
	if len(msg) > 3 && msg[:3] == "id " {
		return msg[3:]
	}
	return msg
}

func (mg *Manager) newSandbox(e journal.Entry, log *slog.Logger) *sandbox {
	return &sandbox{id: e.SandboxID, log: log, past: &mg.pastReconnects, entry: e,
		ready: make(chan struct{}), gone: make(chan struct{})}
}

// forget drops a sandbox from the table.
func (mg *Manager) forget(id string) {
	mg.mu.Lock()
	delete(mg.sandboxes, id)
	mg.mu.Unlock()
	mg.updateGauge()
}

// listen opens the sandbox's agent socket.
func (mg *Manager) listen(s *sandbox) error {
	path := mg.socketPath(s.id)
	p, err := proxy.Listen(path, func(ctx context.Context) (net.Conn, error) { return s.openAgent(ctx) },
		proxy.Options{OpenTimeout: mg.opts.AgentOpenTimeout, Logger: s.log})
	if err != nil {
		os.Remove(filepath.Dir(path))
		return err
	}
	s.stateMu.Lock()
	s.proxy = p
	s.stateMu.Unlock()
	return nil
}

// openAgent opens an agent stream once the VM is ready.
func (s *sandbox) openAgent(ctx context.Context) (net.Conn, error) {
	select {
	case <-s.ready:
	case <-s.gone:
		return nil, fmt.Errorf("sandbox %s has no VM", s.id)
	case <-ctx.Done():
		return nil, fmt.Errorf("sandbox %s: VM not ready: %w", s.id, ctx.Err())
	}
	s.stateMu.Lock()
	c := s.client
	s.stateMu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("sandbox %s has no VM", s.id)
	}
	return c.Open(ctx, tunnel.KindAgent, nil)
}

// initdata decodes the annotation value (TOML, or base64 of gzip) or the
// default, and checks it parses.
func (mg *Manager) initdata(value string) (string, error) {
	if value == "" {
		return mg.opts.DefaultInitdata, nil
	}
	text, err := initdata.DecodeAnnotation(value)
	if err != nil {
		return "", invalid(annotations.Initdata, "%v", err)
	}
	if _, err := initdata.Parse(text); err != nil {
		return "", invalid(annotations.Initdata, "%v", err)
	}
	return string(text), nil
}

// instanceTypes picks the instance types for spec, best first; nil for a
// provider without instance types.
func (mg *Manager) instanceTypes(ctx context.Context, spec *annotations.Spec) ([]string, error) {
	pol, ok := mg.prov.(InstanceTypePolicy)
	if !ok {
		return nil, nil
	}
	allow, def := pol.InstanceTypePolicy()
	types, err := mg.knownTypes(ctx)
	if err != nil {
		return nil, err
	}
	want := provider.Resources{VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB, GPUs: spec.GPUs}
	if types == nil {
		want = provider.Resources{} // sizes unknown: the default, unless explicit
	}
	out, err := provider.SelectInstanceTypes(types, want, spec.MachineType, allow, def)
	if err != nil {
		key := annotations.DefaultVCPUs + "/" + annotations.DefaultMemory + "/" + annotations.DefaultGPUs
		if spec.MachineType != "" {
			key = annotations.MachineType
		}
		return nil, invalid(key, "%v", err)
	}
	return out, nil
}

// knownTypes asks an InstanceTypeLister once and caches a good answer.
func (mg *Manager) knownTypes(ctx context.Context) ([]provider.InstanceType, error) {
	l, ok := mg.prov.(provider.InstanceTypeLister)
	if !ok {
		return nil, nil
	}
	mg.typesOnce.Lock()
	defer mg.typesOnce.Unlock()
	if mg.typesOK {
		return mg.types, nil
	}
	types, err := l.InstanceTypes(ctx)
	if err != nil {
		mg.cloudError("instance_types", err)
		return nil, fmt.Errorf("list instance types: %w", err)
	}
	mg.types, mg.typesOK = types, true
	return types, nil
}
