// Package libvirt is the pod VM provider for a local (or TCP-reachable)
// libvirtd: one persistent domain per sandbox, booted straight from the pod
// VM kernel and initramfs, with a static address from a pool it manages.
package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/peerpod/peerpod/provider"
)

// Provider creates pod VMs as libvirt domains. It is safe for concurrent use.
type Provider struct {
	cfg    Config
	virt   string
	log    *slog.Logger
	target connTarget
	att    netAttach
	pool   pool
	// tscKHz is the host TSC frequency a TCG microvm guest is told (0: unknown).
	tscKHz uint64

	mu sync.Mutex // serialises connecting and address allocation
	l  *golibvirt.Libvirt
}

var _ provider.Provider = (*Provider)(nil)

// New connects to libvirtd and resolves the network; it creates nothing.
func New(ctx context.Context, cfg *Config) (*Provider, error) {
	if cfg == nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "libvirt: no configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	target, err := parseURI(cfg.URI)
	if err != nil {
		return nil, err
	}
	if err := cfg.checkFiles(); err != nil {
		return nil, err
	}
	virt := cfg.VirtType
	if virt == "" {
		virt = DetectVirtType()
	}
	if cfg.LaunchSecurity != "" {
		virt = VirtKVM
	}
	p := &Provider{cfg: *cfg, virt: virt, target: target}
	if virt == VirtTCG && target.local {
		p.tscKHz = hostTSCkHz(50 * time.Millisecond)
	}
	p.log = slog.Default().With("provider", "libvirt", "virt", virt)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_DATA_DIR=%s: %v", cfg.DataDir, err)
	}
	l, err := p.conn(ctx)
	if err != nil {
		return nil, err
	}
	var dhcp []netip.Addr
	if nw, err := l.NetworkLookupByName(cfg.Network); err == nil {
		desc, err := l.NetworkGetXMLDesc(nw, 0)
		if err != nil {
			return nil, classify(fmt.Errorf("read network %s: %w", cfg.Network, err))
		}
		if p.att, dhcp, err = networkAttach(cfg.Network, desc); err != nil {
			return nil, err
		}
	} else if p.att, err = bridgeAttach(cfg.Network); err != nil {
		return nil, err
	}
	if p.pool, err = makePool(p.att, cfg.IPRange, dhcp); err != nil {
		return nil, err
	}
	p.log.Info("libvirt provider ready", "uri", cfg.URI, "net", cfg.Network, "subnet", p.att.Prefix.Masked(),
		"pool", p.pool.first.String()+"-"+p.pool.last.String(), "kernel", cfg.Kernel, "launch_security", cfg.LaunchSecurity)
	return p, nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "libvirt" }

// VirtType is the domain type the provider uses: "kvm" or "qemu" (TCG).
func (p *Provider) VirtType() string { return p.virt }

// Close drops the libvirtd connection. Domains keep running.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l == nil {
		return nil
	}
	err := p.l.Disconnect()
	p.l = nil
	return err
}

// conn returns a live connection, reconnecting after libvirtd went away.
func (p *Provider) conn(ctx context.Context) (*golibvirt.Libvirt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connLocked(ctx)
}

