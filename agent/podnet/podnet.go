// Package podnet recreates the pod's network interface inside the pod VM.
// The node sends the interface (name, MAC, MTU, addresses, routes,
// neighbours) first on a "net" tunnel stream; Manager makes it in the pod
// network namespace, which the sandbox's containers join. In tunnel mode
// the interface is a TAP whose frames then travel on that stream; in vxlan
// mode it is a kernel VXLAN device pointing at the node.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/peerpod/peerpod/agent/boot"
	"github.com/peerpod/peerpod/podnet"
	"github.com/peerpod/peerpod/tunnel"
)

// vxlanOverhead is what VXLAN over IPv4 adds to a frame.
const vxlanOverhead = 50

// Options configure a Manager.
type Options struct {
	// NetNSPath is where the pod network namespace is pinned.
	NetNSPath string
	// ModulesDir holds the kernel module sets of the pod VM image; vxlan
	// mode loads the "vxlan" set from it (boot.LoadModuleSet) before it
	// makes its device. Default /lib/modules. A directory without the set
	// (a kernel with VXLAN built in, or the host in tests) loads nothing.
	ModulesDir string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Manager owns the pod network namespace and interface of the VM.
type Manager struct {
	o   Options
	log *slog.Logger

	mu    sync.Mutex
	cfg   *podnet.Config
	pump  *podnet.Pump
	cur   net.Conn
	ready bool
}

// New returns a Manager; nothing is made until the node sends a config.
func New(o Options) (*Manager, error) {
	if o.NetNSPath == "" {
		return nil, errors.New("podnet: no pod network namespace path")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ModulesDir == "" {
		o.ModulesDir = "/lib/modules"
	}
	return &Manager{o: o, log: o.Logger}, nil
}

// NetNS is the pod network namespace's path once the pod network is set
// up, "" before.
func (m *Manager) NetNS() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ready {
		return ""
	}
	return m.o.NetNSPath
}

// Handle serves one net stream (a tunnel.Handler): it reads the config,
// sets the pod network up (or checks it matches the one set up before),
// answers, and in tunnel mode carries frames until the stream ends.
func (m *Manager) Handle(ctx context.Context, conn net.Conn, _ tunnel.Header) {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var cfg podnet.Config
	if err := podnet.ReadMessage(conn, &cfg); err != nil {
		m.log.Warn("net stream: reading the pod network config", "err", err)
		return
	}
	err := m.setup(&cfg)
	var r podnet.Reply
	if err != nil {
		m.log.Error("pod network setup", "err", err)
		r.Error = err.Error()
	}
	if werr := podnet.WriteMessage(conn, &r); werr != nil || err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if cfg.Mode != podnet.ModeTunnel {
		return
	}
	m.mu.Lock()
	old, pump := m.cur, m.pump
	if pump == nil { // the manager closed since the config was accepted
		m.mu.Unlock()
		return
	}
	m.cur = conn
	m.mu.Unlock()
	if old != nil {
		old.Close() // a newer stream replaces it (the node re-dialled)
	}
	err = pump.Run(ctx, conn)
	m.log.Info("net stream ended", "err", err, "stats", pump.Stats())
}

func (m *Manager) setup(cfg *podnet.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg != nil {
		if !reflect.DeepEqual(m.cfg, cfg) {
			return errors.New("the pod network is already set up with a different config")
		}
		return nil
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pod network config: %w", err)
	}
	pump, err := m.make(cfg)
	if err != nil {
		if rerr := podnet.RemovePinnedNS(m.o.NetNSPath); rerr != nil {
			m.log.Warn("removing the pod netns after a failed setup", "err", rerr)
		}
		return err
	}
	m.cfg, m.pump, m.ready = cfg, pump, true
	m.log.Info("pod network set up", "mode", cfg.Mode, "interface", cfg.Interface.Name,
		"mac", cfg.Interface.MAC, "mtu", cfg.Interface.MTU, "addrs", cfg.Interface.Addrs, "routes", len(cfg.Routes))
	return nil
}

// make creates the namespace and interface; on error the interface is gone.
func (m *Manager) make(cfg *podnet.Config) (*podnet.Pump, error) {
	if err := podnet.NewPinnedNS(m.o.NetNSPath); err != nil {
		return nil, err
	}
	ns, err := podnet.OpenNS(m.o.NetNSPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in the pod netns: %w", err)
	}
	defer h.Close()
	ifc := cfg.Interface
	mtu := ifc.MTU
	var pump *podnet.Pump
	switch cfg.Mode {
	case podnet.ModeTunnel:
		tap, err := podnet.OpenTAP(ns, ifc.Name, cfg.VnetHdr, false)
		if err != nil {
			return nil, err
		}
		pump = podnet.NewPump(tap)
	case podnet.ModeVXLAN:
		under, err := m.vxlan(ns, cfg)
		if err != nil {
			return nil, err
		}
		mtu = min(mtu, under-vxlanOverhead)
	}
	fail := func(err error) (*podnet.Pump, error) {
		if pump != nil {
			pump.Close()
		}
		if l, lerr := h.LinkByName(ifc.Name); lerr == nil {
			_ = h.LinkDel(l)
		}
		return nil, err
	}
	if err := configure(h, cfg, mtu); err != nil {
		return fail(err)
	}
	return pump, nil
}

// vxlan makes the VXLAN device in the VM's namespace (its socket stays
// there), moves it into the pod namespace under the pod interface's name,
// and returns the underlay MTU.
func (m *Manager) vxlan(ns netns.NsHandle, cfg *podnet.Config) (int, error) {
	remote := net.ParseIP(cfg.VXLAN.Remote)
	if remote == nil {
		return 0, fmt.Errorf("vxlan remote %q is not an IP address", cfg.VXLAN.Remote)
	}
	routes, err := netlink.RouteGet(remote)
	if err != nil || len(routes) == 0 {
		return 0, fmt.Errorf("no route to the node %s: %v", remote, err)
	}
	under := 1500
	if l, err := netlink.LinkByIndex(routes[0].LinkIndex); err == nil {
		under = l.Attrs().MTU
	}
	if n, err := boot.LoadModuleSet(m.o.ModulesDir, "vxlan"); err != nil {
		return 0, fmt.Errorf("vxlan mode: load the vxlan kernel modules from %s: %w", m.o.ModulesDir, err)
	} else if n > 0 {
		m.log.Info("loaded the vxlan kernel modules", "count", n)
	}
	tmp := fmt.Sprintf("ppvx%d", cfg.VXLAN.VNI)
	link := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: tmp, MTU: under - vxlanOverhead},
		VxlanId:   int(cfg.VXLAN.VNI), Group: remote, Port: cfg.VXLAN.Port, Learning: false,
	}
	if err := netlink.LinkAdd(link); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return 0, fmt.Errorf("VXLAN device (VNI %d): the VM's kernel has no VXLAN support (no vxlan.order in %s, not built in): %w",
				cfg.VXLAN.VNI, m.o.ModulesDir, err)
		}
		return 0, fmt.Errorf("VXLAN device (VNI %d, port %d): %w", cfg.VXLAN.VNI, cfg.VXLAN.Port, err)
	}
	if err := netlink.LinkSetNsFd(link, int(ns)); err != nil {
		_ = netlink.LinkDel(link)
		return 0, fmt.Errorf("move VXLAN device into the pod netns: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(tmp)
	if err == nil {
		err = h.LinkSetName(l, cfg.Interface.Name)
	}
	if err != nil {
		if l != nil {
			_ = h.LinkDel(l)
		}
		return 0, fmt.Errorf("rename VXLAN device to %s: %w", cfg.Interface.Name, err)
	}
	return under, nil
}

// configure gives the interface the pod's MAC, MTU, addresses, routes and
// neighbours and brings it and loopback up.
func configure(h *netlink.Handle, cfg *podnet.Config, mtu int) error {
	ifc := cfg.Interface
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("loopback up: %w", err)
		}
	}
	link, err := h.LinkByName(ifc.Name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifc.Name, err)
	}
	mac, err := net.ParseMAC(ifc.MAC)
	if err != nil {
		return fmt.Errorf("interface %s: MAC %q: %w", ifc.Name, ifc.MAC, err)
	}
	if err := h.LinkSetHardwareAddr(link, mac); err != nil {
		return fmt.Errorf("interface %s: set MAC: %w", ifc.Name, err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("interface %s: MTU %d: %w", ifc.Name, mtu, err)
	}
	for _, a := range ifc.Addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("interface %s: address %q: %w", ifc.Name, a, err)
		}
		if addr.IP.To4() == nil {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("interface %s: address %s: %w", ifc.Name, a, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("interface %s: up: %w", ifc.Name, err)
	}
	for _, n := range cfg.Neighbors {
		ip, hw := net.ParseIP(n.IP), parseMAC(n.MAC)
		if ip == nil || hw == nil {
			return fmt.Errorf("neighbour %s/%s: bad address", n.IP, n.MAC)
		}
		nb := &netlink.Neigh{LinkIndex: link.Attrs().Index, IP: ip, HardwareAddr: hw, State: netlink.NUD_PERMANENT, Family: family(ip)}
		if err := h.NeighSet(nb); err != nil {
			return fmt.Errorf("neighbour %s: %w", n.IP, err)
		}
	}
	for _, r := range cfg.Routes {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Scope: netlink.Scope(r.Scope), Family: unix.AF_INET}
		if r.IPv6 {
			rt.Family = unix.AF_INET6
		}
		if r.Dst != "" {
			_, dst, err := net.ParseCIDR(r.Dst)
			if err != nil {
				return fmt.Errorf("route %s: %w", r.Dst, err)
			}
			rt.Dst = dst
		}
		if r.Gw != "" {
			if rt.Gw = net.ParseIP(r.Gw); rt.Gw == nil {
				return fmt.Errorf("route %s: gateway %q is not an address", r.Dst, r.Gw)
			}
		}
		if r.Src != "" {
			rt.Src = net.ParseIP(r.Src)
		}
		if err := h.RouteReplace(rt); err != nil {
			return fmt.Errorf("route %s via %s: %w", orDefault(r.Dst), r.Gw, err)
		}
	}
	return nil
}

func parseMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return hw
}

func family(ip net.IP) int {
	if ip.To4() != nil {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func orDefault(dst string) string {
	if dst == "" {
		return "default"
	}
	return dst
}

// Close ends the frame pump, removes the interface and the namespace.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil {
		m.cur.Close()
	}
	if m.pump != nil {
		m.pump.Close()
	}
	m.ready, m.cfg, m.pump, m.cur = false, nil, nil, nil
	return podnet.RemovePinnedNS(m.o.NetNSPath)
}
