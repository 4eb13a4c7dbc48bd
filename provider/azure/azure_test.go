package azure

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/providertest"
)

const (
	apiVMCreate  = "VirtualMachinesClient.BeginCreateOrUpdate"
	apiVMGet     = "VirtualMachinesClient.Get"
	apiNICCreate = "InterfacesClient.BeginCreateOrUpdate"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var reqSeq struct {
	sync.Mutex
	n int
}

func testRequest(t testing.TB) provider.CreateRequest {
	t.Helper()
	reqSeq.Lock()
	reqSeq.n++
	sid := fmt.Sprintf("%08x0000feedface", reqSeq.n)
	reqSeq.Unlock()
	name, err := provider.VMName("web", sid)
	if err != nil {
		t.Fatal(err)
	}
	return provider.CreateRequest{
		Name:      name,
		SandboxID: sid,
		Tags: provider.Tags(provider.Owner{ClusterID: "c1", Node: "node-a", SandboxID: sid,
			PodNamespace: "default", PodName: "web", PodUID: "uid-1"}, nil),
		UserData:      []byte(`{"version":1,"sandbox_id":"` + sid + `"}`),
		InstanceTypes: []string{"Standard_DC2as_v5", "Standard_DC4as_v5"},
	}
}

func assertClean(t *testing.T, c *cloud) {
	t.Helper()
	if left := c.leftovers(); len(left) != 0 {
		t.Fatalf("resources left behind: %v", left)
	}
}

func TestCreateConfidentialVM(t *testing.T) {
	c := newCloud(t)
	cfg := testConfig()
	cfg.Zone = "2"
	cfg.SecureBoot = true
	cfg.PublicIP = true
	cfg.RootVolumeSizeGiB = 40
	p := newTestProvider(t, c, cfg)
	req := testRequest(t)
	inst, err := p.Create(testCtx(t), req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if want := rid("Microsoft.Compute/virtualMachines", req.Name); inst.ID != want {
		t.Errorf("ID = %s, want %s", inst.ID, want)
	}
	if inst.InstanceType != "Standard_DC2as_v5" {
		t.Errorf("InstanceType = %s", inst.InstanceType)
	}
	// Public address first, then the private one.
	if len(inst.IPs) != 2 || !inst.IPs[0].Is4() || !strings.HasPrefix(inst.IPs[0].String(), "203.0.113.") || !strings.HasPrefix(inst.IPs[1].String(), "10.0.") {
		t.Errorf("IPs = %v, want [public, private]", inst.IPs)
	}
	if !provider.Matches(inst.Tags, req.Tags) {
		t.Errorf("instance tags %v lack %v", inst.Tags, req.Tags)
	}

	bodies := c.vmBodies()
	if len(bodies) != 1 {
		t.Fatalf("%d VM create requests, want 1", len(bodies))
	}
	vm := bodies[0]
	pr := vm.Properties
	sp := pr.SecurityProfile
	if sp == nil || *sp.SecurityType != armcompute.SecurityTypesConfidentialVM || !*sp.UefiSettings.VTpmEnabled || !*sp.UefiSettings.SecureBootEnabled {
		t.Errorf("security profile = %+v", sp)
	}
	disk := pr.StorageProfile.OSDisk
	if *disk.ManagedDisk.SecurityProfile.SecurityEncryptionType != armcompute.SecurityEncryptionTypesVMGuestStateOnly ||
		*disk.ManagedDisk.StorageAccountType != armcompute.StorageAccountTypesPremiumLRS ||
		*disk.DeleteOption != armcompute.DiskDeleteOptionTypesDelete || *disk.Name != req.Name+"-osdisk" || *disk.DiskSizeGB != 40 {
		t.Errorf("OS disk = %+v / %+v", disk, disk.ManagedDisk)
	}
	nicRef := pr.NetworkProfile.NetworkInterfaces[0]
	if *nicRef.Properties.DeleteOption != armcompute.DeleteOptionsDelete || *nicRef.ID != rid("Microsoft.Network/networkInterfaces", req.Name+"-nic") {
		t.Errorf("NIC reference = %s %+v", *nicRef.ID, nicRef.Properties)
	}
	if *pr.StorageProfile.ImageReference.ID != testImage {
		t.Errorf("image = %+v", pr.StorageProfile.ImageReference)
	}
	ud, err := base64.StdEncoding.DecodeString(*pr.UserData)
	if err != nil || string(ud) != string(req.UserData) {
		t.Errorf("user data = %q (%v), want %q", ud, err, req.UserData)
	}
	if len(vm.Zones) != 1 || *vm.Zones[0] != "2" {
		t.Errorf("zones = %v", vm.Zones)
	}
	if *pr.HardwareProfile.VMSize != "Standard_DC2as_v5" || *vm.Location != testRegion {
		t.Errorf("size %s location %s", *pr.HardwareProfile.VMSize, *vm.Location)
	}
	if !*pr.OSProfile.LinuxConfiguration.DisablePasswordAuthentication || pr.OSProfile.AdminPassword != nil {
		t.Error("password login is not disabled")
	}
	wantTags := map[string]string{"peerpod.io_managed": "true", "peerpod.io_sandbox-id": req.SandboxID, "peerpod.io_node": "node-a", "team": "pods"}
	checkTags := func(what string, got map[string]*string) {
		t.Helper()
		for k, v := range wantTags {
			if got[k] == nil || *got[k] != v {
				t.Errorf("%s tag %s = %v, want %s", what, k, got[k], v)
			}
		}
		for k := range got {
			if strings.Contains(k, "/") {
				t.Errorf("%s tag key %q contains '/'", what, k)
			}
		}
	}
	checkTags("VM", vm.Tags)

	c.mu.Lock()
	nic, ip := c.nicReqs[0], c.ipReqs[0]
	c.mu.Unlock()
	checkTags("NIC", nic.Tags)
	c.mu.Lock()
	diskTags := c.diskTags[strings.ToLower(req.Name+"-osdisk")]
	c.mu.Unlock()
	checkTags("OS disk", diskTags)
	checkTags("public IP", ip.Tags)
	ipc := nic.Properties.IPConfigurations[0].Properties
	if *ipc.Subnet.ID != testSubnet || *nic.Properties.NetworkSecurityGroup.ID != testNSG {
		t.Errorf("NIC subnet %s nsg %s", *ipc.Subnet.ID, *nic.Properties.NetworkSecurityGroup.ID)
	}
	if ipc.PublicIPAddress == nil || *ipc.PublicIPAddress.Properties.DeleteOption != armnetwork.DeleteOptionsDelete {
		t.Errorf("NIC public IP = %+v", ipc.PublicIPAddress)
	}
	if len(ip.Zones) != 1 || *ip.Zones[0] != "2" || *ip.SKU.Name != armnetwork.PublicIPAddressSKUNameStandard {
		t.Errorf("public IP zones %v sku %v", ip.Zones, ip.SKU)
	}

	if err := p.Delete(testCtx(t), inst.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertClean(t, c)
}

func TestCreateDisableCVM(t *testing.T) {
	c := newCloud(t)
	cfg := testConfig()
	cfg.DisableCVM = true
	cfg.ImageID = "/CommunityGalleries/cococommunity-42/Images/peerpod/Versions/1.2.3"
	p := newTestProvider(t, c, cfg)
	inst, err := p.Create(testCtx(t), testRequest(t))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	vm := c.vmBodies()[0]
	if vm.Properties.SecurityProfile != nil || vm.Properties.StorageProfile.OSDisk.ManagedDisk.SecurityProfile != nil {
		t.Errorf("DISABLECVM VM still has a confidential profile: %+v", vm.Properties.SecurityProfile)
	}
	if ref := vm.Properties.StorageProfile.ImageReference; ref.CommunityGalleryImageID == nil || *ref.CommunityGalleryImageID != cfg.ImageID || ref.ID != nil {
		t.Errorf("image reference = %+v", ref)
	}
	if vm.Zones != nil {
		t.Errorf("zones = %v with no AZURE_ZONE", vm.Zones)
	}
	if len(inst.IPs) != 1 || !inst.IPs[0].IsPrivate() {
		t.Errorf("IPs = %v, want only the private address", inst.IPs)
	}
	if err := p.Delete(testCtx(t), inst.ID); err != nil {
		t.Fatal(err)
	}
	assertClean(t, c)
}

func TestCreateRefusedBeforeAnyCall(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*provider.CreateRequest)
		want string
	}{
		{"user data too large", func(r *provider.CreateRequest) { r.UserData = make([]byte, 49153) }, "Azure allows at most 65536 base64 bytes"},
		{"empty name", func(r *provider.CreateRequest) { r.Name = "" }, "is not a valid Azure VM name"},
		{"name with slash", func(r *provider.CreateRequest) { r.Name = "a/b" }, "is not a valid Azure VM name"},
		{"size not allowed", func(r *provider.CreateRequest) { r.InstanceTypes = []string{"Standard_D64s_v5"} }, "size Standard_D64s_v5 is neither AZURE_INSTANCE_SIZE nor in AZURE_INSTANCE_SIZES"},
		{"tag Azure refuses", func(r *provider.CreateRequest) { r.Tags["x%y"] = "1" }, `tag key "x%y" contains a character Azure refuses`},
		{"image override bad", func(r *provider.CreateRequest) { r.Image = "ubuntu" }, `AZURE_IMAGE_ID: "ubuntu" is neither`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			p := newTestProvider(t, c, nil)
			req := testRequest(t)
			tc.mod(&req)
			_, err := p.Create(testCtx(t), req)
			if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create: %v, want ErrInvalidConfig containing %q", err, tc.want)
			}
			c.mu.Lock()
			n := len(c.calls)
			c.mu.Unlock()
			if n != 0 {
				t.Errorf("a refused create made cloud calls: %v", c.calls)
			}
		})
	}
	// Exactly at the limit is fine: 49152 bytes are 65536 in base64.
	c := newCloud(t)
	p := newTestProvider(t, c, nil)
	req := testRequest(t)
	req.UserData = make([]byte, 49152)
	if _, err := p.Create(testCtx(t), req); err != nil {
		t.Fatalf("Create with 64 KiB of base64 user data: %v", err)
	}
}