func (p *Provider) connLocked(ctx context.Context) (*golibvirt.Libvirt, error) {
	if p.l != nil && p.l.IsConnected() {
		return p.l, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l := golibvirt.NewWithDialer(p.target.dialer)
	if err := l.ConnectToURI(p.target.uri); err != nil {
		return nil, provider.Classify(provider.ErrTransient, fmt.Errorf("connect to libvirtd at %s: %w", p.cfg.URI, err))
	}
	p.l = l
	return l, nil
}

// Validate implements provider.Provider: libvirtd answers, the image files
// exist and the network is usable.
func (p *Provider) Validate(ctx context.Context) error {
	if err := p.cfg.Validate(); err != nil {
		return err
	}
	if err := p.cfg.checkFiles(); err != nil {
		return err
	}
	l, err := p.conn(ctx)
	if err != nil {
		return err
	}
	if _, err := l.ConnectGetLibVersion(); err != nil {
		return classify(fmt.Errorf("libvirtd at %s: %w", p.cfg.URI, err))
	}
	if p.att.Network != "" {
		if _, err := l.NetworkLookupByName(p.att.Network); err != nil {
			return provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_NET=%s: %v", p.att.Network, err)
		}
	} else if _, err := bridgeAttach(p.att.Bridge); err != nil {
		return err
	}
	return nil
}

// Create implements provider.Provider. The domain is persistent (it survives
// peerpodd and libvirtd restarts) and is not tied to this connection.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	if req.Name == "" {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM: empty name")
	}
	if req.Resources.VCPUs < 0 || req.Resources.MemoryMiB < 0 {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: negative resources %+v", req.Name, req.Resources)
	}
	log := p.log.With("vm", req.Name)
	start := time.Now()
	dom, m, created, err := p.define(ctx, req)
	if err != nil {
		return nil, err
	}
	l, err := p.conn(ctx)
	if err != nil {
		return nil, err
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return nil, classify(fmt.Errorf("create VM %s: read state: %w", req.Name, err))
	}
	if golibvirt.DomainState(state) != golibvirt.DomainRunning {
		if err := l.DomainCreate(dom); err != nil {
			err = classify(fmt.Errorf("start VM %s: %w", req.Name, err))
			if created {
				p.remove(context.WithoutCancel(ctx), l, dom, m, log)
			}
			return nil, err
		}
	}
	inst := instance(dom, m)
	log.Info("VM started", "id", inst.ID, "ip", m.IP, "new", created, "elapsed", time.Since(start).Round(time.Millisecond))
	return inst, nil
}

// define defines the domain for req, or finds the one a previous call defined.
func (p *Provider) define(ctx context.Context, req provider.CreateRequest) (golibvirt.Domain, *meta, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, err := p.connLocked(ctx)
	if err != nil {
		return golibvirt.Domain{}, nil, false, err
	}
	if dom, err := l.DomainLookupByName(req.Name); err == nil {
		m, err := domainMeta(l, dom)
		if err != nil {
			return dom, nil, false, provider.Errorf(provider.ErrConflict, "create VM %s: a domain of that name exists and is not peerpod's: %v", req.Name, err)
		}
		if m.tags()[provider.TagSandbox] != req.Tags[provider.TagSandbox] {
			return dom, nil, false, provider.Errorf(provider.ErrConflict, "create VM %s: the domain of that name belongs to sandbox %q", req.Name, m.tags()[provider.TagSandbox])
		}
		return dom, m, false, nil
	} else if !golibvirt.IsNotFound(err) {
		return golibvirt.Domain{}, nil, false, classify(fmt.Errorf("create VM %s: look up: %w", req.Name, err))
	}
	used, err := p.usedIPs(l)
	if err != nil {
		return golibvirt.Domain{}, nil, false, err
	}
	ip, ok := p.pool.next(used)
	if !ok {
		return golibvirt.Domain{}, nil, false, provider.Errorf(provider.ErrCapacity, "create VM %s: no free address in %s-%s", req.Name, p.pool.first, p.pool.last)
	}
	udPath, consolePath := vmFiles(p.cfg.DataDir, req.Name)
	m := &meta{IP: ip.String(), Created: time.Now().UTC().Truncate(time.Second), Console: consolePath, Tags: metaTags(req.Tags)}
	if len(req.UserData) > 0 {
		if err := writeUserData(udPath, req.UserData); err != nil {
			return golibvirt.Domain{}, nil, false, provider.Classify(provider.ErrTransient, fmt.Errorf("create VM %s: write user data: %w", req.Name, err))
		}
		m.UserData = udPath
	}
	size := p.ResolveResources(req.Resources)
	s := spec{
		Name: req.Name, VirtType: p.virt, IP: ip, Net: p.att, Meta: *m, TSCkHz: p.tscKHz,
		VCPUs: size.VCPUs, MemoryMiB: size.MemoryMiB,
	}
	if p.cfg.Kernel == "" {
		vol, path, err := p.createDisk(l, req.Name)
		if err != nil {
			p.removeFiles(m)
			return golibvirt.Domain{}, nil, false, err
		}
		m.Volume, s.Disk = vol, path
		s.Meta = *m
	}
	x, err := domainXML(&p.cfg, s)
	if err != nil {
		p.removeFiles(m)
		p.deleteDisk(l, m)
		return golibvirt.Domain{}, nil, false, provider.Classify(provider.ErrInvalidConfig, fmt.Errorf("create VM %s: %w", req.Name, err))
	}
	dom, err := l.DomainDefineXML(x)
	if err != nil {
		p.removeFiles(m)
		p.deleteDisk(l, m)
		// libvirt's message is kept whole: it says what this host cannot do.
		return golibvirt.Domain{}, nil, false, classify(fmt.Errorf("define VM %s: %w", req.Name, err))
	}
	return dom, m, true, nil
}

