package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/metrics"
	"github.com/peerpod/peerpod/shim/retry"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
	"github.com/peerpod/peerpod/tunnel/attest/verify"
)

// StartVM makes the sandbox's VM and returns once its agent answers
// Health.Check through the attested tunnel (within ProxyTimeout of the VM
// being made). On failure everything made is deleted, the sandbox is kept
// as "failed" for a later StopVM, and the error names the cause.
func (mg *Manager) StartVM(ctx context.Context, id string) error {
	s, err := mg.get(id)
	if err != nil {
		return err
	}
	end, err := mg.begin(id)
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := mg.bound(ctx)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.snapshot()
	switch e.State {
	case journal.Running:
		return nil
	case journal.Created:
	case journal.Failed:
		return fmt.Errorf("sandbox %s: %w: it failed earlier: %s", id, ErrState, e.Error)
	default:
		return fmt.Errorf("sandbox %s: %w: state is %s", id, ErrState, e.State)
	}
	start := time.Now()
	log := s.log

	name, err := provider.VMName(e.PodName, id)
	if err != nil {
		return mg.fail(s, e, "config", fmt.Errorf("start sandbox %s: %w", id, err))
	}
	var digest []byte
	if e.Initdata != "" {
		in, err := initdata.Parse([]byte(e.Initdata))
		if err != nil {
			return mg.fail(s, e, "initdata", fmt.Errorf("start sandbox %s: initdata: %w", id, err))
		}
		digest = in.Digest()
	}
	verifier, err := verify.NewVerifier(mg.opts.Attester, verify.Expectations{InitdataDigest: digest})
	if err != nil {
		return mg.fail(s, e, "config", fmt.Errorf("start sandbox %s: %w", id, err))
	}
	pod := userdata.Config{
		Version: userdata.Version, SandboxID: id, VMName: name, ListenPort: mg.opts.ForwarderPort,
		TunnelCA: string(mg.opts.Credentials.CertPEM()), Attester: mg.opts.Attester, Initdata: e.Initdata,
	}
	ud, err := userdata.Encode(&pod)
	if err != nil {
		return mg.fail(s, e, "config", fmt.Errorf("start sandbox %s: %w", id, err))
	}

	inst, e, err := mg.startWarm(ctx, s, e, pod)
	if err != nil {
		return mg.fail(s, e, "warm", fmt.Errorf("start sandbox %s: %w", id, err))
	}
	if inst != nil {
		defer mg.handed(inst.ID) // the pool's replacement boots after this start
	} else if inst, e, err = mg.createVM(ctx, s, e, name, ud); err != nil {
		return err
	}
	if len(inst.IPs) == 0 {
		return mg.fail(s, e, "provider", fmt.Errorf("start sandbox %s: VM %s (%s) has no IP address", id, e.VMName, inst.ID))
	}
	e.VMAddr = net.JoinHostPort(inst.IPs[0].String(), strconv.Itoa(mg.opts.ForwarderPort))
	name = e.VMName
	// The VM's id is journalled with the running state below; a crash
	// before that finds the VM by its sandbox tag (see deleteVM).
	log.Info("VM created; waiting for its agent", "vm", name, "vm_id", inst.ID, "addr", e.VMAddr,
		"instance_type", inst.InstanceType)

	cfg := mg.tunnelConfig(s, verifier)
	sess, err := mg.waitAgent(ctx, s, e, cfg)
	if err != nil {
		return mg.fail(s, e, causeOf(err), fmt.Errorf("start sandbox %s: %w", id, err))
	}
	// The probe's attested session serves the pod from now on: the
	// runtime's first agent request needs no second handshake.
	client := tunnel.NewClient(e.VMAddr, cfg)
	if err := client.Adopt(sess); err != nil {
		sess.Close()
		log.Warn("probe session not kept; the first agent request dials", "err", err)
	}
	if err := mg.attachNet(ctx, e, client); err != nil {
		client.Close()
		return mg.fail(s, e, "network", fmt.Errorf("start sandbox %s: %w", id, err))
	}
	e.State, e.Error = journal.Running, ""
	if err := mg.put(s, e); err != nil {
		client.Close()
		return mg.fail(s, e, "journal", fmt.Errorf("start sandbox %s: %w", id, err))
	}
	s.setClient(client)
	took := time.Since(start)
	mg.m.AgentReadySeconds.WithLabelValues(mg.pname).Observe(took.Seconds())
	log.Info("sandbox running", "vm", name, "took", took.Round(time.Millisecond))
	mg.event(e, "PeerPodVMReady", false, "VM %s attested and its agent ready %s after StartVM", name, took.Round(time.Millisecond))
	return nil
}

