// Package farm is a TEST FIXTURE: a tiny "cloud" whose VMs are in-process pod
// agents (a real tunnel server with fake-attested certificates serving
// grpc.Health and the config stream) on their own loopback addresses, and a
// provider.Provider that reaches it over HTTP from another process. It lets
// benchmarks run peerpodd as a separate process (to measure its own memory)
// with hundreds of VMs and a chosen create latency. Never use it outside tests.
package farm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/initdata"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/tunnel"
	"github.com/peerpod/peerpod/tunnel/attest"
)

// Farm serves VMs. Create it with New.
type Farm struct {
	// URL is the farm's HTTP address (for NewProvider).
	URL string
	// Port is the tunnel port every VM listens on (FORWARDER_PORT).
	Port int
	dir  string
	srv  *http.Server
	log  *slog.Logger

	mu   sync.Mutex
	next uint32
	vms  map[string]*vm
}

type vm struct {
	inst   provider.Instance
	direct string // unix socket serving the same ttrpc server directly
	stop   func()
}

// New starts a farm whose VMs listen on port (0 picks one) and whose direct
// agent sockets live in dir.
func New(dir string, port int) (*Farm, error) {
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &Farm{URL: "http://" + ln.Addr().String(), Port: port, dir: dir, vms: map[string]*vm{},
		log: slog.New(slog.DiscardHandler), next: 1}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /vms", f.create)
	mux.HandleFunc("DELETE /vms/{id}", f.delete)
	mux.HandleFunc("GET /vms", f.list)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln)
	return f, nil
}

// Close stops every VM and the HTTP server.
func (f *Farm) Close() {
	f.srv.Close()
	f.mu.Lock()
	vms := f.vms
	f.vms = map[string]*vm{}
	f.mu.Unlock()
	for _, v := range vms {
		v.stop()
	}
}

// Len is the number of VMs.
func (f *Farm) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vms)
}

// DirectSocket is the unix socket where VM id's agent serves ttrpc without
// peerpodd or the tunnel ("" if unknown).
func (f *Farm) DirectSocket(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.vms[id]; ok {
		return v.direct
	}
	return ""
}

type createReq struct {
	Name     string            `json:"name"`
	Tags     map[string]string `json:"tags"`
	UserData []byte            `json:"userdata"`
}

func (f *Farm) create(w http.ResponseWriter, r *http.Request) {
	var req createReq
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	for _, v := range f.vms {
		if v.inst.Name == req.Name {
			f.mu.Unlock()
			json.NewEncoder(w).Encode(v.inst)
			return
		}
	}
	n := f.next
	f.next++
	f.mu.Unlock()
	ud, err := userdata.Decode(req.UserData)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	addr := netip.AddrFrom4([4]byte{127, 100 + byte(n>>16), byte(n >> 8), byte(n)})
	v := &vm{inst: provider.Instance{ID: "farm-" + strconv.Itoa(int(n)), Name: req.Name, IPs: []netip.Addr{addr},
		Tags: req.Tags, Created: time.Now().UTC()}}
	v.direct = filepath.Join(f.dir, v.inst.ID+".sock")
	if err := f.boot(v, ud); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f.mu.Lock()
	f.vms[v.inst.ID] = v
	f.mu.Unlock()
	json.NewEncoder(w).Encode(v.inst)
}

