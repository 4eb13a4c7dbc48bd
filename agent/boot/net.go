package boot

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetConfig is the guest's network setting, read from the kernel command line:
//
//	peerpod.ip=10.0.0.5/24 peerpod.gw=10.0.0.1 peerpod.dns=10.0.0.1 peerpod.hostname=podvm-x
//
// (not the kernel's own ip=, which needs the NIC driver built in).
type NetConfig struct {
	Addr     netip.Prefix // zero: leave the network alone
	Gateway  netip.Addr
	DNS      []netip.Addr
	Hostname string
}

// ParseCmdline extracts NetConfig from a kernel command line.
func ParseCmdline(cmdline string) (NetConfig, error) {
	var nc NetConfig
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "peerpod.ip":
			p, err := netip.ParsePrefix(v)
			if err != nil || !p.Addr().Is4() {
				return nc, fmt.Errorf("boot: kernel command line peerpod.ip=%q is not an IPv4 address/prefix", v)
			}
			nc.Addr = p
		case "peerpod.gw":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nc, fmt.Errorf("boot: kernel command line peerpod.gw=%q is not an IP address", v)
			}
			nc.Gateway = a
		case "peerpod.dns":
			for _, s := range strings.Split(v, ",") {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nc, fmt.Errorf("boot: kernel command line peerpod.dns has %q, not an IP address", s)
				}
				nc.DNS = append(nc.DNS, a)
			}
		case "peerpod.hostname":
			nc.Hostname = v
		}
	}
	if nc.Gateway.IsValid() && !nc.Addr.IsValid() {
		return nc, fmt.Errorf("boot: kernel command line has peerpod.gw without peerpod.ip")
	}
	return nc, nil
}

// ConfigureNetwork brings up lo and the first Ethernet NIC with nc's address
// and default route. arp_notify is set before link-up so the host learns the
// guest's MAC from the gratuitous ARP instead of retrying its own.
func ConfigureNetwork(ctx context.Context, nc NetConfig, timeout time.Duration) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("boot: lo up: %w", err)
		}
	}
	if len(nc.DNS) > 0 {
		var b strings.Builder
		for _, d := range nc.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if err := os.MkdirAll("/etc", 0o755); err != nil {
			return fmt.Errorf("boot: %w", err)
		}
		if err := os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("boot: write resolv.conf: %w", err)
		}
	}
	if !nc.Addr.IsValid() {
		return nil
	}
	link, err := waitNIC(ctx, timeout)
	if err != nil {
		return err
	}
	name := link.Attrs().Name
	_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/arp_notify", []byte("1"), 0o644)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: nc.Addr.Addr().AsSlice(), Mask: net.CIDRMask(nc.Addr.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("boot: set %s on %s: %w", nc.Addr, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("boot: %s up: %w", name, err)
	}
	if nc.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: nc.Gateway.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("boot: default route via %s: %w", nc.Gateway, err)
		}
		go announce(link.Attrs().Index, nc.Gateway, announceCarrierWait)
	}
	return nil
}

// announceCarrierWait bounds announce's wait for the NIC's carrier.
const announceCarrierWait = 2 * time.Second

// announce makes the host learn the guest's MAC address as soon as the
// NIC carries frames. A node that dialled the guest before it was up holds
// an unresolved ARP entry and asks again only once a second; the gratuitous
// ARP of arp_notify refreshes such an entry but is lost when it leaves
// before the carrier is up, and a host ignores it once the entry has failed.
// An ARP request for the gateway's own address is recorded by the gateway
// whatever the state of its entry, so announce sends one datagram to the
// gateway's discard port (9), whose ARP resolution makes that request. It
// runs in the background and gives up quietly: without it the host still
// learns the address, a second later.
func announce(linkIndex int, gw netip.Addr, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		l, err := netlink.LinkByIndex(linkIndex)
		if err != nil {
			return
		}
		if l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
			break
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, 9)))
	if err != nil {
		return
	}
	_, _ = c.Write([]byte{0})
	_ = c.Close()
}

// waitNIC returns the first non-loopback device link, waiting for the driver to probe it.
func waitNIC(ctx context.Context, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("boot: list links: %w", err)
		}
		for _, l := range links {
			if l.Type() == "device" && l.Attrs().Flags&net.FlagLoopback == 0 && len(l.Attrs().HardwareAddr) == 6 {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("boot: no network device appeared within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("boot: wait for network device: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
