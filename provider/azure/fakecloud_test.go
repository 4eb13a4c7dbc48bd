package azure

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	networkfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9/fake"
)

// The test's Azure: the SDK's own fake servers (armcompute/v8/fake,
// armnetwork/v9/fake) answer the real SDK clients, backed by the in-memory
// resource state below, with fault injection on top.

const (
	testSub    = "00000000-1111-2222-3333-444444444444"
	testRG     = "peerpod-rg"
	testRegion = "eastus2"
	testSubnet = "/subscriptions/" + testSub + "/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/pods"
	testNSG    = "/subscriptions/" + testSub + "/resourceGroups/net-rg/providers/Microsoft.Network/networkSecurityGroups/pods-nsg"
	testImage  = "/subscriptions/" + testSub + "/resourceGroups/img-rg/providers/Microsoft.Compute/galleries/g/images/podvm/versions/1.0.0"
)

// vmFault is what a VM create should fail with. async faults fail the
// long-running operation after Azure accepted it (the VM is left Failed,
// as Azure does); others refuse the PUT itself.
type vmFault struct {
	status int
	code   string
	async  bool
}

// httpFault is a raw HTTP error answered instead of the fake's response,
// with the headers and JSON body ARM sends.
type httpFault struct {
	api     string // e.g. "VirtualMachinesClient.BeginCreateOrUpdate"
	times   int
	status  int
	code    string
	message string
	header  http.Header
}

// cloud is the in-memory state of one resource group.
type cloud struct {
	mu       sync.Mutex
	vms      map[string]*armcompute.VirtualMachine
	nics     map[string]*armnetwork.Interface
	ips      map[string]*armnetwork.PublicIPAddress
	disks    map[string]string // disk name -> VM name
	diskTags map[string]map[string]*string
	nextIP   int
	vmReqs   []armcompute.VirtualMachine // every VM create body received
	nicReqs  []armnetwork.Interface
	ipReqs   []armnetwork.PublicIPAddress
	calls    map[string]int // API name -> requests (polls excluded)

	// Knobs, set before use.
	sizes     []*armcompute.VirtualMachineSize
	pollSteps int                                 // non-terminal answers before each LRO ends
	latency   time.Duration                       // time a VM create takes to be accepted
	vmFault   func(name, size string) *vmFault    // nil: no fault
	onRequest func(api string, req *http.Request) // observes each request
	faults    []*httpFault

	router *router
}

func newCloud(_ testing.TB) *cloud {
	c := &cloud{
		vms:      map[string]*armcompute.VirtualMachine{},
		nics:     map[string]*armnetwork.Interface{},
		ips:      map[string]*armnetwork.PublicIPAddress{},
		disks:    map[string]string{},
		diskTags: map[string]map[string]*string{},
		calls:    map[string]int{},
		sizes: []*armcompute.VirtualMachineSize{
			{Name: to.Ptr("Standard_DC2as_v5"), NumberOfCores: to.Ptr[int32](2), MemoryInMB: to.Ptr[int32](8192)},
			{Name: to.Ptr("Standard_DC4as_v5"), NumberOfCores: to.Ptr[int32](4), MemoryInMB: to.Ptr[int32](16384)},
			{Name: to.Ptr("Standard_DC2es_v5"), NumberOfCores: to.Ptr[int32](2), MemoryInMB: to.Ptr[int32](8192)},
		},
	}
	c.router = &router{c: c, ops: map[string]policy.Transporter{}}
	return c
}

func rid(kind, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", testSub, testRG, kind, name)
}

func lastSeg(id string) string { return strings.ToLower(id[strings.LastIndex(id, "/")+1:]) }

func clone[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// leftovers lists every resource still in the group, for leak checks.
func (c *cloud) leftovers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.vms {
		out = append(out, "vm/"+n)
	}
	for n := range c.nics {
		out = append(out, "nic/"+n)
	}
	for n := range c.ips {
		out = append(out, "ip/"+n)
	}
	for n := range c.disks {
		out = append(out, "disk/"+n)
	}
	sort.Strings(out)
	return out
}