// usedIPs collects the addresses of every peerpod domain on the host.
func (p *Provider) usedIPs(l *golibvirt.Libvirt) (map[netip.Addr]bool, error) {
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, classify(fmt.Errorf("list domains: %w", err))
	}
	used := map[netip.Addr]bool{}
	for _, d := range doms {
		m, err := domainMeta(l, d)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(m.IP); err == nil {
			used[a] = true
		}
	}
	return used, nil
}

// Delete implements provider.Provider: stop and undefine the domain, then
// remove its user data, console log and disk.
func (p *Provider) Delete(ctx context.Context, id string) error {
	u, err := uuid.Parse(id)
	if err != nil {
		return provider.Errorf(provider.ErrNotFound, "delete VM %q: not a libvirt domain UUID", id)
	}
	l, err := p.conn(ctx)
	if err != nil {
		return err
	}
	dom, err := l.DomainLookupByUUID(golibvirt.UUID(u))
	if golibvirt.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify(fmt.Errorf("delete VM %s: look up: %w", id, err))
	}
	m, err := domainMeta(l, dom)
	if err != nil {
		return provider.Errorf(provider.ErrConflict, "delete VM %s: domain %s is not peerpod's: %v", id, dom.Name, err)
	}
	return p.remove(ctx, l, dom, m, p.log.With("vm", dom.Name))
}

func (p *Provider) remove(_ context.Context, l *golibvirt.Libvirt, dom golibvirt.Domain, m *meta, log *slog.Logger) error {
	if err := l.DomainDestroyFlags(dom, 0); err != nil && !isCode(err, golibvirt.ErrOperationInvalid) && !golibvirt.IsNotFound(err) {
		return classify(fmt.Errorf("delete VM %s: stop: %w", dom.Name, err))
	}
	if err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineNvram); err != nil && !golibvirt.IsNotFound(err) {
		return classify(fmt.Errorf("delete VM %s: undefine: %w", dom.Name, err))
	}
	p.removeFiles(m)
	p.deleteDisk(l, m)
	log.Info("VM deleted", "id", uuid.UUID(dom.UUID).String(), "ip", m.IP)
	return nil
}

func (p *Provider) removeFiles(m *meta) {
	for _, f := range []string{m.UserData, m.Console} {
		if f != "" && strings.HasPrefix(f, p.cfg.DataDir+"/") {
			_ = os.Remove(f)
		}
	}
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Instance, error) {
	l, err := p.conn(ctx)
	if err != nil {
		return nil, err
	}
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, classify(fmt.Errorf("list domains: %w", err))
	}
	var out []provider.Instance
	for _, d := range doms {
		m, err := domainMeta(l, d)
		if err != nil || !provider.Matches(m.tags(), tags) {
			continue
		}
		out = append(out, *instance(d, m))
	}
	return out, nil
}

func instance(d golibvirt.Domain, m *meta) *provider.Instance {
	inst := &provider.Instance{ID: uuid.UUID(d.UUID).String(), Name: d.Name, Tags: m.tags(), Created: m.Created}
	if a, err := netip.ParseAddr(m.IP); err == nil {
		inst.IPs = []netip.Addr{a}
	}
	return inst
}