func TestThrottledCreate(t *testing.T) {
	c := newCloud(t)
	p := newTestProvider(t, c, nil)
	c.inject(&httpFault{api: apiVMCreate, times: 1, status: http.StatusTooManyRequests, code: "OperationNotAllowed",
		message: "The server rejected the request because too many requests have been received for this subscription.",
		header:  http.Header{"Retry-After": {"7"}}})
	_, err := p.Create(testCtx(t), testRequest(t))
	if !errors.Is(err, provider.ErrThrottled) {
		t.Fatalf("Create: %v, want ErrThrottled", err)
	}
	if d, ok := provider.RetryAfter(err); !ok || d != 7*time.Second {
		t.Errorf("RetryAfter = %v %v, want 7s", d, ok)
	}
	if !provider.Retryable(err) {
		t.Error("a throttled error is not retryable")
	}
	if n := c.count(apiVMCreate); n != 1 {
		t.Errorf("%d VM create requests: the SDK retried the 429 itself", n)
	}
	assertClean(t, c) // the NIC made before the throttled call is gone
}

func TestCapacityFallback(t *testing.T) {
	tests := []struct {
		name  string
		fault *vmFault
		http  *httpFault
	}{
		{"AllocationFailed after accept", &vmFault{status: http.StatusOK, code: "AllocationFailed", async: true}, nil},
		{"ZonalAllocationFailed after accept", &vmFault{status: http.StatusOK, code: "ZonalAllocationFailed", async: true}, nil},
		{"OverconstrainedAllocationRequest", &vmFault{status: http.StatusOK, code: "OverconstrainedAllocationRequest", async: true}, nil},
		{"SkuNotAvailable on PUT", &vmFault{status: http.StatusConflict, code: "SkuNotAvailable"}, nil},
		{"QuotaExceeded on PUT", &vmFault{status: http.StatusConflict, code: "QuotaExceeded"}, nil},
		{"core quota as OperationNotAllowed", nil, &httpFault{api: apiVMCreate, times: 1, status: http.StatusConflict, code: "OperationNotAllowed",
			message: "Operation could not be completed as it results in exceeding approved standardDCASv5Family Cores quota."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			c.pollSteps = 1
			if tc.fault != nil {
				c.vmFault = func(_, size string) *vmFault {
					if size == "Standard_DC2as_v5" {
						return tc.fault
					}
					return nil
				}
			}
			if tc.http != nil {
				c.inject(tc.http)
			}
			p := newTestProvider(t, c, nil)
			req := testRequest(t)
			inst, err := p.Create(testCtx(t), req)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if inst.InstanceType != "Standard_DC4as_v5" {
				t.Errorf("InstanceType = %s, want the fallback Standard_DC4as_v5", inst.InstanceType)
			}
			want := []string{"disk/" + req.Name + "-osdisk", "nic/" + req.Name + "-nic", "vm/" + req.Name}
			if left := c.leftovers(); !slices.Equal(left, want) {
				t.Errorf("resources = %v, want %v", left, want)
			}
			if err := p.Delete(testCtx(t), inst.ID); err != nil {
				t.Fatal(err)
			}
			assertClean(t, c)
		})
	}
}