func (c *cloud) count(api string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[api]
}

func (c *cloud) vmBodies() []armcompute.VirtualMachine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]armcompute.VirtualMachine(nil), c.vmReqs...)
}

func (c *cloud) inject(f *httpFault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, f)
}

// --- compute ---

func (c *cloud) computeServer() *computefake.ServerFactory {
	return &computefake.ServerFactory{
		VirtualMachinesServer: computefake.VirtualMachinesServer{
			BeginCreateOrUpdate: c.vmCreate,
			Get:                 c.vmGet,
			BeginDelete:         c.vmDelete,
			NewListPager:        c.vmList,
		},
		DisksServer: computefake.DisksServer{BeginDelete: c.diskDelete, BeginUpdate: c.diskUpdate},
		VirtualMachineSizesServer: computefake.VirtualMachineSizesServer{
			NewListPager: func(location string, _ *armcompute.VirtualMachineSizesClientListOptions) (resp azfake.PagerResponder[armcompute.VirtualMachineSizesClientListResponse]) {
				resp.AddPage(http.StatusOK, armcompute.VirtualMachineSizesClientListResponse{
					VirtualMachineSizeListResult: armcompute.VirtualMachineSizeListResult{Value: c.sizes},
				}, nil)
				return
			},
		},
	}
}