// setClient installs the tunnel client and lets agent connections through.
func (s *sandbox) setClient(c *tunnel.Client) {
	s.stateMu.Lock()
	s.client = c
	s.stateMu.Unlock()
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

func (mg *Manager) tunnelConfig(s *sandbox, v attest.Verifier) tunnel.Config {
	cfg := mg.opts.Tunnel
	cfg.TLS = mg.opts.Credentials.ClientTLS()
	cfg.Verifier = v
	cfg.Logger = s.log
	return cfg
}

// Start failure causes, for errors and metrics.
const (
	causeAttestation = "attestation"
	causeTimeout     = "agent_timeout"
)

// AgentTimeoutError is the cause of a StartVM that gave up waiting for the agent.
type AgentTimeoutError struct {
	VM      string
	Timeout time.Duration
	Last    error
}

func (e *AgentTimeoutError) Error() string {
	if e.Last == nil {
		return fmt.Sprintf("agent of VM %s did not answer Health.Check within %v", e.VM, e.Timeout)
	}
	return fmt.Sprintf("agent of VM %s did not answer Health.Check within %v: last error: %v", e.VM, e.Timeout, e.Last)
}

func (e *AgentTimeoutError) Unwrap() error { return e.Last }

func causeOf(err error) string {
	var te *AgentTimeoutError
	switch {
	case errors.As(err, &te):
		return causeTimeout
	case errors.Is(err, attest.ErrAttestation):
		return causeAttestation
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	if provider.ClassOf(err) != nil {
		return metrics.ClassLabel(err)
	}
	return "other"
}

// Pauses between two probes of a VM's agent. A VM that refuses the
// connection has its network up and its agent about to listen (measured:
// 0.05-0.35 s after the network under TCG), and one that does
// not answer yet costs a bounded TCP connect (agentConnectFast), so both are
// probed again every agentPollRefused; other failures back off from
// agentPollMin to agentPollMax.
const (
	agentPollRefused = 20 * time.Millisecond
	agentPollMin     = 50 * time.Millisecond
	agentPollMax     = 200 * time.Millisecond
	// agentConnectFast bounds the TCP connects to a booting VM for its first
	// agentConnectFastFor: a SYN that gets no answer while the guest comes
	// up would be sent again by the kernel only a second or more later,
	// while a new connect sends one at once. Later connects get
	// agentConnectSlow, so a path with a long round trip still gets through.
	agentConnectFast    = 250 * time.Millisecond
	agentConnectFastFor = 30 * time.Second
	agentConnectSlow    = 3 * time.Second
)

// errAgentUnreachable marks a VM whose agent port did not accept a TCP
// connection yet.
var errAgentUnreachable = errors.New("agent port not reachable")

// nextAgentPoll is the pause after a probe that failed with err, the
// previous pause having been prev (0 before the first).
func nextAgentPoll(prev time.Duration, err error) time.Duration {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, errAgentUnreachable) {
		return agentPollRefused
	}
	if prev < agentPollMin {
		return agentPollMin
	}
	return min(2*prev, agentPollMax)
}

// agentReachable makes one TCP connection to addr within limit and closes
// it: cheap to repeat while the VM boots, unlike a tunnel dial, whose
// connect is bounded only by the handshake timeout.
func agentReachable(ctx context.Context, addr string, limit time.Duration) error {
	d := net.Dialer{Timeout: limit}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %w", errAgentUnreachable, err)
	}
	_ = c.Close()
	return nil
}

