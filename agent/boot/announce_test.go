package boot

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestAnnounceTeachesGateway checks that announce makes the gateway record
// the guest's MAC address without having asked for it: a "host" and a
// "guest" namespace joined by a veth pair.
func TestAnnounceTeachesGateway(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	defer func() { _ = netns.Set(orig) }()

	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	gw, guest := netip.MustParseAddr("10.251.7.1"), netip.MustParseAddr("10.251.7.2")

	hostNS := newNS(t, orig)
	guestNS := newNS(t, orig)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "anh" + tag, Namespace: netlink.NsFd(hostNS)}, PeerName: "ang" + tag,
		PeerNamespace: netlink.NsFd(guestNS)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	up := func(ns netns.NsHandle, name string, addr netip.Addr) int {
		t.Helper()
		if err := netns.Set(ns); err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Index
	}
	up(hostNS, "anh"+tag, gw)
	guestIdx := up(guestNS, "ang"+tag, guest)
	guestLink, err := netlink.LinkByIndex(guestIdx)
	if err != nil {
		t.Fatal(err)
	}

	announce(guestIdx, gw, 5*time.Second) // in the guest namespace

	if err := netns.Set(hostNS); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range neighs {
			if n.IP.Equal(guest.AsSlice()) && n.HardwareAddr.String() == guestLink.Attrs().HardwareAddr.String() {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway namespace has no neighbour entry %s → %s after announce: %v", guest, guestLink.Attrs().HardwareAddr, neighs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAnnounceGivesUpWithoutCarrier checks that announce returns once its
// wait is over when the link never comes up.
func TestAnnounceGivesUpWithoutCarrier(t *testing.T) {
	start := time.Now()
	announce(1<<30, netip.MustParseAddr("10.251.8.1"), 50*time.Millisecond) // no such link
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("announce on a missing link took %s", d)
	}
}

// newNS makes a network namespace, returns to orig and removes it at cleanup.
func newNS(t *testing.T, orig netns.NsHandle) netns.NsHandle {
	t.Helper()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}