func (c *cloud) vmCreate(ctx context.Context, rg, name string, vm armcompute.VirtualMachine, _ *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	if c.latency > 0 {
		select {
		case <-time.After(c.latency):
		case <-ctx.Done():
			errResp.SetError(ctx.Err())
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vmReqs = append(c.vmReqs, vm)
	size := string(*vm.Properties.HardwareProfile.VMSize)
	var f *vmFault
	if c.vmFault != nil {
		f = c.vmFault(name, size)
	}
	if f != nil && !f.async {
		errResp.SetResponseError(f.status, f.code)
		return
	}
	nic := vm.Properties.NetworkProfile.NetworkInterfaces[0]
	if c.nics[lastSeg(*nic.ID)] == nil {
		errResp.SetResponseError(http.StatusBadRequest, "InvalidResourceReference")
		return
	}
	// The fake unmarshalled vm for this call alone; copy only what changes so
	// the recorded request stays as sent. Stored values are never modified.
	props := *vm.Properties
	stored := vm
	stored.Properties = &props
	stored.ID = to.Ptr(rid("Microsoft.Compute/virtualMachines", name))
	stored.Name = &name
	stored.Properties.ProvisioningState = to.Ptr("Succeeded")
	stored.Properties.TimeCreated = to.Ptr(time.Now().UTC())
	stored.Properties.UserData = nil // Azure does not return it
	if f != nil {
		stored.Properties.ProvisioningState = to.Ptr("Failed")
	}
	c.vms[strings.ToLower(name)] = &stored
	c.disks[strings.ToLower(*vm.Properties.StorageProfile.OSDisk.Name)] = strings.ToLower(name)
	steps := c.pollSteps
	if f != nil && steps == 0 {
		steps = 1 // an async failure needs the operation accepted first
	}
	for range steps {
		resp.AddNonTerminalResponse(http.StatusCreated, nil)
	}
	if f != nil {
		resp.SetTerminalError(f.status, f.code)
		return
	}
	resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientCreateOrUpdateResponse{VirtualMachine: stored}, nil)
	return
}

func (c *cloud) vmGet(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientGetOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	vm := c.vms[strings.ToLower(name)]
	if vm == nil {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientGetResponse{VirtualMachine: *vm}, nil)
	return
}

// vmDelete removes the VM and, as Azure does, whatever it references with
// DeleteOption Delete.
func (c *cloud) vmDelete(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(name)
	vm := c.vms[key]
	if vm == nil {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	delete(c.vms, key)
	if d := vm.Properties.StorageProfile.OSDisk; d != nil && d.DeleteOption != nil && *d.DeleteOption == armcompute.DiskDeleteOptionTypesDelete {
		delete(c.disks, strings.ToLower(*d.Name))
	} else if d != nil {
		c.disks[strings.ToLower(*d.Name)] = "" // detached
	}
	for _, ref := range vm.Properties.NetworkProfile.NetworkInterfaces {
		if ref.Properties == nil || ref.Properties.DeleteOption == nil || *ref.Properties.DeleteOption != armcompute.DeleteOptionsDelete {
			continue
		}
		nicKey := lastSeg(*ref.ID)
		if nic := c.nics[nicKey]; nic != nil {
			delete(c.nics, nicKey)
			if pip := nic.Properties.IPConfigurations[0].Properties.PublicIPAddress; pip != nil && pip.Properties != nil &&
				pip.Properties.DeleteOption != nil && *pip.Properties.DeleteOption == armnetwork.DeleteOptionsDelete {
				delete(c.ips, lastSeg(*pip.ID))
			}
		}
	}
	for range c.pollSteps {
		resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	resp.SetTerminalResponse(http.StatusOK, armcompute.VirtualMachinesClientDeleteResponse{}, nil)
	return
}

func (c *cloud) vmList(rg string, _ *armcompute.VirtualMachinesClientListOptions) (resp azfake.PagerResponder[armcompute.VirtualMachinesClientListResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var page armcompute.VirtualMachinesClientListResponse
	page.Value = []*armcompute.VirtualMachine{}
	for _, vm := range c.vms {
		page.Value = append(page.Value, vm)
	}
	resp.AddPage(http.StatusOK, page, nil)
	return
}

func (c *cloud) diskDelete(_ context.Context, rg, name string, _ *armcompute.DisksClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.DisksClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(name)
	owner, ok := c.disks[key]
	switch {
	case !ok:
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	case owner != "" && c.vms[owner] != nil:
		errResp.SetResponseError(http.StatusConflict, "OperationNotAllowed")
		return
	}
	delete(c.disks, key)
	resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientDeleteResponse{}, nil)
	return
}

func (c *cloud) diskUpdate(_ context.Context, rg, name string, d armcompute.DiskUpdate, _ *armcompute.DisksClientBeginUpdateOptions) (resp azfake.PollerResponder[armcompute.DisksClientUpdateResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(name)
	if _, ok := c.disks[key]; !ok {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	c.diskTags[key] = d.Tags
	resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientUpdateResponse{Disk: armcompute.Disk{Name: &name, Tags: d.Tags}}, nil)
	return
}

// --- network ---

func (c *cloud) networkServer() *networkfake.ServerFactory {
	return &networkfake.ServerFactory{
		InterfacesServer: networkfake.InterfacesServer{
			BeginCreateOrUpdate: c.nicCreate,
			BeginDelete:         c.nicDelete,
			Get:                 c.nicGet,
		},
		PublicIPAddressesServer: networkfake.PublicIPAddressesServer{
			BeginCreateOrUpdate: c.ipCreate,
			BeginDelete:         c.ipDelete,
			Get:                 c.ipGet,
		},
		SubnetsServer: networkfake.SubnetsServer{
			Get: func(_ context.Context, rg, vnet, subnet string, _ *armnetwork.SubnetsClientGetOptions) (resp azfake.Responder[armnetwork.SubnetsClientGetResponse], errResp azfake.ErrorResponder) {
				if rg != "net-rg" || vnet != "vnet" || subnet != "pods" {
					errResp.SetResponseError(http.StatusNotFound, "NotFound")
					return
				}
				resp.SetResponse(http.StatusOK, armnetwork.SubnetsClientGetResponse{Subnet: armnetwork.Subnet{ID: to.Ptr(testSubnet), Name: to.Ptr("pods")}}, nil)
				return
			},
		},
	}
}

func (c *cloud) nicCreate(_ context.Context, rg, name string, nic armnetwork.Interface, _ *armnetwork.InterfacesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.InterfacesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nicReqs = append(c.nicReqs, nic)
	key := strings.ToLower(name)
	ipc := nic.Properties.IPConfigurations[0].Properties
	if pip := ipc.PublicIPAddress; pip != nil && c.ips[lastSeg(*pip.ID)] == nil {
		errResp.SetResponseError(http.StatusBadRequest, "InvalidResourceReference")
		return
	}
	addr := ""
	if old := c.nics[key]; old != nil {
		addr = *old.Properties.IPConfigurations[0].Properties.PrivateIPAddress
	} else {
		c.nextIP++
		addr = fmt.Sprintf("10.0.%d.%d", c.nextIP/250, c.nextIP%250+4)
	}
	stored := clone(&nic)
	stored.ID = to.Ptr(rid("Microsoft.Network/networkInterfaces", name))
	stored.Name = &name
	stored.Properties.IPConfigurations[0].Properties.PrivateIPAddress = &addr
	c.nics[key] = stored
	for range c.pollSteps {
		resp.AddNonTerminalResponse(http.StatusCreated, nil)
	}
	resp.SetTerminalResponse(http.StatusOK, armnetwork.InterfacesClientCreateOrUpdateResponse{Interface: *stored}, nil)
	return
}

func (c *cloud) nicGet(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (resp azfake.Responder[armnetwork.InterfacesClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nic := c.nics[strings.ToLower(name)]
	if nic == nil {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armnetwork.InterfacesClientGetResponse{Interface: *nic}, nil)
	return
}

// nicDelete refuses, as Azure does, to delete a NIC a VM still uses.
func (c *cloud) nicDelete(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientBeginDeleteOptions) (resp azfake.PollerResponder[armnetwork.InterfacesClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(name)
	if c.nics[key] == nil {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	for _, vm := range c.vms {
		if lastSeg(*vm.Properties.NetworkProfile.NetworkInterfaces[0].ID) == key {
			errResp.SetResponseError(http.StatusBadRequest, "NicInUse")
			return
		}
	}
	delete(c.nics, key)
	resp.SetTerminalResponse(http.StatusOK, armnetwork.InterfacesClientDeleteResponse{}, nil)
	return
}

func (c *cloud) ipCreate(_ context.Context, rg, name string, ip armnetwork.PublicIPAddress, _ *armnetwork.PublicIPAddressesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armnetwork.PublicIPAddressesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ipReqs = append(c.ipReqs, ip)
	key := strings.ToLower(name)
	stored := clone(&ip)
	stored.ID = to.Ptr(rid("Microsoft.Network/publicIPAddresses", name))
	stored.Name = &name
	if old := c.ips[key]; old != nil {
		stored.Properties.IPAddress = old.Properties.IPAddress
	} else {
		c.nextIP++
		stored.Properties.IPAddress = to.Ptr(fmt.Sprintf("203.0.113.%d", c.nextIP%250+1))
	}
	c.ips[key] = stored
	resp.SetTerminalResponse(http.StatusOK, armnetwork.PublicIPAddressesClientCreateOrUpdateResponse{PublicIPAddress: *stored}, nil)
	return
}

func (c *cloud) ipGet(_ context.Context, rg, name string, _ *armnetwork.PublicIPAddressesClientGetOptions) (resp azfake.Responder[armnetwork.PublicIPAddressesClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ip := c.ips[strings.ToLower(name)]
	if ip == nil {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armnetwork.PublicIPAddressesClientGetResponse{PublicIPAddress: *ip}, nil)
	return
}

// ipDelete refuses to delete an address a NIC still holds.
func (c *cloud) ipDelete(_ context.Context, rg, name string, _ *armnetwork.PublicIPAddressesClientBeginDeleteOptions) (resp azfake.PollerResponder[armnetwork.PublicIPAddressesClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(name)
	if c.ips[key] == nil {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	for _, nic := range c.nics {
		if pip := nic.Properties.IPConfigurations[0].Properties.PublicIPAddress; pip != nil && lastSeg(*pip.ID) == key {
			errResp.SetResponseError(http.StatusBadRequest, "PublicIPAddressCannotBeDeleted")
			return
		}
	}
	delete(c.ips, key)
	resp.SetTerminalResponse(http.StatusOK, armnetwork.PublicIPAddressesClientDeleteResponse{}, nil)
	return
}

// --- transport ---

// router sends each request to the compute or network fake. Every new
// request gets a fresh fake transport and a long-running operation keeps
// its own until it ends: the fakes key operations by URL path and keep a
// failed or abandoned one, which would answer the next create of the same
// name.
type router struct {
	c   *cloud
	mu  sync.Mutex
	ops map[string]policy.Transporter
}

const pollSuffix = "/get/fake/status"

func (r *router) Do(req *http.Request) (*http.Response, error) {
	api, _ := req.Context().Value(runtime.CtxAPINameKey{}).(string)
	polling := strings.HasSuffix(req.URL.Path, pollSuffix)
	c := r.c
	if c.onRequest != nil {
		c.onRequest(api, req)
	}
	if !polling {
		c.mu.Lock()
		c.calls[api]++
		var hit *httpFault
		for _, f := range c.faults {
			if f.api == api && f.times > 0 {
				f.times--
				hit = f
				break
			}
		}
		c.mu.Unlock()
		if hit != nil {
			return hit.response(req), nil
		}
	}
	key := api + " " + strings.TrimSuffix(req.URL.Path, pollSuffix)
	var tr policy.Transporter
	if polling {
		r.mu.Lock()
		tr = r.ops[key]
		r.mu.Unlock()
	}
	if tr == nil {
		if strings.Contains(req.URL.Path, "/providers/Microsoft.Network/") {
			tr = networkfake.NewServerFactoryTransport(c.networkServer())
		} else {
			tr = computefake.NewServerFactoryTransport(c.computeServer())
		}
	}
	resp, err := tr.Do(req)
	r.mu.Lock()
	if err == nil && resp.Header.Get("Fake-Poller-Status") == "InProgress" {
		r.ops[key] = tr
	} else {
		delete(r.ops, key)
	}
	r.mu.Unlock()
	return resp, err
}

func (f *httpFault) response(req *http.Request) *http.Response {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": f.code, "message": f.message}})
	h := http.Header{"Content-Type": {"application/json"}}
	for k, v := range f.header {
		h[k] = v
	}
	return &http.Response{
		StatusCode:    f.status,
		Status:        fmt.Sprintf("%d %s", f.status, http.StatusText(f.status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(string(body))),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// --- provider wiring ---

func testConfig() *Config {
	return &Config{
		SubscriptionID: testSub,
		Region:         testRegion,
		ResourceGroup:  testRG,
		SubnetID:       testSubnet,
		ImageID:        testImage,
		NSGID:          testNSG,
		InstanceSize:   DefaultInstanceSize,
		InstanceSizes:  []string{"Standard_DC2as_v5", "Standard_DC4as_v5", "Standard_DC2es_v5"},
		SSHUsername:    DefaultSSHUsername,
		Tags:           map[string]string{"team": "pods"},
	}
}

// newTestProvider builds a provider whose SDK clients talk to c.
func newTestProvider(t testing.TB, c *cloud, cfg *Config) *Provider {
	t.Helper()
	if cfg == nil {
		cfg = testConfig()
	}
	p, err := New(context.Background(), cfg,
		WithClientOptions(&arm.ClientOptions{ClientOptions: policy.ClientOptions{Transport: c.router}}),
		WithCredential(&azfake.TokenCredential{}),
		WithPollInterval(5*time.Millisecond),
		WithSSHPublicKey("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ test"),
		WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}
