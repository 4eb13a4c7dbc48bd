package libvirt

import (
	"net"
	"net/netip"
	"os"

	"libvirt.org/go/libvirtxml"

	"github.com/peerpod/peerpod/provider"
)

// pool hands out guest addresses from [first, last] of a subnet, skipping
// the gateway. Which addresses are taken is read from the domains' metadata
// each time, so the pool survives restarts with no state of its own.
type pool struct {
	first, last netip.Addr
	gateway     netip.Addr
}

// next returns the lowest free address.
func (p pool) next(used map[netip.Addr]bool) (netip.Addr, bool) {
	for a := p.first; a.IsValid() && !p.last.Less(a); a = a.Next() {
		if a == p.gateway || used[a] {
			continue
		}
		return a, true
	}
	return netip.Addr{}, false
}

// hostRange is a subnet's usable range: without the network and broadcast addresses.
func hostRange(pfx netip.Prefix) (netip.Addr, netip.Addr) {
	pfx = pfx.Masked()
	first := pfx.Addr().Next()
	last := pfx.Addr()
	for a := pfx.Addr(); pfx.Contains(a); a = a.Next() {
		last = a
	}
	return first, last.Prev()
}

// bridgeAttach describes a host bridge: its first IPv4 address is the
// guests' gateway and gives their subnet.
func bridgeAttach(name string) (netAttach, error) {
	if _, err := os.Stat("/sys/class/net/" + name + "/bridge"); err != nil {
		return netAttach{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s is neither a libvirt network nor a host bridge", name)
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netAttach{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s: %v", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netAttach{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s: %v", name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		ones, _ := ipn.Mask.Size()
		return netAttach{Bridge: name, Prefix: netip.PrefixFrom(ip, ones), Gateway: ip}, nil
	}
	return netAttach{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s: bridge has no IPv4 address to route the guests", name)
}

// networkAttach describes a libvirt network from its XML; its DHCP range, if
// any, is excluded from the pool so static guests never collide with leases.
func networkAttach(name, xmlDesc string) (netAttach, []netip.Addr, error) {
	var n libvirtxml.Network
	if err := n.Unmarshal(xmlDesc); err != nil {
		return netAttach{}, nil, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s: parse network: %v", name, err)
	}
	for _, ip := range n.IPs {
		addr, err := netip.ParseAddr(ip.Address)
		if err != nil || !addr.Is4() {
			continue
		}
		bits := int(ip.Prefix)
		if ip.Netmask != "" {
			m := net.IPMask(net.ParseIP(ip.Netmask).To4())
			bits, _ = m.Size()
		}
		var dhcp []netip.Addr
		if ip.DHCP != nil {
			for _, r := range ip.DHCP.Ranges {
				s, err1 := netip.ParseAddr(r.Start)
				e, err2 := netip.ParseAddr(r.End)
				if err1 == nil && err2 == nil {
					dhcp = append(dhcp, s, e)
				}
			}
		}
		return netAttach{Network: name, Prefix: netip.PrefixFrom(addr, bits), Gateway: addr}, dhcp, nil
	}
	return netAttach{}, nil, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s: libvirt network has no IPv4 address", name)
}

// makePool builds the pool for att: LIBVIRT_IP_RANGE if set, else the subnet
// minus any DHCP ranges (given as start,end pairs).
func makePool(att netAttach, ipRange string, dhcp []netip.Addr) (pool, error) {
	first, last := hostRange(att.Prefix)
	if ipRange != "" {
		f, l, err := parseRange(ipRange)
		if err != nil {
			return pool{}, err
		}
		if !att.Prefix.Masked().Contains(f) || !att.Prefix.Masked().Contains(l) {
			return pool{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_IP_RANGE=%s is not inside %s of LIBVIRT_NET", ipRange, att.Prefix.Masked())
		}
		return pool{first: f, last: l, gateway: att.Gateway}, nil
	}
	// Use the larger stretch of the subnet outside the DHCP range(s).
	for i := 0; i+1 < len(dhcp); i += 2 {
		s, e := dhcp[i], dhcp[i+1]
		below := s.Prev()
		above := e.Next()
		if first.Less(s) && countAddrs(first, below) >= countAddrs(above, last) {
			last = below
		} else {
			first = above
		}
	}
	if last.Less(first) {
		return pool{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s leaves no addresses outside its DHCP range; set LIBVIRT_IP_RANGE", att.Network)
	}
	return pool{first: first, last: last, gateway: att.Gateway}, nil
}

func countAddrs(a, b netip.Addr) int {
	if b.Less(a) {
		return 0
	}
	a4, b4 := a.As4(), b.As4()
	av := int(a4[0])<<24 | int(a4[1])<<16 | int(a4[2])<<8 | int(a4[3])
	bv := int(b4[0])<<24 | int(b4[1])<<16 | int(b4[2])<<8 | int(b4[3])
	return bv - av + 1
}
