package sandbox

import (
	"context"
	"net"
	"net/netip"

	"github.com/peerpod/peerpod/podnet"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/tunnel"
)

// PodNetwork connects pod network namespaces to their VMs (podnet.Node
// implements it).
type PodNetwork interface {
	Attach(ctx context.Context, id, nsPath string, vmIP net.IP, open podnet.Opener) error
	Detach(ctx context.Context, id, nsPath string) error
}

// attachNet attaches the sandbox's pod network (when there is one) with
// net streams of client.
func (mg *Manager) attachNet(ctx context.Context, e journal.Entry, client *tunnel.Client) error {
	if mg.opts.PodNetwork == nil || e.NetNS == "" {
		return nil
	}
	var ip net.IP
	if ap, err := netip.ParseAddrPort(e.VMAddr); err == nil {
		ip = net.IP(ap.Addr().Unmap().AsSlice())
	}
	// Frames go on a direct stream, a TLS connection of their own: no
	// session goroutine or window between the pump and the socket.
	open := func(ctx context.Context) (net.Conn, error) { return client.OpenDirect(ctx, tunnel.KindNet, nil) }
	return mg.opts.PodNetwork.Attach(ctx, e.SandboxID, e.NetNS, ip, open)
}

// detachNet leaves the sandbox's pod network namespace as CNI made it.
func (mg *Manager) detachNet(s *sandbox, e journal.Entry) {
	if mg.opts.PodNetwork == nil || e.NetNS == "" {
		return
	}
	if err := mg.opts.PodNetwork.Detach(mg.ctx, e.SandboxID, e.NetNS); err != nil {
		s.log.Error("detaching the pod network", "netns", e.NetNS, "err", err)
	}
}
