package podnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DevicePrefix starts the names of the devices podnet makes in pod
// network namespaces (and, briefly, in the host's).
const DevicePrefix = "pp"

// DeviceName is the name of the device podnet makes for a sandbox: the
// same across restarts, so a restarted peerpodd finds it again.
func DeviceName(sandboxID string) string {
	sum := sha256.Sum256([]byte(sandboxID))
	return DevicePrefix + hex.EncodeToString(sum[:])[:11]
}

// Opener opens a new net stream to the sandbox's VM (re-dialling the
// tunnel if it has to).
type Opener func(ctx context.Context) (net.Conn, error)

// Options configure a Node.
type Options struct {
	// Mode is ModeTunnel (default) or ModeVXLAN.
	Mode string
	// VXLANPort is the VXLAN UDP port (default 4789).
	VXLANPort int
	// VNIs allocates VNIs; required in vxlan mode.
	VNIs *VNIs
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Node attaches pods on this node to their VMs.
type Node struct {
	o   Options
	log *slog.Logger

	mu  sync.Mutex
	att map[string]*attachment
}

type attachment struct {
	pump   *Pump
	cancel context.CancelFunc
	done   chan struct{}
}

// NewNode checks the options and returns a Node.
func NewNode(o Options) (*Node, error) {
	if o.Mode == "" {
		o.Mode = ModeTunnel
	}
	if o.VXLANPort == 0 {
		o.VXLANPort = 4789
	}
	switch o.Mode {
	case ModeTunnel:
	case ModeVXLAN:
		if o.VNIs == nil {
			return nil, errors.New("podnet: vxlan mode needs a VNI allocator")
		}
		if o.VXLANPort < 1 || o.VXLANPort > 65535 {
			return nil, fmt.Errorf("podnet: VXLAN port %d out of range", o.VXLANPort)
		}
	default:
		return nil, fmt.Errorf("podnet: mode %q is not %s or %s", o.Mode, ModeTunnel, ModeVXLAN)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Node{o: o, log: o.Logger, att: map[string]*attachment{}}, nil
}

// Mode is the node's transport mode.
func (n *Node) Mode() string { return n.o.Mode }

// Attach connects the pod network namespace at nsPath to the sandbox's VM
// at vmIP: it reads the pod interface, adds its device and redirects, and
// has the VM recreate the interface. In tunnel mode frames then flow on
// net streams opened with open, re-opened whenever one ends, until Detach
// or Close. Attach is idempotent: after a restart it finds its devices
// again. On error nothing it made is left.
func (n *Node) Attach(ctx context.Context, id, nsPath string, vmIP net.IP, open Opener) (err error) {
	log := n.log.With("sandbox", id, "netns", nsPath, "mode", n.o.Mode)
	n.stop(id)
	ns, err := OpenNS(nsPath)
	if err != nil {
		return fmt.Errorf("attach pod network of sandbox %s: %w", id, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("attach pod network of sandbox %s: netlink in %s: %w", id, nsPath, err)
	}
	defer h.Close()
	pod, err := Inspect(h)
	if err != nil {
		return fmt.Errorf("attach pod network of sandbox %s: netns %s: %w", id, nsPath, err)
	}
	cfg := pod.Config
	cfg.Mode = n.o.Mode
	dev := DeviceName(id)
	// A VNI held from before (a re-attach after a restart) stays held even
	// if this attach fails: the VM may still use it.
	heldVNI := n.o.Mode == ModeVXLAN && n.o.VNIs.Has(id)
	defer func() {
		if err != nil {
			if cerr := n.cleanNS(h, dev, pod.Link); cerr != nil {
				log.Warn("removing a failed attachment", "err", cerr)
			}
			if n.o.Mode == ModeVXLAN && !heldVNI {
				_ = n.o.VNIs.Release(id)
			}
		}
	}()
	var tap *os.File
	switch n.o.Mode {
	case ModeTunnel:
		tap, err = OpenTAP(ns, dev, true, true)
		if err != nil {
			return fmt.Errorf("attach pod network of sandbox %s: %w", id, err)
		}
		cfg.VnetHdr = true
	case ModeVXLAN:
		vx, err := n.vxlan(ns, h, id, dev, vmIP, pod.Config.Interface.MTU)
		if err != nil {
			return fmt.Errorf("attach pod network of sandbox %s: %w", id, err)
		}
		cfg.VXLAN = vx
	}
	closeTap := func() {
		if tap != nil {
			tap.Close()
		}
	}
	if err := n.plumb(ns, h, dev, pod); err != nil {
		closeTap()
		return fmt.Errorf("attach pod network of sandbox %s: %w", id, err)
	}
	conn, err := handshake(ctx, open, &cfg)
	if err != nil {
		closeTap()
		return fmt.Errorf("attach pod network of sandbox %s: %w", id, err)
	}
	if tap == nil {
		conn.Close()
		log.Info("pod network attached", "interface", cfg.Interface.Name, "addrs", cfg.Interface.Addrs, "vni", cfg.VXLAN.VNI)
		return nil
	}
	lctx, cancel := context.WithCancel(context.Background())
	a := &attachment{pump: NewPump(tap), cancel: cancel, done: make(chan struct{})}
	n.mu.Lock()
	n.att[id] = a
	n.mu.Unlock()
	go n.loop(lctx, log, a, conn, open, &cfg)
	log.Info("pod network attached", "interface", cfg.Interface.Name, "addrs", cfg.Interface.Addrs, "device", dev)
	return nil
}

// plumb sets the device's MTU, brings it up and redirects both ways.
func (n *Node) plumb(ns netns.NsHandle, h *netlink.Handle, dev string, pod *Pod) error {
	link, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("device %s: %w", dev, err)
	}
	if n.o.Mode == ModeTunnel {
		// The TAP only relays frames: no addresses, no IPv6 autoconfiguration.
		if err := Do(ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+dev+"/disable_ipv6", []byte("1"), 0o644)
		}); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("device %s: disable IPv6: %w", dev, err)
		}
	}
	if err := h.LinkSetMTU(link, pod.Link.Attrs().MTU); err != nil {
		return fmt.Errorf("device %s: MTU %d: %w", dev, pod.Link.Attrs().MTU, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("device %s: up: %w", dev, err)
	}
	if err := redirect(h, pod.Link, link); err != nil {
		return err
	}
	return redirect(h, link, pod.Link)
}

