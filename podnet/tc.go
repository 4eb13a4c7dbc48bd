package podnet

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// filterPrio is the priority of our redirect filters; we own only the
// filters of this priority on an interface's ingress qdisc.
const filterPrio = 0x5050

var ingressParent = netlink.MakeHandle(0xffff, 0)

// redirect sends everything arriving on from out of to (tc ingress u32
// match-all with a mirred egress redirect), making the ingress qdisc if
// the interface has none. It is idempotent.
func redirect(h *netlink.Handle, from, to netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: from.Attrs().Index, Handle: ingressParent, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	m := netlink.NewMirredAction(to.Attrs().Index)
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from.Attrs().Index, Parent: ingressParent, Priority: filterPrio, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: 1, Keys: []netlink.TcU32Key{{}}},
		Actions:     []netlink.Action{m},
	}
	if err := h.FilterReplace(f); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// unredirect removes our filters from link's ingress qdisc, and the qdisc
// if nothing else is left on it.
func unredirect(h *netlink.Handle, link netlink.Link) error {
	filters, err := h.FilterList(link, ingressParent)
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // no ingress qdisc
		}
		return fmt.Errorf("filters of %s: %w", link.Attrs().Name, err)
	}
	others := 0
	for _, f := range filters {
		if f.Attrs().Priority != filterPrio {
			others++
			continue
		}
		if err := h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove redirect on %s: %w", link.Attrs().Name, err)
		}
	}
	if others > 0 {
		return nil
	}
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: ingressParent, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("remove ingress qdisc of %s: %w", link.Attrs().Name, err)
	}
	return nil
}