func TestCapacityExhausted(t *testing.T) {
	c := newCloud(t)
	c.vmFault = func(_, size string) *vmFault {
		if size == "Standard_DC2as_v5" {
			return &vmFault{status: http.StatusConflict, code: "SkuNotAvailable"}
		}
		return &vmFault{status: http.StatusOK, code: "AllocationFailed", async: true}
	}
	p := newTestProvider(t, c, nil)
	req := testRequest(t)
	req.InstanceTypes = []string{"Standard_DC2as_v5", "Standard_DC4as_v5", "Standard_DC2es_v5"}
	_, err := p.Create(testCtx(t), req)
	if !errors.Is(err, provider.ErrCapacity) {
		t.Fatalf("Create: %v, want ErrCapacity", err)
	}
	if !strings.Contains(err.Error(), "Standard_DC2as_v5, Standard_DC4as_v5, Standard_DC2es_v5") {
		t.Errorf("error does not name every size tried: %v", err)
	}
	assertClean(t, c)
}

func TestFailureAfterNICCleansUp(t *testing.T) {
	tests := []struct {
		name  string
		fault *vmFault
		class error
	}{
		{"invalid parameter on PUT", &vmFault{status: http.StatusBadRequest, code: "InvalidParameter"}, provider.ErrInvalidConfig},
		{"conflict on PUT", &vmFault{status: http.StatusConflict, code: "OperationNotAllowed"}, provider.ErrConflict},
		{"internal error after accept", &vmFault{status: http.StatusOK, code: "InternalExecutionError", async: true}, provider.ErrTransient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			cfg := testConfig()
			cfg.PublicIP = true
			c.vmFault = func(string, string) *vmFault { return tc.fault }
			p := newTestProvider(t, c, cfg)
			_, err := p.Create(testCtx(t), testRequest(t))
			if !errors.Is(err, tc.class) {
				t.Fatalf("Create: %v, want %v", err, tc.class)
			}
			if n := c.count(apiNICCreate); n != 1 {
				t.Errorf("%d NIC creates, want 1", n)
			}
			if n := c.count(apiVMCreate); n != 1 {
				t.Errorf("%d VM creates, want 1 (no fallback for %v)", n, tc.class)
			}
			assertClean(t, c) // NIC, public IP and any Failed VM are gone
		})
	}
}