// vxlan makes (or finds) the sandbox's VXLAN device: created in the host
// namespace, so its UDP socket lives there, then moved into the pod's.
func (n *Node) vxlan(ns netns.NsHandle, h *netlink.Handle, id, dev string, vmIP net.IP, mtu int) (*VXLAN, error) {
	if vmIP == nil {
		return nil, errors.New("vxlan mode needs the VM's address")
	}
	vni, err := n.o.VNIs.Get(id)
	if err != nil {
		return nil, err
	}
	routes, err := netlink.RouteGet(vmIP)
	if err != nil || len(routes) == 0 || routes[0].Src == nil {
		return nil, fmt.Errorf("no route with a source address to VM %s: %v", vmIP, err)
	}
	local := routes[0].Src
	vx := &VXLAN{Remote: local.String(), VNI: vni, Port: n.o.VXLANPort}
	if l, err := h.LinkByName(dev); err == nil {
		if v, ok := l.(*netlink.Vxlan); ok && uint32(v.VxlanId) == vni && v.Group.Equal(vmIP) {
			return vx, nil // attached before a restart
		}
		return nil, fmt.Errorf("device %s in the pod namespace is not this sandbox's VXLAN (VNI %d, remote %s)", dev, vni, vmIP)
	}
	if err := checkVNI(dev, vni, n.o.VXLANPort); err != nil {
		return nil, err
	}
	link := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: dev, MTU: mtu},
		VxlanId:   int(vni), Group: vmIP, SrcAddr: local, Port: n.o.VXLANPort, Learning: false,
	}
	if err := netlink.LinkAdd(link); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("VXLAN device %s (VNI %d, port %d): %w: %v", dev, vni, n.o.VXLANPort, ErrVNIInUse, err)
		}
		return nil, fmt.Errorf("VXLAN device %s (VNI %d): %w", dev, vni, err)
	}
	if err := netlink.LinkSetNsFd(link, int(ns)); err != nil {
		if derr := netlink.LinkDel(link); derr != nil {
			err = errors.Join(err, fmt.Errorf("removing it from the host namespace: %w", derr))
		}
		return nil, fmt.Errorf("move VXLAN device %s into the pod namespace: %w", dev, err)
	}
	return vx, nil
}

