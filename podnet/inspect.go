package podnet

import (
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Pod is what Inspect found in a pod network namespace.
type Pod struct {
	// Link is the CNI interface.
	Link netlink.Link
	// Config holds the interface, routes and neighbours (Mode unset).
	Config Config
}

// Inspect reads the pod interface CNI made in the namespace behind h: the
// only interface that is neither loopback nor one of ours (ours start with
// DevicePrefix), or eth0 when there are several.
func Inspect(h *netlink.Handle) (*Pod, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var cands []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || strings.HasPrefix(a.Name, DevicePrefix) {
			continue
		}
		cands = append(cands, l)
	}
	var link netlink.Link
	switch len(cands) {
	case 0:
		return nil, fmt.Errorf("no pod interface: CNI created none")
	case 1:
		link = cands[0]
	default:
		for _, l := range cands {
			if l.Attrs().Name == "eth0" {
				link = l
			}
		}
		if link == nil {
			names := make([]string, len(cands))
			for i, l := range cands {
				names[i] = l.Attrs().Name
			}
			return nil, fmt.Errorf("several interfaces (%s) and none is eth0", strings.Join(names, ", "))
		}
	}
	a := link.Attrs()
	if len(a.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s is not Ethernet", a.Name)
	}
	p := &Pod{Link: link}
	p.Config.Interface = Interface{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
	}
	for _, ad := range addrs {
		if ad.IP.IsLinkLocalUnicast() {
			continue
		}
		p.Config.Interface.Addrs = append(p.Config.Interface.Addrs, ad.IPNet.String())
	}
	if len(p.Config.Interface.Addrs) == 0 {
		return nil, fmt.Errorf("interface %s has no address", a.Name)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: a.Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", a.Name, err)
	}
	// Link routes first, so gateways are reachable when replayed.
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Gw == nil && routes[j].Gw != nil })
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
			continue // made by the kernel from the addresses
		}
		if r.Dst != nil && r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalMulticast() {
			continue
		}
		rt := Route{Scope: uint8(r.Scope), IPv6: r.Family == unix.AF_INET6}
		if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) {
			rt.Dst = r.Dst.String()
		}
		if r.Gw != nil {
			rt.Gw = r.Gw.String()
		}
		if r.Src != nil {
			rt.Src = r.Src.String()
		}
		p.Config.Routes = append(p.Config.Routes, rt)
	}
	neighs, err := h.NeighList(a.Index, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("neighbours of %s: %w", a.Name, err)
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 || n.HardwareAddr == nil {
			continue
		}
		p.Config.Neighbors = append(p.Config.Neighbors, Neighbor{IP: n.IP.String(), MAC: n.HardwareAddr.String()})
	}
	return p, nil
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