func TestCancelMidPoll(t *testing.T) {
	c := newCloud(t)
	c.pollSteps = 5
	ctx, cancel := context.WithCancel(testCtx(t))
	var polls int
	var mu sync.Mutex
	c.onRequest = func(api string, r *http.Request) {
		if api == apiVMCreate && strings.HasSuffix(r.URL.Path, pollSuffix) {
			mu.Lock()
			polls++
			mu.Unlock()
			cancel()
		}
	}
	p := newTestProvider(t, c, nil)
	req := testRequest(t)
	_, err := p.Create(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create: %v, want context.Canceled", err)
	}
	mu.Lock()
	if polls == 0 {
		t.Error("the VM create was never polled")
	}
	mu.Unlock()
	c.onRequest = nil
	assertClean(t, c)
	if err := p.Delete(testCtx(t), req.Name); err != nil {
		t.Fatalf("Delete after a cancelled create: %v", err)
	}
	assertClean(t, c)
}

func TestDeleteAlreadyGone(t *testing.T) {
	c := newCloud(t)
	p := newTestProvider(t, c, nil)
	id := rid("Microsoft.Compute/virtualMachines", "podvm-never-12345678")
	for i := 0; i < 2; i++ {
		if err := p.Delete(testCtx(t), id); err != nil {
			t.Fatalf("Delete #%d of a VM that never existed: %v", i+1, err)
		}
	}
	if err := p.Delete(testCtx(t), "/subscriptions/x/not-an-id"); !errors.Is(err, provider.ErrInvalidConfig) {
		t.Errorf("Delete of a malformed id: %v", err)
	}
}