// checkVNI refuses a VNI that a VXLAN device of the host namespace already
// uses on the same port.
func checkVNI(dev string, vni uint32, port int) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list host interfaces: %w", err)
	}
	for _, l := range links {
		v, ok := l.(*netlink.Vxlan)
		if ok && uint32(v.VxlanId) == vni && (v.Port == port || v.Port == 0) && v.Name != dev {
			return fmt.Errorf("VNI %d on port %d: %w by host device %s", vni, port, ErrVNIInUse, v.Name)
		}
	}
	return nil
}

// handshake opens a net stream, sends cfg and waits for the VM's answer.
func handshake(ctx context.Context, open Opener, cfg *Config) (net.Conn, error) {
	conn, err := open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open net stream: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	} else {
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
	}
	if err := WriteMessage(conn, cfg); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send pod network config: %w", err)
	}
	var r Reply
	if err := ReadMessage(conn, &r); err != nil {
		conn.Close()
		return nil, fmt.Errorf("pod network config: no answer from the VM: %w", err)
	}
	if r.Error != "" {
		conn.Close()
		return nil, fmt.Errorf("the VM refused the pod network config: %s", r.Error)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// loop carries frames on conn, and on new streams whenever one ends.
func (n *Node) loop(ctx context.Context, log *slog.Logger, a *attachment, conn net.Conn, open Opener, cfg *Config) {
	defer close(a.done)
	defer a.pump.Close()
	backoff := 50 * time.Millisecond
	for {
		if conn != nil {
			start := time.Now()
			err := a.pump.Run(ctx, conn)
			if ctx.Err() != nil {
				return
			}
			log.Warn("net stream ended; re-opening", "err", err, "stats", a.pump.Stats())
			if time.Since(start) > 5*time.Second {
				backoff = 50 * time.Millisecond
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var err error
		conn, err = handshake(hctx, open, cfg)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("re-opening net stream failed", "err", err)
			conn = nil
			continue
		}
		log.Info("net stream re-opened")
	}
}

// stop ends the sandbox's frame loop (if any) and waits for it.
func (n *Node) stop(id string) {
	n.mu.Lock()
	a := n.att[id]
	delete(n.att, id)
	n.mu.Unlock()
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// Close ends every frame loop but leaves the devices, so that a restarted
// peerpodd re-attaches to them.
func (n *Node) Close() {
	n.mu.Lock()
	ids := make([]string, 0, len(n.att))
	for id := range n.att {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	for _, id := range ids {
		n.stop(id)
	}
}

// Detach ends the sandbox's frame loop and removes its device and
// redirects from the pod namespace, leaving it as CNI left it. A namespace
// that is already gone is not an error (its devices went with it).
func (n *Node) Detach(ctx context.Context, id, nsPath string) error {
	n.stop(id)
	release := func() error {
		if n.o.Mode == ModeVXLAN {
			return n.o.VNIs.Release(id)
		}
		return nil
	}
	dev := DeviceName(id)
	ns, err := OpenNS(nsPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// The namespace went with its devices; make sure none is
			// stranded in the host namespace.
			if l, err := netlink.LinkByName(dev); err == nil {
				_ = netlink.LinkDel(l)
			}
			return release()
		}
		return fmt.Errorf("detach pod network of sandbox %s: %w", id, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("detach pod network of sandbox %s: netlink in %s: %w", id, nsPath, err)
	}
	defer h.Close()
	var cni netlink.Link
	if pod, err := Inspect(h); err == nil {
		cni = pod.Link
	}
	if err := n.cleanNS(h, dev, cni); err != nil {
		return fmt.Errorf("detach pod network of sandbox %s: %w", id, err)
	}
	return release()
}

// cleanNS removes our redirects from the CNI interface and our device.
func (n *Node) cleanNS(h *netlink.Handle, dev string, cni netlink.Link) error {
	var errs []error
	if cni != nil {
		if err := unredirect(h, cni); err != nil {
			errs = append(errs, err)
		}
	}
	if l, err := h.LinkByName(dev); err == nil {
		if err := h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove device %s: %w", dev, err))
		}
	}
	return errors.Join(errs...)
}