// domainMeta reads the provider's metadata element of d; domains without one are not ours.
func domainMeta(l *golibvirt.Libvirt, d golibvirt.Domain) (*meta, error) {
	s, err := l.DomainGetMetadata(d, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{MetadataNS}, golibvirt.DomainAffectCurrent)
	if err != nil {
		return nil, err
	}
	return parseMeta(s)
}

// createDisk makes the VM's disk for UEFI disk boot: a qcow2 overlay on the base volume.
func (p *Provider) createDisk(l *golibvirt.Libvirt, name string) (string, string, error) {
	sp, err := l.StoragePoolLookupByName(p.cfg.Pool)
	if err != nil {
		return "", "", provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_POOL=%s: %v", p.cfg.Pool, err)
	}
	base, err := l.StorageVolLookupByName(sp, p.cfg.Volume)
	if err != nil {
		return "", "", provider.Errorf(provider.ErrInvalidConfig, "LIBVIRT_VOL_NAME=%s in pool %s: %v", p.cfg.Volume, p.cfg.Pool, err)
	}
	basePath, err := l.StorageVolGetPath(base)
	if err != nil {
		return "", "", classify(fmt.Errorf("volume %s: %w", p.cfg.Volume, err))
	}
	_, capacity, _, err := l.StorageVolGetInfo(base)
	if err != nil {
		return "", "", classify(fmt.Errorf("volume %s: %w", p.cfg.Volume, err))
	}
	vol := libvirtxml.StorageVolume{
		Name:         name + "-root.qcow2",
		Capacity:     &libvirtxml.StorageVolumeSize{Value: capacity, Unit: "bytes"},
		Target:       &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{Path: basePath, Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
	}
	x, err := vol.Marshal()
	if err != nil {
		return "", "", fmt.Errorf("encode volume %s: %w", vol.Name, err)
	}
	v, err := l.StorageVolCreateXML(sp, x, 0)
	if err != nil {
		return "", "", classify(fmt.Errorf("create volume %s: %w", vol.Name, err))
	}
	path, err := l.StorageVolGetPath(v)
	if err != nil {
		_ = l.StorageVolDelete(v, 0)
		return "", "", classify(fmt.Errorf("volume %s: %w", vol.Name, err))
	}
	return vol.Name, path, nil
}

func (p *Provider) deleteDisk(l *golibvirt.Libvirt, m *meta) {
	if m.Volume == "" {
		return
	}
	sp, err := l.StoragePoolLookupByName(p.cfg.Pool)
	if err != nil {
		return
	}
	if v, err := l.StorageVolLookupByName(sp, m.Volume); err == nil {
		_ = l.StorageVolDelete(v, 0)
	}
}

func isCode(err error, code golibvirt.ErrorNumber) bool {
	var le golibvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}

// classify maps a libvirt error to a provider error class, keeping its message.
func classify(err error) error {
	var le golibvirt.Error
	if !errors.As(err, &le) {
		return provider.Classify(provider.ErrTransient, err)
	}
	switch golibvirt.ErrorNumber(le.Code) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoNetwork:
		return provider.Classify(provider.ErrNotFound, err)
	case golibvirt.ErrConfigUnsupported, golibvirt.ErrXMLError, golibvirt.ErrXMLDetail,
		golibvirt.ErrNoSupport, golibvirt.ErrInvalidArg, golibvirt.ErrOperationUnsupported:
		return provider.Classify(provider.ErrInvalidConfig, err)
	case golibvirt.ErrOperationInvalid:
		return provider.Classify(provider.ErrConflict, err)
	default:
		return provider.Classify(provider.ErrTransient, err)
	}
}

// ResolveResources implements provider.Sizer: LIBVIRT_CPU and
// LIBVIRT_MEMORY stand in for what r leaves zero. GPUs are not offered.
func (p *Provider) ResolveResources(r provider.Resources) provider.Resources {
	out := provider.Resources{VCPUs: p.cfg.VCPUs, MemoryMiB: p.cfg.MemoryMiB}
	if r.VCPUs > 0 {
		out.VCPUs = r.VCPUs
	}
	if r.MemoryMiB > 0 {
		out.MemoryMiB = r.MemoryMiB
	}
	return out
}