// A VM deleted by someone else leaves its NIC, public IP and disk when they
// were not made to go with it; Delete finds them by name.
func TestDeleteSweepsLeftovers(t *testing.T) {
	c := newCloud(t)
	cfg := testConfig()
	cfg.PublicIP = true
	p := newTestProvider(t, c, cfg)
	req := testRequest(t)
	if _, err := p.Create(testCtx(t), req); err != nil {
		t.Fatal(err)
	}
	// Remove the VM as a portal user would, keeping its dependents.
	c.mu.Lock()
	delete(c.vms, strings.ToLower(req.Name))
	c.disks[strings.ToLower(req.Name+"-osdisk")] = ""
	c.mu.Unlock()
	if left := c.leftovers(); len(left) != 3 {
		t.Fatalf("setup: %v", left)
	}
	if err := p.Delete(testCtx(t), req.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertClean(t, c)
}

func TestRetriedCreateReusesResources(t *testing.T) {
	c := newCloud(t)
	p := newTestProvider(t, c, nil)
	req := testRequest(t)
	first, err := p.Create(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	// A new provider (peerpodd restarted) retries the same create.
	second, err := newTestProvider(t, c, nil).Create(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || !slices.Equal(second.IPs, first.IPs) {
		t.Errorf("retried create = %s %v, first = %s %v", second.ID, second.IPs, first.ID, first.IPs)
	}
	if n := c.count(apiVMCreate); n != 1 {
		t.Errorf("%d VM creates, want 1", n)
	}
	if n := len(c.leftovers()); n != 3 {
		t.Errorf("resources after retry: %v", c.leftovers())
	}
}

// A create that died after making its NIC is retried: the same NIC (same
// name, same address) is used, not a second one.
func TestRetryAfterCrashReusesNIC(t *testing.T) {
	c := newCloud(t)
	p := newTestProvider(t, c, nil)
	req := testRequest(t)
	c.inject(&httpFault{api: apiVMCreate, times: 1, status: http.StatusServiceUnavailable, code: "ServiceUnavailable"})
	// Simulate the crash: make the NIC directly, as the first attempt did.
	pl, err := p.plan(req)
	if err != nil {
		t.Fatal(err)
	}
	nic, err := p.createNIC(testCtx(t), pl, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.faults = nil
	c.mu.Unlock()
	inst, err := p.Create(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr(*nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress)
	if len(inst.IPs) != 1 || inst.IPs[0] != want {
		t.Errorf("IPs = %v, want the first attempt's NIC address %s", inst.IPs, want)
	}
	c.mu.Lock()
	nics := len(c.nics)
	c.mu.Unlock()
	if nics != 1 {
		t.Errorf("%d NICs after the retry, want 1", nics)
	}
}

func TestConcurrentCreatesOfOneName(t *testing.T) {
	c := newCloud(t)
	c.latency = 50 * time.Millisecond
	p := newTestProvider(t, c, nil)
	req := testRequest(t)
	var wg sync.WaitGroup
	ids := make([]string, 4)
	errs := make([]error, 4)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst, err := p.Create(testCtx(t), req)
			errs[i] = err
			if err == nil {
				ids[i] = inst.ID
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || ids[i] != ids[0] {
			t.Errorf("create %d: %s %v", i, ids[i], err)
		}
	}
	if n := c.count(apiVMCreate); n != 1 {
		t.Errorf("%d VM creates for one name", n)
	}
}

func TestListMapsTagsBack(t *testing.T) {
	c := newCloud(t)
	p := newTestProvider(t, c, nil)
	a, b := testRequest(t), testRequest(t)
	b.Tags[provider.TagNode] = "node-b"
	for _, r := range []provider.CreateRequest{a, b} {
		if _, err := p.Create(testCtx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.List(testCtx(t), provider.NodeSelector("c1", "node-a"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != a.Name || got[0].Tags[provider.TagSandbox] != a.SandboxID || got[0].Tags["team"] != "pods" {
		t.Fatalf("List(node-a) = %+v", got)
	}
	if got[0].Created.IsZero() || got[0].InstanceType != "Standard_DC2as_v5" {
		t.Errorf("listed instance = %+v", got[0])
	}
}

func TestValidate(t *testing.T) {
	c := newCloud(t)
	if err := newTestProvider(t, c, nil).Validate(testCtx(t)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"subnet missing", func(c *Config) { c.SubnetID = strings.Replace(testSubnet, "/pods", "/other", 1) }, "AZURE_SUBNET_ID: subnet"},
		{"size not in region", func(c *Config) { c.InstanceSize = "Standard_DC96as_v5" }, "AZURE_INSTANCE_SIZE: Standard_DC96as_v5 is not offered in region eastus2"},
		{"allow-list size not in region", func(c *Config) { c.InstanceSizes = []string{"Standard_EC2as_v5"} }, "AZURE_INSTANCE_SIZES: Standard_EC2as_v5 is not offered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(cfg)
			err := newTestProvider(t, c, cfg).Validate(testCtx(t))
			if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig containing %q", err, tc.want)
			}
		})
	}
}

func TestInstanceTypes(t *testing.T) {
	c := newCloud(t)
	types, err := newTestProvider(t, c, nil).InstanceTypes(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := provider.InstanceType{Name: "Standard_DC4as_v5", VCPUs: 4, MemoryMiB: 16384}
	if len(types) != 3 || types[1] != want {
		t.Fatalf("InstanceTypes = %+v", types)
	}
	sel, err := provider.SelectInstanceTypes(types, provider.Resources{VCPUs: 3, MemoryMiB: 4096}, "", testConfig().InstanceSizes, DefaultInstanceSize)
	if err != nil || len(sel) == 0 || sel[0] != "Standard_DC4as_v5" {
		t.Errorf("SelectInstanceTypes on Azure sizes = %v, %v", sel, err)
	}
}

func TestClassify(t *testing.T) {
	resp := func(status int, code, msg string, hdr map[string]string) error {
		f := &httpFault{status: status, code: code, message: msg, header: http.Header{}}
		for k, v := range hdr {
			f.header.Set(k, v)
		}
		r, _ := http.NewRequest(http.MethodPut, "https://management.azure.com/x", nil)
		return runtime.NewResponseError(f.response(r))
	}
	tests := []struct {
		name  string
		err   error
		class error
		retry time.Duration
	}{
		{"429 seconds", resp(429, "TooManyRequests", "", map[string]string{"Retry-After": "12"}), provider.ErrThrottled, 12 * time.Second},
		{"429 ms", resp(429, "", "", map[string]string{"retry-after-ms": "1500"}), provider.ErrThrottled, 1500 * time.Millisecond},
		{"throttled code", resp(409, "SubscriptionRequestsThrottled", "", nil), provider.ErrThrottled, 0},
		{"SkuNotAvailable 409", resp(409, "SkuNotAvailable", "", nil), provider.ErrCapacity, 0},
		{"quota text", resp(409, "OperationNotAllowed", "exceeding approved Total Regional Cores quota", nil), provider.ErrCapacity, 0},
		{"OperationNotAllowed other", resp(409, "OperationNotAllowed", "VM is being deleted", nil), provider.ErrConflict, 0},
		{"404", resp(404, "ResourceNotFound", "", nil), provider.ErrNotFound, 0},
		{"400 InvalidParameter", resp(400, "InvalidParameter", "bad", nil), provider.ErrInvalidConfig, 0},
		{"403", resp(403, "AuthorizationFailed", "no write on Microsoft.Compute/virtualMachines", nil), provider.ErrInvalidConfig, 0},
		{"500", resp(500, "InternalServerError", "", nil), provider.ErrTransient, 0},
		{"network", errors.New("dial tcp: connection refused"), provider.ErrTransient, 0},
		{"deadline", context.DeadlineExceeded, provider.ErrTransient, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := classify("op", tc.err)
			if got := provider.ClassOf(err); got != tc.class {
				t.Fatalf("classify = %v (class %v), want %v", err, got, tc.class)
			}
			if d, _ := provider.RetryAfter(err); d != tc.retry {
				t.Errorf("RetryAfter = %v, want %v", d, tc.retry)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestAuthorizedKeyFormat(t *testing.T) {
	// No options: DefaultAzureCredential and a fresh SSH key, no cloud call.
	p, err := New(context.Background(), testConfig())
	if err != nil {
		t.Fatalf("New with the default credential: %v", err)
	}
	f := strings.Fields(p.sshKey)
	if len(f) != 2 || f[0] != "ssh-rsa" {
		t.Fatalf("key = %q", p.sshKey)
	}
	b, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(b) < 256+11 || string(b[4:11]) != "ssh-rsa" {
		t.Fatalf("key blob: %v (%d bytes)", err, len(b))
	}
}

func TestConformance(t *testing.T) {
	c := newCloud(t)
	providertest.Run(t, func(t *testing.T) provider.Provider { return newTestProvider(t, c, nil) })
}
