package podnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TAP, tc)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// podNS makes a netns, with a CNI-like veth eth0 and address unless bare.
func podNS(t *testing.T, bare bool) string {
	t.Helper()
	name := "pnt-" + suffix()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if !bare {
		sh(t, "ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
		sh(t, "ip", "-n", name, "addr", "add", "10.9.0.2/24", "dev", "eth0")
		sh(t, "ip", "-n", name, "link", "set", "eth0", "up")
		sh(t, "ip", "-n", name, "link", "set", "peer0", "up")
		sh(t, "ip", "-n", name, "route", "add", "default", "via", "10.9.0.1")
	}
	return name
}

// state is the namespace's devices, tc set-up, addresses and routes.
func state(t *testing.T, ns string) string {
	t.Helper()
	return sh(t, "ip", "-n", ns, "-br", "link") + sh(t, "ip", "-n", ns, "-4", "route") +
		sh(t, "tc", "-n", ns, "qdisc", "show") + sh(t, "ip", "-n", ns, "-4", "-br", "addr")
}

// fakeVM answers a net stream's config with reply and records the config.
func fakeVM(reply Reply, got chan<- Config) Opener {
	return func(ctx context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			var c Config
			if err := ReadMessage(b, &c); err != nil {
				return
			}
			got <- c
			_ = WriteMessage(b, &reply)
			_, _ = b.Read(make([]byte, 1)) // hold the stream until the node closes it
		}()
		return a, nil
	}
}

func noOpen(t *testing.T) Opener {
	return func(context.Context) (net.Conn, error) {
		t.Error("a net stream was opened")
		return nil, errors.New("unexpected")
	}
}

func TestAttachFaults(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	n, err := NewNode(Options{Mode: ModeTunnel})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	t.Run("vanished netns", func(t *testing.T) {
		err := n.Attach(ctx, "sb-gone", "/var/run/netns/pnt-does-not-exist-"+suffix(), nil, noOpen(t))
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("err = %v, want one saying the netns does not exist", err)
		}
		if err := n.Detach(ctx, "sb-gone", "/var/run/netns/pnt-does-not-exist"); err != nil {
			t.Fatalf("Detach of a vanished netns: %v", err)
		}
	})
	t.Run("no CNI interface", func(t *testing.T) {
		ns := podNS(t, true)
		before := state(t, ns)
		err := n.Attach(ctx, "sb-bare", "/var/run/netns/"+ns, nil, noOpen(t))
		if err == nil || !strings.Contains(err.Error(), "CNI created none") {
			t.Fatalf("err = %v, want one saying CNI created no interface", err)
		}
		if after := state(t, ns); after != before {
			t.Fatalf("netns changed:\n%s\n---\n%s", before, after)
		}
	})
	t.Run("VM refuses", func(t *testing.T) {
		ns := podNS(t, false)
		before := state(t, ns)
		got := make(chan Config, 1)
		err := n.Attach(ctx, "sb-refused", "/var/run/netns/"+ns, nil, fakeVM(Reply{Error: "no such thing"}, got))
		if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "no such thing") {
			t.Fatalf("err = %v, want the VM's refusal", err)
		}
		if after := state(t, ns); after != before {
			t.Fatalf("netns changed:\n%s\n---\n%s", before, after)
		}
	})
}

func TestAttachDetachTunnel(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := NewNode(Options{Mode: ModeTunnel})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ns := podNS(t, false)
	before := state(t, ns)
	got := make(chan Config, 4)
	id := "sb-" + suffix()
	if err := n.Attach(ctx, id, "/var/run/netns/"+ns, nil, fakeVM(Reply{}, got)); err != nil {
		t.Fatal(err)
	}
	c := <-got
	if c.Mode != ModeTunnel || c.Interface.Name != "eth0" || len(c.Interface.Addrs) != 1 || c.Interface.Addrs[0] != "10.9.0.2/24" || !c.VnetHdr {
		t.Fatalf("config %+v", c)
	}
	if len(c.Routes) != 1 || c.Routes[0].Gw != "10.9.0.1" || c.Routes[0].Dst != "" {
		t.Fatalf("routes %+v, want the default route via 10.9.0.1", c.Routes)
	}
	dev := DeviceName(id)
	if !strings.Contains(sh(t, "ip", "-n", ns, "link"), dev) {
		t.Fatalf("no %s in the pod netns", dev)
	}
	if f := sh(t, "tc", "-n", ns, "filter", "show", "dev", "eth0", "ingress"); !strings.Contains(f, "Redirect to device "+dev) {
		t.Fatalf("eth0 ingress filters %q lack the redirect to %s", f, dev)
	}
	// A restarted node finds its TAP again.
	n.Close()
	if err := n.Attach(ctx, id, "/var/run/netns/"+ns, nil, fakeVM(Reply{}, got)); err != nil {
		t.Fatalf("re-attach: %v", err)
	}
	if err := n.Detach(ctx, id, "/var/run/netns/"+ns); err != nil {
		t.Fatal(err)
	}
	if after := state(t, ns); after != before {
		t.Fatalf("netns not as CNI left it:\n%s\n---\n%s", before, after)
	}
}

func TestDuplicateVNI(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	port := 30000 + int(suffix()[0])
	vni := uint32(900000 + int(suffix()[1])*7)
	other := "ppdup" + suffix()
	sh(t, "ip", "link", "add", other, "type", "vxlan", "id", itoa(int(vni)), "dstport", itoa(port), "remote", "10.9.9.9")
	t.Cleanup(func() { exec.Command("ip", "link", "del", other).Run() })
	vnis, err := OpenVNIs(filepath.Join(t.TempDir(), "vni.json"), vni)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(Options{Mode: ModeVXLAN, VXLANPort: port, VNIs: vnis})
	if err != nil {
		t.Fatal(err)
	}
	ns := podNS(t, false)
	before := state(t, ns)
	id := "sb-" + suffix()
	err = n.Attach(ctx, id, "/var/run/netns/"+ns, net.ParseIP("127.0.0.1"), noOpen(t))
	if !errors.Is(err, ErrVNIInUse) || !strings.Contains(err.Error(), other) {
		t.Fatalf("err = %v, want ErrVNIInUse naming %s", err, other)
	}
	if after := state(t, ns); after != before {
		t.Fatalf("netns changed:\n%s\n---\n%s", before, after)
	}
	if exec.Command("ip", "link", "show", DeviceName(id)).Run() == nil {
		t.Fatal("device left in the host namespace")
	}
	if in := vnis.InUse(); len(in) != 0 {
		t.Fatalf("VNIs still allocated after the failure: %v", in)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
