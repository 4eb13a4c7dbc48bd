package sandbox

import (
	"context"
	"fmt"

	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest/verify"
)

// Restore reloads the journal after a start or restart. It returns once
// every agent socket is listening again; cloud work continues in the
// background:
//   - created: the socket is re-opened; StartVM may come next.
//   - running: the socket is re-opened and the VM re-dialled.
//   - provisioning (a create was interrupted, its caller is gone): the VM,
//     if made, is deleted and the sandbox kept as failed for StopVM.
//   - stopping: the deletion is finished.
//   - failed: kept for StopVM (or swept after TombstoneTTL).
//
// Corrupt journal files are reported in the error; the good ones are restored.
func (mg *Manager) Restore(ctx context.Context) error {
	entries, loadErr := mg.opts.Journal.Load()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := *e
		s := mg.newSandbox(e, sandboxLogger(mg.log, &e))
		mg.mu.Lock()
		if _, dup := mg.sandboxes[e.SandboxID]; dup {
			mg.mu.Unlock()
			continue
		}
		mg.sandboxes[e.SandboxID] = s
		mg.mu.Unlock()
		s.log.Info("restoring sandbox", "state", e.State, "vm", e.VMName)
		switch e.State {
		case journal.Created:
			if err := mg.listen(s); err != nil {
				s.log.Error("re-opening agent socket failed", "err", err)
				s.mu.Lock()
				mg.fail(s, e, "restore", fmt.Errorf("restore sandbox %s: %w", e.SandboxID, err))
				s.mu.Unlock()
			}
		case journal.Running:
			if err := mg.reattach(s, e); err != nil {
				s.log.Error("re-attaching running sandbox failed", "err", err)
			}
		case journal.Provisioning:
			s.mu.Lock() // held until the cleanup is done
			mg.goBackground(func(context.Context) {
				defer s.mu.Unlock()
				mg.fail(s, e, "restart", fmt.Errorf("start sandbox %s: interrupted by a peerpodd restart", e.SandboxID))
			})
		case journal.Stopping:
			s.mu.Lock()
			close(s.gone)
			mg.goBackground(func(context.Context) {
				defer s.mu.Unlock()
				mg.detachNet(s, e)
				if err := mg.deleteVM(s, e); err != nil {
					s.log.Error("finishing interrupted delete failed; StopVM or the reconciler will retry", "err", err)
					return
				}
				if err := mg.finish(s); err != nil {
					s.log.Error("finishing interrupted delete", "err", err)
				}
			})
		case journal.Failed:
			close(s.gone)
		}
	}
	mg.updateGauge()
	if loadErr != nil {
		return fmt.Errorf("restore: %w", loadErr)
	}
	return nil
}

// reattach re-opens a running sandbox's socket and tunnel client; the client
// dials at once so the first agent request finds a session.
func (mg *Manager) reattach(s *sandbox, e journal.Entry) error {
	var digest []byte
	if e.Initdata != "" {
		in, err := initdata.Parse([]byte(e.Initdata))
		if err != nil {
			return fmt.Errorf("initdata: %w", err)
		}
		digest = in.Digest()
	}
	v, err := verify.NewVerifier(mg.opts.Attester, verify.Expectations{InitdataDigest: digest})
	if err != nil {
		return err
	}
	client := tunnel.NewClient(e.VMAddr, mg.tunnelConfig(s, v))
	s.setClient(client)
	if err := mg.listen(s); err != nil {
		return err
	}
	mg.goBackground(func(ctx context.Context) {
		if _, err := client.Session(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("re-dialling VM after restart failed", "addr", e.VMAddr, "err", err)
		}
		if err := mg.attachNet(ctx, e, client); err != nil && ctx.Err() == nil {
			s.log.Error("re-attaching the pod network after restart failed", "netns", e.NetNS, "err", err)
		}
	})
	return nil
}