// waitAgent dials the VM until its agent answers Health.Check, then sends
// the secrets on a config stream, and returns that attested session.
// Attestation failures end the wait at once.
func (mg *Manager) waitAgent(ctx context.Context, s *sandbox, e journal.Entry, cfg tunnel.Config) (*tunnel.Session, error) {
	timeout := mg.opts.ProxyTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Poll often: a probe of a VM that is still booting costs one refused
	// (or unanswered) TCP connect, while every extra gap between probes is
	// added to the pod's start time once the agent is up.
	var backoff time.Duration
	var last error
	// Until the agent's port accepts a connection, probe it with plain TCP
	// connects of a short bound; then run the whole probe.
	reached, waitStart := false, time.Now()
	for {
		var err error
		if !reached {
			connect := agentConnectFast
			if time.Since(waitStart) > agentConnectFastFor {
				connect = agentConnectSlow
			}
			err = agentReachable(ctx, e.VMAddr, connect)
			reached = err == nil
		}
		if reached {
			var sess *tunnel.Session
			if sess, err = mg.probe(ctx, s, e, cfg); err == nil {
				return sess, nil
			}
			// An agent that went away is looked for with connects again.
			reached = !errors.Is(err, syscall.ECONNREFUSED)
		}
		if errors.Is(err, attest.ErrAttestation) {
			return nil, fmt.Errorf("VM %s failed attestation: %w", e.VMName, err)
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		s.log.Debug("agent not ready", "vm", e.VMName, "err", err)
		backoff = nextAgentPoll(backoff, err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, &AgentTimeoutError{VM: e.VMName, Timeout: timeout, Last: last}
			}
			return nil, fmt.Errorf("waiting for the agent of VM %s: %w (last error: %v)", e.VMName, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// probe makes one session, checks the agent's health and sends the
// secrets; the session is returned open when all went well.
func (mg *Manager) probe(ctx context.Context, s *sandbox, e journal.Entry, cfg tunnel.Config) (_ *tunnel.Session, err error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	sess, err := tunnel.Dial(dctx, e.VMAddr, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			sess.Close()
		}
	}()
	conn, err := sess.Open(dctx, tunnel.KindAgent, nil)
	if err != nil {
		return nil, fmt.Errorf("open agent stream: %w", err)
	}
	tc := ttrpc.NewClient(conn)
	resp, err := agent.NewHealthClient(tc).Check(dctx, &agent.CheckRequest{})
	tc.Close()
	if err != nil {
		return nil, fmt.Errorf("Health.Check: %w", err)
	}
	if resp.Status == agent.HealthCheckResponse_NOT_SERVING {
		return nil, errors.New("Health.Check: agent is not serving")
	}
	if err := mg.sendSecrets(dctx, s, sess, e); err != nil {
		return nil, err
	}
	return sess, nil
}

// sendSecrets writes the sandbox's secrets as one JSON document on a config
// stream, half-closes it and waits for the agent to close its side.
func (mg *Manager) sendSecrets(ctx context.Context, s *sandbox, sess *tunnel.Session, e journal.Entry) error {
	sec, err := mg.opts.Secrets(ctx, e)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	b, err := json.Marshal(sec)
	if err != nil {
		return fmt.Errorf("secrets: encode: %w", err)
	}
	c, err := sess.Open(ctx, tunnel.KindConfig, nil)
	if err != nil {
		return fmt.Errorf("open config stream: %w", err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("send secrets: %w", err)
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("send secrets: %w", err)
		}
	}
	reply, err := io.ReadAll(io.LimitReader(c, 4096))
	if err != nil {
		return fmt.Errorf("send secrets: waiting for the agent: %w", err)
	}
	if len(reply) > 0 {
		s.log.Debug("agent answered the config stream", "bytes", len(reply))
	}
	return nil
}

// fail cleans up a start that went wrong: deletes the VM (if one may
// exist), closes the socket and tunnel, and keeps a "failed" record.
func (mg *Manager) fail(s *sandbox, e journal.Entry, cause string, err error) error {
	if mg.ctx.Err() != nil {
		// Shutting down: leave the record as it is; the next start finds
		// an interrupted create and cleans it up.
		s.log.Warn("start interrupted by shutdown", "state", e.State, "err", err)
		s.close()
		return fmt.Errorf("%w (interrupted: peerpodd is shutting down)", err)
	}
	s.log.Error("start failed; cleaning up", "cause", cause, "err", err)
	mg.m.StartFailures.WithLabelValues(mg.pname, cause).Inc()
	mg.event(e, "PeerPodVMFailed", true, "VM %s failed to start (%s): %v", e.VMName, cause, err)
	s.close()
	if e.State == journal.Provisioning {
		mg.detachNet(s, e) // a crash may have come mid-attach
		if derr := mg.deleteVM(s, e); derr != nil {
			err = fmt.Errorf("%w; deleting VM %s also failed (the reconciler will retry): %v", err, e.VMName, derr)
		} else {
			e.VMID, e.VMAddr = "", ""
		}
	}
	mg.removeSocketDir(s.id)
	e.State, e.Error = journal.Failed, err.Error()
	if perr := mg.put(s, e); perr != nil {
		s.log.Error("recording failure", "err", perr)
	}
	return err
}

// createVM makes the sandbox's VM through the provider (journalled first:
// a crash during Create leaves a record naming the VM). Its errors have
// been through fail.
func (mg *Manager) createVM(ctx context.Context, s *sandbox, e journal.Entry, name string, ud []byte) (*provider.Instance, journal.Entry, error) {
	id, log := s.id, s.log
	e.State, e.VMName = journal.Provisioning, name
	if err := mg.put(s, e); err != nil {
		return nil, e, mg.fail(s, e, "journal", fmt.Errorf("start sandbox %s: %w", id, err))
	}
	req := provider.CreateRequest{
		Name: name, SandboxID: id, UserData: ud, InstanceTypes: e.InstanceTypes, Image: e.Image,
		Resources: provider.Resources{VCPUs: e.VCPUs, MemoryMiB: e.MemoryMiB, GPUs: e.GPUs},
		Tags: provider.Tags(provider.Owner{
			ClusterID: mg.opts.ClusterID, Node: mg.opts.NodeName, SandboxID: id,
			PodNamespace: e.PodNamespace, PodName: e.PodName, PodUID: e.PodUID,
		}, mg.opts.Tags),
	}
	log.Info("creating VM", "vm", name, "instance_types", e.InstanceTypes)
	var inst *provider.Instance
	createStart := time.Now()
	err := retry.Do(ctx, mg.retryPolicy(log, "create"), func(ctx context.Context) error {
		var err error
		inst, err = mg.prov.Create(ctx, req)
		return err
	})
	if err != nil {
		mg.cloudError("create", err)
		return nil, e, mg.fail(s, e, causeOf(err), fmt.Errorf("start sandbox %s: create VM %s: %w", id, name, err))
	}
	took := time.Since(createStart)
	mg.m.VMCreateSeconds.WithLabelValues(mg.pname).Observe(took.Seconds())
	mg.event(e, "PeerPodVMCreated", false, "VM %s (%s, %s) created in %s", name, inst.ID, inst.InstanceType, took.Round(time.Millisecond))
	e.VMID, e.InstanceType = inst.ID, inst.InstanceType
	log.Info("VM created", "vm", name, "vm_id", inst.ID, "took", took.Round(time.Millisecond))
	return inst, e, nil
}
