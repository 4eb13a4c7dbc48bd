// Package policy is the agent's policy gate: every agent API request is
// checked against the pod's Rego policy (Kata's agent_policy package, so
// genpolicy's rules.rego works unchanged) with OPA before it is served.
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/proto"
)

// Package is the Rego package every policy must define.
const Package = "agent_policy"

// AllowFailingRule is the rule that, when true, turns denials into allows
// (for debugging a policy; logged loudly).
const AllowFailingRule = "AllowRequestsFailingPolicy"

// NoPolicyAllowed lists the requests served while no policy is loaded: only
// what lets the runtime see the failure and tear the sandbox down. Anything
// else (CreateSandbox, CreateContainer, SetPolicy, ...) is denied with an
// error saying that no policy is loaded.
var NoPolicyAllowed = map[string]bool{
	"CheckRequest":          true, // health checks
	"GuestDetailsRequest":   true, // read-only agent details
	"DestroySandboxRequest": true, // teardown after the failure
}

// Options configure an Engine.
type Options struct {
	// AllowAll is development mode: every request is allowed whatever the
	// policy says (denials are still computed and logged). Never use it for
	// a confidential pod.
	AllowAll bool
	// Logger receives decisions; default slog.Default().
	Logger *slog.Logger
}

// Engine decides agent requests. It is safe for concurrent use; decisions
// that evaluate Rego are serialized so policy state updates stay ordered.
type Engine struct {
	opts Options
	log  *slog.Logger
	cur  atomic.Pointer[compiled] // nil: no policy loaded
	mu   sync.Mutex               // serializes evaluation, state updates and policy replacement
	// encoders holds input encoders between decisions: an input lives
	// only while its request is decided (the decision, the denial's
	// prints), so its encoder's slabs serve the next one.
	encoders sync.Pool
}

// New returns an engine enforcing policy (Rego text, usually initdata's
// policy.rego). An empty policy means no policy: see NoPolicyAllowed.
func New(ctx context.Context, policy string, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Engine{opts: opts, log: opts.Logger}
	if opts.AllowAll {
		e.log.Error("POLICY DEVELOPMENT MODE: every agent request is allowed whatever the policy says; this pod is NOT confidential")
	}
	if policy == "" {
		if !opts.AllowAll {
			e.log.Warn("no agent policy loaded: only health, guest details and sandbox teardown are allowed")
		}
		return e, nil
	}
	c, err := compile(ctx, policy)
	if err != nil {
		return nil, err
	}
	e.cur.Store(c)
	e.log.Info("agent policy loaded", "sha256", c.digest, "rules", len(c.rules), "constant_rules", len(c.consts))
	return e, nil
}

// SetPolicy replaces the policy with a fresh engine (state starts empty).
// The caller must have authorized the SetPolicyRequest first. A policy that
// does not compile leaves the current one in force.
func (e *Engine) SetPolicy(ctx context.Context, policy string) error {
	if policy == "" {
		return errors.New("set policy: the new policy is empty")
	}
	c, err := compile(ctx, policy)
	if err != nil {
		return fmt.Errorf("set policy: %w", err)
	}
	e.mu.Lock()
	e.cur.Store(c)
	e.mu.Unlock()
	e.log.Info("agent policy replaced", "sha256", c.digest, "rules", len(c.rules), "constant_rules", len(c.consts))
	return nil
}

// PolicyDigest returns the hex SHA-256 of the policy in force, "" if none.
func (e *Engine) PolicyDigest() string {
	if c := e.cur.Load(); c != nil {
		return c.digest
	}
	return ""
}

// Authorize decides one request; method is the RPC name, used in messages.
// It returns nil or a *DeniedError (codes.PermissionDenied on the wire).
func (e *Engine) Authorize(ctx context.Context, method string, req proto.Message) error {
	if req == nil {
		return &DeniedError{Method: method, Request: "<nil>", Reason: "no request"}
	}
	name := string(req.ProtoReflect().Descriptor().Name())
	c := e.cur.Load()
	if c == nil {
		if e.opts.AllowAll || NoPolicyAllowed[name] {
			return nil
		}
		return &DeniedError{Method: method, Request: name, Reason: "no policy is loaded (initdata has no policy.rego and none was set)"}
	}
	if v, ok := c.consts[name]; ok {
		if v {
			return nil
		}
		return e.denied(ctx, c, method, name, nil, "the rule is constant false")
	}
	enc, _ := e.encoders.Get().(*encoder)
	if enc == nil {
		enc = &encoder{}
	}
	defer func() {
		enc.reset()
		e.encoders.Put(enc)
	}()
	input, err := requestInput(req, enc)
	if err != nil {
		return &DeniedError{Method: method, Request: name, Rule: c.ruleName(name), Reason: err.Error()}
	}
	e.mu.Lock()
	if cur := e.cur.Load(); cur != c { // replaced meanwhile: decide with the new policy
		e.mu.Unlock()
		return e.Authorize(ctx, method, req)
	}
	allowed, reason := c.decide(ctx, name, input)
	e.mu.Unlock()
	if allowed {
		return nil
	}
	return e.denied(ctx, c, method, name, input, reason)
}

// denied builds the denial (with the policy's print output) or, when the
// policy or the engine is in a permissive debug mode, logs and allows.
func (e *Engine) denied(ctx context.Context, c *compiled, method, name string, input ast.Value, reason string) error {
	d := &DeniedError{Method: method, Request: name, Rule: c.ruleName(name), Reason: reason}
	if input != nil {
		d.Prints = c.prints(ctx, name, input)
	}
	switch {
	case c.allowFailing:
		e.log.Warn("policy denial ignored: "+AllowFailingRule+" is true", "request", name, "error", d.Error())
		return nil
	case e.opts.AllowAll:
		e.log.Warn("policy denial ignored: development mode", "request", name, "error", d.Error())
		return nil
	}
	e.log.Debug("policy denied request", "request", name, "rule", d.Rule)
	return d
}

func digestHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
