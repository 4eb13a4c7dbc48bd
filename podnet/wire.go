// Package podnet carries a pod's network between the node and its pod VM.
//
// On the node, Attach reads the pod network namespace that CNI made,
// attaches a device of its own there (a TAP in tunnel mode, a VXLAN device
// in vxlan mode) with tc redirects between it and the CNI interface, and
// tells the VM's agent, over a "net" stream of the tunnel, how to recreate
// the pod's interface. In tunnel mode the same stream then carries the pod's
// Ethernet frames. The VM side lives in agent/podnet.
package podnet

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Transport modes (TUNNEL_TYPE).
const (
	// ModeTunnel carries the pod's frames on a net stream of the attested TLS tunnel.
	ModeTunnel = "tunnel"
	// ModeVXLAN is cloud-api-adaptor's kernel VXLAN, unencrypted.
	ModeVXLAN = "vxlan"
)

// Config is what the node sends the VM first on a net stream: the pod
// interface to recreate and how frames travel.
type Config struct {
	// Mode is ModeTunnel or ModeVXLAN.
	Mode string `json:"mode"`
	// Interface is the pod's interface as CNI made it.
	Interface Interface `json:"interface"`
	// Routes are the pod's routes, in an order that can be replayed.
	Routes []Route `json:"routes,omitempty"`
	// Neighbors are the pod's permanent neighbour entries.
	Neighbors []Neighbor `json:"neighbors,omitempty"`
	// VXLAN is set in vxlan mode.
	VXLAN *VXLAN `json:"vxlan,omitempty"`
	// VnetHdr says frames carry a virtio_net_hdr (GSO offloads) in tunnel mode.
	VnetHdr bool `json:"vnet_hdr,omitempty"`
}

// Interface is the pod's network interface.
type Interface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac"`
	MTU   int      `json:"mtu"`
	Addrs []string `json:"addrs"` // CIDR notation, e.g. 10.1.2.3/24
}

// Route is one pod route on the pod interface ("" Dst is the default route).
type Route struct {
	Dst   string `json:"dst,omitempty"`
	Gw    string `json:"gw,omitempty"`
	Src   string `json:"src,omitempty"`
	Scope uint8  `json:"scope,omitempty"`
	IPv6  bool   `json:"ipv6,omitempty"`
}

// Neighbor is a permanent neighbour entry.
type Neighbor struct {
	IP  string `json:"ip"`
	MAC string `json:"mac"`
}

// VXLAN is the VM end of the pod's VXLAN link.
type VXLAN struct {
	Remote string `json:"remote"` // the node's address
	VNI    uint32 `json:"vni"`
	Port   int    `json:"port"`
}

// Reply is the VM's answer to a Config.
type Reply struct {
	Error string `json:"error,omitempty"`
}

// MaxMessage bounds a control message on a net stream.
const MaxMessage = 64 << 10

// WriteMessage writes v as one length-prefixed JSON document.
func WriteMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("net message of %d bytes exceeds %d", len(b), MaxMessage)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadMessage reads one length-prefixed JSON document into v.
func ReadMessage(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return fmt.Errorf("net message of %d bytes exceeds %d", n, MaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("net message: %w", err)
	}
	return nil
}

// Validate checks a Config received from the node.
func (c *Config) Validate() error {
	switch c.Mode {
	case ModeTunnel:
	case ModeVXLAN:
		if c.VXLAN == nil || c.VXLAN.VNI == 0 || c.VXLAN.Port <= 0 || c.VXLAN.Port > 65535 || c.VXLAN.Remote == "" {
			return errors.New("vxlan mode needs remote, vni and port")
		}
	default:
		return fmt.Errorf("mode %q is not %s or %s", c.Mode, ModeTunnel, ModeVXLAN)
	}
	if c.Interface.Name == "" || len(c.Interface.Name) > 15 {
		return fmt.Errorf("interface name %q is empty or longer than 15 bytes", c.Interface.Name)
	}
	if c.Interface.MTU < 68 || c.Interface.MTU > 65535 {
		return fmt.Errorf("interface MTU %d out of range", c.Interface.MTU)
	}
	return nil
}