// boot starts the VM's agent: a tunnel server on addr:Port and the same
// ttrpc server on the direct unix socket.
func (f *Farm) boot(v *vm, ud *userdata.Config) error {
	var digest []byte
	if ud.Initdata != "" {
		in, err := initdata.Parse([]byte(ud.Initdata))
		if err != nil {
			return err
		}
		digest = in.Digest()
	}
	att, err := attest.NewAttester(ud.Attester)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	serverTLS, err := attest.ServerTLS(ctx, att, digest, ud.TunnelCA)
	if err != nil {
		cancel()
		return err
	}
	srv, err := tunnel.NewServer(tunnel.Config{TLS: serverTLS, Logger: f.log})
	if err != nil {
		cancel()
		return err
	}
	srv.Handle(tunnel.KindConfig, func(ctx context.Context, c net.Conn, h tunnel.Header) {
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	})
	tsrv, err := ttrpc.NewServer()
	if err != nil {
		cancel()
		return err
	}
	agent.RegisterHealthService(tsrv, Health{})
	ln, err := net.Listen("tcp", net.JoinHostPort(v.inst.IPs[0].String(), strconv.Itoa(ud.Port())))
	if err != nil {
		cancel()
		return err
	}
	os.Remove(v.direct)
	uln, err := net.Listen("unix", v.direct)
	if err != nil {
		cancel()
		ln.Close()
		return err
	}
	done := make(chan struct{}, 3)
	go func() { srv.Serve(ctx, ln); done <- struct{}{} }()
	go func() { tsrv.Serve(ctx, srv.Listener(tunnel.KindAgent)); done <- struct{}{} }()
	direct, _ := ttrpc.NewServer()
	agent.RegisterHealthService(direct, Health{})
	go func() { direct.Serve(ctx, uln); done <- struct{}{} }()
	v.stop = func() {
		cancel()
		ln.Close()
		uln.Close()
		tsrv.Close()
		direct.Close()
		for range 3 {
			<-done
		}
	}
	return nil
}

// Health is the farm agents' grpc.Health: Check answers SERVING, Version
// echoes the request's service field (a payload of any size both ways).
type Health struct{}

// Check implements agent.HealthService.
func (Health) Check(context.Context, *agent.CheckRequest) (*agent.HealthCheckResponse, error) {
	return &agent.HealthCheckResponse{Status: agent.HealthCheckResponse_SERVING}, nil
}

// Version implements agent.HealthService.
func (Health) Version(_ context.Context, r *agent.CheckRequest) (*agent.VersionCheckResponse, error) {
	return &agent.VersionCheckResponse{AgentVersion: r.Service}, nil
}

func (f *Farm) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	f.mu.Lock()
	v, ok := f.vms[id]
	delete(f.vms, id)
	f.mu.Unlock()
	if ok {
		v.stop()
		os.Remove(v.direct)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Farm) list(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	out := make([]provider.Instance, 0, len(f.vms))
	for _, v := range f.vms {
		out = append(out, v.inst)
	}
	f.mu.Unlock()
	json.NewEncoder(w).Encode(out)
}

// Provider is a provider.Provider over a farm's HTTP API; each Create
// takes at least CreateDelay.
type Provider struct {
	url   string
	delay time.Duration
	hc    *http.Client
}

// NewProvider returns a provider for the farm at url.
func NewProvider(url string, createDelay time.Duration) *Provider {
	// No keep-alive: idle connections would hold goroutines in peerpodd
	// and blur its goroutine count.
	return &Provider{url: url, delay: createDelay, hc: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{DisableKeepAlives: true}}}
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "farm" }

// Validate implements provider.Provider.
func (p *Provider) Validate(ctx context.Context) error { return nil }

// Create implements provider.Provider. It takes CreateDelay, or longer if
// the farm takes longer to boot the VM: like a cloud, the VM boots while the
// call is pending.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	done := time.After(p.delay)
	body, _ := json.Marshal(createReq{Name: req.Name, Tags: req.Tags, UserData: req.UserData})
	var inst provider.Instance
	if err := p.do(ctx, http.MethodPost, "/vms", body, &inst); err != nil {
		return nil, fmt.Errorf("farm: create %s: %w", req.Name, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, provider.Classify(provider.ErrTransient, ctx.Err())
	}
	return &inst, nil
}

// Delete implements provider.Provider.
func (p *Provider) Delete(ctx context.Context, id string) error {
	if err := p.do(ctx, http.MethodDelete, "/vms/"+id, nil, nil); err != nil {
		return fmt.Errorf("farm: delete %s: %w", id, err)
	}
	return nil
}

// List implements provider.Provider.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Instance, error) {
	var all []provider.Instance
	if err := p.do(ctx, http.MethodGet, "/vms", nil, &all); err != nil {
		return nil, fmt.Errorf("farm: list: %w", err)
	}
	var out []provider.Instance
	for _, vm := range all {
		if provider.Matches(vm.Tags, tags) {
			out = append(out, vm)
		}
	}
	return out, nil
}

func (p *Provider) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return provider.Classify(provider.ErrTransient, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return provider.Errorf(provider.ErrTransient, "%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
