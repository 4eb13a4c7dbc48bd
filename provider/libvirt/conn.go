package libvirt

import (
	"fmt"
	"net"
	"net/url"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/peerpod/peerpod/provider"
)

type connTarget struct {
	dialer socket.Dialer
	uri    golibvirt.ConnectURI
	local  bool // libvirtd runs on this host
}

// parseURI maps a libvirt URI to a dialer: qemu:///system and qemu:///session
// (and qemu+unix with ?socket=) through the local socket, qemu+tcp through TCP.
func parseURI(s string) (connTarget, error) {
	u, err := url.Parse(s)
	if err != nil {
		return connTarget{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_URI=%q: %v", s, err)
	}
	bad := func(why string) (connTarget, error) {
		return connTarget{}, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_URI=%q: %s", s, why)
	}
	if u.Path != "/system" && u.Path != "/session" {
		return bad("path must be /system or /session")
	}
	uri := golibvirt.ConnectURI("qemu://" + u.Path)
	switch u.Scheme {
	case "qemu", "qemu+unix":
		if u.Host != "" {
			return bad("a local URI has no host; use qemu+tcp://host/system")
		}
		sock := u.Query().Get("socket")
		opts := []dialers.LocalOption{dialers.WithLocalTimeout(5 * time.Second)}
		if sock != "" {
			opts = append(opts, dialers.WithSocket(sock))
		}
		return connTarget{dialer: dialers.NewLocal(opts...), uri: uri, local: true}, nil
	case "qemu+tcp":
		if u.Host == "" {
			return bad("qemu+tcp needs a host")
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, port = u.Host, "16509"
		}
		return connTarget{dialer: dialers.NewRemote(host, dialers.UsePort(port), dialers.WithRemoteTimeout(5*time.Second)), uri: uri}, nil
	default:
		return bad(fmt.Sprintf("scheme %q is not qemu, qemu+unix or qemu+tcp", u.Scheme))
	}
}
