// Package kataclient drives peerpodd exactly as the Kata runtime's remote
// hypervisor does (PROTOCOLS.md §1.4 and §2): a new unix connection and ttrpc
// client per hypervisor call and per agent request, every CreateVM annotation
// key always sent, the runtime's timeouts, and the agent calls in the
// runtime's order. Tests and the end-to-end suites use it in place of
// containerd-shim-kata-v2.
package kataclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/hypervisor"
)

// The runtime's defaults (configuration-remote.toml and kata_agent.go).
const (
	// DefaultHypervisorTimeout is remote_hypervisor_timeout (600 s).
	DefaultHypervisorTimeout = 600 * time.Second
	// MinStartTimeout is the floor of StartVM's timeout (defaultMinTimeout).
	MinStartTimeout = 60 * time.Second
	// DefaultDialTimeout is [agent.kata] dial_timeout.
	DefaultDialTimeout = 30 * time.Second
	// CheckTimeout bounds Health.Check (checkRequestTimeout).
	CheckTimeout = 30 * time.Second
	// DefaultCreateContainerTimeout is create_container_timeout.
	DefaultCreateContainerTimeout = 60 * time.Second
	// RequestTimeout bounds every other agent request (defaultRequestTimeout).
	RequestTimeout = 60 * time.Second
	// RemoteStartTimeout bounds the requests of startSandbox with a remote
	// hypervisor (remoteRequestTimeout).
	RemoteStartTimeout = 300 * time.Second
)

// Config is the part of the runtime's configuration the client follows.
// Zero fields take the runtime's defaults.
type Config struct {
	// HypervisorSocket is remote_hypervisor_socket (required).
	HypervisorSocket string
	// HypervisorTimeout is remote_hypervisor_timeout (default 600 s).
	HypervisorTimeout time.Duration
	// VMStartTimeout is the runtime's VM start timeout; StartVM waits
	// max(VMStartTimeout, HypervisorTimeout), at least 60 s.
	VMStartTimeout time.Duration
	// DialTimeout is the agent dial retry bound (default 30 s).
	DialTimeout time.Duration
	// CreateContainerTimeout bounds CreateContainer (default 60 s).
	CreateContainerTimeout time.Duration
	// NoStartFloor drops the 60 s floor of StartVM's timeout, so tests can
	// exercise a short one. The runtime always applies the floor.
	NoStartFloor bool
}

// Client talks to one peerpodd. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu    sync.Mutex
	trace []Call
}

// Call is one request the client made, for tests that check the sequence.
type Call struct {
	// Service is "hypervisor.Hypervisor", "grpc.AgentService" or "grpc.Health".
	Service string
	// Method is the RPC name ("CreateVM", "CreateContainer").
	Method string
	// Sandbox is the sandbox id the call was for.
	Sandbox string
	// Took is how long the call took, connection set-up included.
	Took time.Duration
	// Err is the call's error, nil on success.
	Err error
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.HypervisorSocket == "" {
		return nil, errors.New("kataclient: HypervisorSocket is empty")
	}
	if cfg.HypervisorTimeout <= 0 {
		cfg.HypervisorTimeout = DefaultHypervisorTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CreateContainerTimeout <= 0 {
		cfg.CreateContainerTimeout = DefaultCreateContainerTimeout
	}
	return &Client{cfg: cfg}, nil
}

// StartTimeout is the timeout StartVM uses: max(VMStartTimeout,
// HypervisorTimeout), with a 60 s floor unless NoStartFloor is set.
func (c *Client) StartTimeout() time.Duration {
	t := max(c.cfg.VMStartTimeout, c.cfg.HypervisorTimeout)
	if !c.cfg.NoStartFloor {
		t = max(t, MinStartTimeout)
	}
	return t
}

// Calls returns every call made so far, in order of completion.
func (c *Client) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.trace...)
}

func (c *Client) record(service, method, sandbox string, start time.Time, err error) {
	c.mu.Lock()
	c.trace = append(c.trace, Call{Service: service, Method: method, Sandbox: sandbox, Took: time.Since(start), Err: err})
	c.mu.Unlock()
}

// hv makes one hypervisor call on a fresh connection, closed afterwards.
func (c *Client) hv(ctx context.Context, method, id string, f func(ctx context.Context, h hypervisor.HypervisorService) error) error {
	start := time.Now()
	err := func() error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", c.cfg.HypervisorSocket)
		if err != nil {
			return fmt.Errorf("%s %s: dial %s: %w", method, id, c.cfg.HypervisorSocket, err)
		}
		tc := ttrpc.NewClient(conn)
		defer tc.Close()
		if err := f(ctx, hypervisor.NewHypervisorClient(tc)); err != nil {
			return fmt.Errorf("%s %s: %w", method, id, err)
		}
		return nil
	}()
	c.record("hypervisor.Hypervisor", method, id, start, err)
	return err
}

// CreateVM sends CreateVM and returns the agent socket path, which must be
// non-empty (the runtime refuses an empty one).
func (c *Client) CreateVM(ctx context.Context, id string, annotations map[string]string, netns string) (string, error) {
	var path string
	err := c.hv(ctx, "CreateVM", id, func(ctx context.Context, h hypervisor.HypervisorService) error {
		resp, err := h.CreateVM(ctx, &hypervisor.CreateVMRequest{Id: id, Annotations: annotations, NetworkNamespacePath: netns})
		if err != nil {
			return err
		}
		if resp.AgentSocketPath == "" {
			return errors.New("remote hypervisor does not return tunnel socket path")
		}
		path = resp.AgentSocketPath
		return nil
	})
	return path, err
}

// StartVM sends StartVM with its own timeout (StartTimeout), detached from
// ctx's deadline and cancellation as in the runtime.
func (c *Client) StartVM(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.StartTimeout())
	defer cancel()
	return c.hv(ctx, "StartVM", id, func(ctx context.Context, h hypervisor.HypervisorService) error {
		_, err := h.StartVM(ctx, &hypervisor.StartVMRequest{Id: id})
		return err
	})
}

// StopVM sends StopVM with the caller's ctx.
func (c *Client) StopVM(ctx context.Context, id string) error {
	return c.hv(ctx, "StopVM", id, func(ctx context.Context, h hypervisor.HypervisorService) error {
		_, err := h.StopVM(ctx, &hypervisor.StopVMRequest{Id: id})
		return err
	})
}

// Version sends Version (the runtime never does; operators and tests may).
func (c *Client) Version(ctx context.Context, v string) (string, error) {
	var out string
	err := c.hv(ctx, "Version", "", func(ctx context.Context, h hypervisor.HypervisorService) error {
		resp, err := h.Version(ctx, &hypervisor.VersionRequest{Version: v})
		if err != nil {
			return err
		}
		out = resp.Version
		return nil
	})
	return out, err
}

// dialAgent connects to an agent socket, retrying until DialTimeout as the
// runtime's commonDialer does (the socket may not exist yet, or refuse).
func (c *Client) dialAgent(ctx context.Context, path string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	backoff := 10 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		if !retryableDial(err) {
			return nil, fmt.Errorf("dial agent %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial agent %s: gave up after %v: %w", path, c.cfg.DialTimeout, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func retryableDial(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EAGAIN) || errors.Is(err, context.DeadlineExceeded)
}
