package aws

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/providertest"
	ec2test "github.com/peerpod/peerpod/test/ec2"
)

const (
	testKeyID  = "AKIDPEERPODTEST"
	testSecret = "peerpod-test-secret-key"
)

func TestMain(m *testing.M) {
	// No test reaches AWS: every client has a loopback endpoint and static
	// keys; IMDS is off unless a test serves its own on loopback.
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Unsetenv("AWS_PROFILE")
	os.Exit(m.Run())
}

type fixture struct {
	srv  *ec2test.Server
	p    *Provider
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() *Config {
	return &Config{
		ImageID:          ec2test.DefaultImage.ID,
		InstanceType:     DefaultInstanceType,
		Region:           "us-east-2",
		SubnetID:         "subnet-0123456789abcdef0",
		SecurityGroupIDs: []string{"sg-0123456789abcdef0", "sg-0fedcba9876543210"},
		RootVolumeGiB:    DefaultRootVolumeGiB,
		Tags:             map[string]string{"team": "peerpod"},
	}
}

// newFixture starts an endpoint and a provider on it. mutate edits the config first.
func newFixture(t *testing.T, eo ec2test.Options, mutate func(*Config), opts ...Option) *fixture {
	t.Helper()
	srv, err := ec2test.Start(eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cfg := testConfig()
	if mutate != nil {
		mutate(cfg)
	}
	logs := &syncBuffer{}
	all := append([]Option{
		WithEndpoint(srv.URL()),
		WithStaticCredentials(testKeyID, testSecret, ""),
		WithRetry(func(o *retry.StandardOptions) {
			o.MaxAttempts = 3
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		}),
		WithWaiterDelay(time.Millisecond, 10*time.Millisecond),
		WithRunningTimeout(20 * time.Second),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))),
	}, opts...)
	p, err := New(context.Background(), cfg, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), testSecret) {
			t.Errorf("logs carry the secret key")
		}
	})
	return &fixture{srv: srv, p: p, logs: logs}
}

func request(name string) provider.CreateRequest {
	sid := "sandbox-" + name
	return provider.CreateRequest{
		Name:      "podvm-" + name,
		SandboxID: sid,
		Tags:      provider.Tags(provider.Owner{ClusterID: "c1", Node: "node-1", SandboxID: sid, PodNamespace: "default", PodName: name}, nil),
		UserData:  []byte(`{"version":1,"sandbox":"` + sid + `"}`),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider {
		return newFixture(t, ec2test.Options{PendingDescribes: 1}, nil).p
	})
}

func TestConformanceWithFallbackTypes(t *testing.T) {
	providertest.RunWith(t, func(t *testing.T) provider.Provider {
		f := newFixture(t, ec2test.Options{PageSize: 1}, nil)
		f.srv.Inject("RunInstances", ec2test.Fault{Code: "InsufficientInstanceCapacity", InstanceType: "c6a.large"})
		return f.p
	}, providertest.Options{InstanceTypes: []string{"c6a.large", "m6a.large"}, Parallel: 5})
}

func TestCreateRequestParameters(t *testing.T) {
	f := newFixture(t, ec2test.Options{PendingDescribes: 2}, nil)
	req := request("params")
	inst, err := f.p.Create(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	runs := f.srv.Requests("RunInstances")
	if len(runs) != 1 {
		t.Fatalf("%d RunInstances calls", len(runs))
	}
	form := runs[0]
	want := map[string]string{
		"Version":                             "2016-11-15",
		"MinCount":                            "1",
		"MaxCount":                            "1",
		"ImageId":                             ec2test.DefaultImage.ID,
		"InstanceType":                        "m6a.large",
		"CpuOptions.AmdSevSnp":                "enabled",
		"MetadataOptions.HttpTokens":          "required",
		"MetadataOptions.HttpEndpoint":        "enabled",
		"ClientToken":                         ClientToken(req.SandboxID, req.Name, "m6a.large"),
		"SubnetId":                            "subnet-0123456789abcdef0",
		"SecurityGroupId.1":                   "sg-0123456789abcdef0",
		"SecurityGroupId.2":                   "sg-0fedcba9876543210",
		"BlockDeviceMapping.1.DeviceName":     ec2test.DefaultImage.RootDeviceName,
		"BlockDeviceMapping.1.Ebs.VolumeSize": "30",
		"UserData":                            base64.StdEncoding.EncodeToString(req.UserData),
		"TagSpecification.1.ResourceType":     "instance",
		"TagSpecification.2.ResourceType":     "volume",
		"TagSpecification.3.ResourceType":     "network-interface",
		"BlockDeviceMapping.1.Ebs.DeleteOnTermination": "true",
	}
	for k, v := range want {
		if got := form.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(form.Get("ClientToken")) > 64 {
		t.Errorf("client token longer than 64")
	}
	for _, k := range []string{"KeyName", "NetworkInterface.1.AssociatePublicIpAddress", "LaunchTemplate.LaunchTemplateName"} {
		if form.Has(k) {
			t.Errorf("unexpected %s", k)
		}
	}
	st := f.srv.Instances()[0]
	wantTags := provider.Tags(provider.Owner{}, req.Tags)
	wantTags["Name"] = req.Name
	wantTags["team"] = "peerpod"
	for _, rt := range []string{"instance", "volume", "network-interface"} {
		got := st.ResourceTags[rt]
		if !provider.Matches(got, wantTags) || len(got) != len(wantTags) {
			t.Errorf("%s tags %s, want %s", rt, provider.FormatTags(got), provider.FormatTags(wantTags))
		}
	}
	if !bytes.Equal(st.UserData, req.UserData) || !st.SevSnp || st.HTTPTokens != "required" {
		t.Errorf("instance as stored: %+v", st)
	}
	if inst.ID != st.ID || inst.Name != req.Name || inst.InstanceType != "m6a.large" || len(inst.IPs) != 1 || inst.IPs[0].String() != st.PrivateIP || inst.Created.IsZero() {
		t.Errorf("returned %+v", inst)
	}
	// The SDK's waiter polled until running: pending twice, then running.
	if n := len(f.srv.Requests("DescribeInstances")); n != 3 {
		t.Errorf("%d DescribeInstances calls, want 3", n)
	}
	// The AMI's root device was asked once and is cached.
	if _, err := f.p.Create(ctxT(t), request("params2")); err != nil {
		t.Fatal(err)
	}
	if n := len(f.srv.Requests("DescribeImages")); n != 1 {
		t.Errorf("%d DescribeImages calls for one AMI", n)
	}
	for _, action := range []string{"RunInstances", "DescribeInstances", "DescribeImages"} {
		for _, r := range f.srv.Requests(action) {
			if strings.Contains(r.Encode(), testSecret) {
				t.Errorf("%s parameters carry the secret", action)
			}
		}
	}
}

func TestCreateVariants(t *testing.T) {
	tests := []struct {
		name   string
		eo     ec2test.Options
		mutate func(*Config)
		req    func(provider.CreateRequest) provider.CreateRequest
		check  func(t *testing.T, f *fixture, inst *provider.Instance)
	}{
		{"DISABLECVM sends no SNP option", ec2test.Options{}, func(c *Config) { c.DisableCVM = true; c.InstanceType = "m5.large" }, nil,
			func(t *testing.T, f *fixture, inst *provider.Instance) {
				if f.srv.Requests("RunInstances")[0].Has("CpuOptions.AmdSevSnp") || inst.InstanceType != "m5.large" {
					t.Error("SNP option sent with DISABLECVM")
				}
			}},
		{"public IP on the primary interface", ec2test.Options{}, func(c *Config) { c.UsePublicIP = true; c.KeyName = "ops" }, nil,
			func(t *testing.T, f *fixture, inst *provider.Instance) {
				form := f.srv.Requests("RunInstances")[0]
				if form.Get("NetworkInterface.1.AssociatePublicIpAddress") != "true" || form.Get("NetworkInterface.1.DeviceIndex") != "0" ||
					form.Get("NetworkInterface.1.SubnetId") != "subnet-0123456789abcdef0" || form.Get("NetworkInterface.1.SecurityGroupId.2") != "sg-0fedcba9876543210" ||
					form.Has("SubnetId") || form.Get("KeyName") != "ops" {
					t.Errorf("network interface parameters: %v", form)
				}
				if len(inst.IPs) != 2 || !inst.IPs[0].IsPrivate() || inst.IPs[1].IsPrivate() {
					t.Errorf("IPs %v: want private then public", inst.IPs)
				}
			}},
		{"launch template", ec2test.Options{}, func(c *Config) { c.UseLaunchTemplate = true; c.LaunchTemplateName = "podvm-lt" }, nil,
			func(t *testing.T, f *fixture, inst *provider.Instance) {
				form := f.srv.Requests("RunInstances")[0]
				if form.Get("LaunchTemplate.LaunchTemplateName") != "podvm-lt" || form.Get("LaunchTemplate.Version") != "$Default" ||
					form.Has("ImageId") || form.Has("SubnetId") || form.Has("BlockDeviceMapping.1.DeviceName") ||
					form.Get("CpuOptions.AmdSevSnp") != "enabled" || form.Get("MetadataOptions.HttpTokens") != "required" || form.Get("TagSpecification.3.ResourceType") != "network-interface" {
					t.Errorf("launch template parameters: %v", form)
				}
				if len(f.srv.Requests("DescribeImages")) != 0 {
					t.Error("DescribeImages called with a launch template")
				}
			}},
		{"image from the request", ec2test.Options{Images: []ec2test.Image{ec2test.DefaultImage, {ID: "ami-0000000000000beef", RootDeviceName: "/dev/sda1", SizeGiB: 50}}}, nil,
			func(r provider.CreateRequest) provider.CreateRequest { r.Image = "ami-0000000000000beef"; return r },
			func(t *testing.T, f *fixture, inst *provider.Instance) {
				form := f.srv.Requests("RunInstances")[0]
				if form.Get("ImageId") != "ami-0000000000000beef" || form.Get("BlockDeviceMapping.1.DeviceName") != "/dev/sda1" || form.Get("BlockDeviceMapping.1.Ebs.VolumeSize") != "50" {
					t.Errorf("a 50 GiB image with ROOT_VOLUME_SIZE 30 keeps 50 on /dev/sda1: %v", form)
				}
			}},
		{"larger root volume", ec2test.Options{}, func(c *Config) { c.RootVolumeGiB = 100 }, nil,
			func(t *testing.T, f *fixture, inst *provider.Instance) {
				if f.srv.Instances()[0].RootVolumeGiB != 100 {
					t.Error("root volume size not applied")
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.eo, tt.mutate)
			req := request("variant")
			if tt.req != nil {
				req = tt.req(req)
			}
			inst, err := f.p.Create(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f, inst)
		})
	}
}

func TestRefusedBeforeAnyCall(t *testing.T) {
	tests := []struct {
		name string
		req  func(provider.CreateRequest) provider.CreateRequest
		want string
	}{
		{"user data over 16 KiB", func(r provider.CreateRequest) provider.CreateRequest {
			r.UserData = make([]byte, MaxUserData+1)
			return r
		}, "16384"},
		{"non-SNP type with CVM", func(r provider.CreateRequest) provider.CreateRequest {
			r.InstanceTypes = []string{"m6a.large", "m5.large"}
			return r
		}, "m5.large"},
		{"no sandbox", func(r provider.CreateRequest) provider.CreateRequest { r.SandboxID = ""; return r }, "sandbox"},
		{"reserved tag", func(r provider.CreateRequest) provider.CreateRequest {
			r.Tags = map[string]string{"aws:x": "1"}
			return r
		}, "aws:x"},
		{"tag value too long", func(r provider.CreateRequest) provider.CreateRequest {
			r.Tags = map[string]string{"k": strings.Repeat("v", 257)}
			return r
		}, "256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, ec2test.Options{}, nil)
			_, err := f.p.Create(ctxT(t), tt.req(request("refused")))
			if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v: want invalid config naming %q", err, tt.want)
			}
			if n := len(f.srv.Requests("RunInstances")); n != 0 {
				t.Fatalf("%d RunInstances calls", n)
			}
		})
	}
	// Exactly at the limit is fine.
	f := newFixture(t, ec2test.Options{}, nil)
	r := request("limit")
	r.UserData = bytes.Repeat([]byte("x"), MaxUserData)
	if _, err := f.p.Create(ctxT(t), r); err != nil {
		t.Fatalf("16 KiB of user data: %v", err)
	}
}

func TestCapacityFallback(t *testing.T) {
	for _, code := range []string{"InsufficientInstanceCapacity", "Unsupported", "InstanceLimitExceeded", "VcpuLimitExceeded"} {
		t.Run(code, func(t *testing.T) {
			f := newFixture(t, ec2test.Options{}, nil)
			f.srv.Inject("RunInstances", ec2test.Fault{Code: code, InstanceType: "m6a.large"})
			f.srv.Inject("RunInstances", ec2test.Fault{Code: code, InstanceType: "c6a.xlarge"})
			req := request("fallback")
			req.InstanceTypes = []string{"m6a.large", "c6a.xlarge", "m6a.xlarge", "r6a.large"}
			inst, err := f.p.Create(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if inst.InstanceType != "m6a.xlarge" {
				t.Fatalf("got %s, want the third candidate m6a.xlarge", inst.InstanceType)
			}
			var types []string
			for _, r := range f.srv.Requests("RunInstances") {
				types = append(types, r.Get("InstanceType"))
			}
			// One attempt per type: capacity errors are not retried in place.
			if strings.Join(types, ",") != "m6a.large,c6a.xlarge,m6a.xlarge" {
				t.Fatalf("RunInstances types %v", types)
			}
			if n := len(f.srv.Instances()); n != 1 {
				t.Fatalf("%d instances", n)
			}
		})
	}
}

func TestCapacityExhausted(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("RunInstances", ec2test.Fault{Code: "InsufficientInstanceCapacity"})
	req := request("exhausted")
	req.InstanceTypes = []string{"m6a.large", "c6a.large", "r6a.large"}
	_, err := f.p.Create(ctxT(t), req)
	if !errors.Is(err, provider.ErrCapacity) {
		t.Fatalf("want ErrCapacity, got %v", err)
	}
	for _, typ := range req.InstanceTypes {
		if !strings.Contains(err.Error(), typ) {
			t.Errorf("error %q does not name %s", err, typ)
		}
	}
	if n := len(f.srv.Instances()); n != 0 {
		t.Fatalf("%d instances left", n)
	}
}

func TestRetriedCreateAfterFallbackFindsInstance(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("RunInstances", ec2test.Fault{Code: "InsufficientInstanceCapacity", InstanceType: "m6a.large", Times: 1})
	req := request("retry")
	req.InstanceTypes = []string{"m6a.large", "m6a.xlarge"}
	first, err := f.p.Create(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	// m6a.large has room now; the retry must still return the m6a.xlarge instance.
	second, err := f.p.Create(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID || second.InstanceType != "m6a.xlarge" {
		t.Fatalf("first %s (%s), retry %s (%s)", first.ID, first.InstanceType, second.ID, second.InstanceType)
	}
	if n := len(f.srv.Instances()); n != 1 {
		t.Fatalf("%d instances", n)
	}
}

func TestThrottling(t *testing.T) {
	t.Run("retried by the SDK", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{}, nil)
		f.srv.Inject("RunInstances", ec2test.Fault{Code: "RequestLimitExceeded", Times: 2})
		f.srv.Inject("DescribeInstances", ec2test.Fault{Code: "RequestLimitExceeded", Times: 1})
		if _, err := f.p.Create(ctxT(t), request("throttle")); err != nil {
			t.Fatal(err)
		}
		if n := len(f.srv.Requests("RunInstances")); n != 3 {
			t.Fatalf("%d RunInstances attempts, want 3", n)
		}
		if n := len(f.srv.Instances()); n != 1 {
			t.Fatalf("%d instances", n)
		}
	})
	t.Run("classified when it lasts", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{}, nil)
		f.srv.Inject("RunInstances", ec2test.Fault{Code: "RequestLimitExceeded"})
		f.srv.Inject("DescribeInstances", ec2test.Fault{Code: "Throttling"})
		_, err := f.p.Create(ctxT(t), request("throttle"))
		if !errors.Is(err, provider.ErrThrottled) || !provider.Retryable(err) {
			t.Fatalf("create: %v", err)
		}
		if n := len(f.srv.Requests("RunInstances")); n != 3 {
			t.Fatalf("%d attempts, want the retryer's 3", n)
		}
		if _, err := f.p.List(ctxT(t), nil); !errors.Is(err, provider.ErrThrottled) {
			t.Fatalf("list: %v", err)
		}
	})
}

func TestDroppedConnectionAfterLaunch(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("RunInstances", ec2test.Fault{DropAfter: true, Times: 2})
	inst, err := f.p.Create(ctxT(t), request("dropped"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.srv.Requests("RunInstances")); n != 3 {
		t.Fatalf("%d RunInstances attempts, want 3", n)
	}
	all := f.srv.Instances()
	if len(all) != 1 || all[0].ID != inst.ID {
		t.Fatalf("%d instances; the retries must find the first by its token", len(all))
	}
}

func TestDroppedConnectionForever(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("TerminateInstances", ec2test.Fault{DropAfter: true})
	inst, err := f.p.Create(ctxT(t), request("gone"))
	if err != nil {
		t.Fatal(err)
	}
	err = f.p.Delete(ctxT(t), inst.ID)
	if !errors.Is(err, provider.ErrTransient) {
		t.Fatalf("delete over a dropping connection: %v, want ErrTransient", err)
	}
}

func TestLatency(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("RunInstances", ec2test.Fault{Latency: 50 * time.Millisecond})
	if _, err := f.p.Create(ctxT(t), request("slow")); err != nil {
		t.Fatal(err)
	}
	// A deadline that passes while EC2 is slow: the caller's error, nothing left running.
	f.srv.ClearFaults()
	f.srv.Inject("DescribeInstances", ec2test.Fault{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := f.p.Create(ctx, request("late"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	for _, in := range f.srv.Instances() {
		if in.Tags["Name"] == "podvm-late" && in.State != ec2test.StateShuttingDown {
			t.Fatalf("instance of the timed-out create is %s, want terminated", in.State)
		}
	}
}

func TestWaitFailureTerminates(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("DescribeInstances", ec2test.Fault{Code: "InternalError"})
	_, err := f.p.Create(ctxT(t), request("broken"))
	if !errors.Is(err, provider.ErrTransient) {
		t.Fatalf("want ErrTransient, got %v", err)
	}
	all := f.srv.Instances()
	if len(all) != 1 || all[0].State != ec2test.StateShuttingDown {
		t.Fatalf("instances %+v: the failed create must terminate what it made", all)
	}
	if n := len(f.srv.Requests("TerminateInstances")); n != 1 {
		t.Fatalf("%d TerminateInstances", n)
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		code  string
		class error
	}{
		{"RequestLimitExceeded", provider.ErrThrottled},
		{"InsufficientInstanceCapacity", provider.ErrCapacity},
		{"Unsupported", provider.ErrCapacity},
		{"VcpuLimitExceeded", provider.ErrCapacity},
		{"InvalidParameterValue", provider.ErrInvalidConfig},
		{"InvalidParameterCombination", provider.ErrInvalidConfig},
		{"InvalidAMIID.NotFound", provider.ErrInvalidConfig},
		{"InvalidSubnetID.NotFound", provider.ErrInvalidConfig},
		{"InvalidGroup.NotFound", provider.ErrInvalidConfig},
		{"UnauthorizedOperation", provider.ErrInvalidConfig},
		{"AuthFailure", provider.ErrInvalidConfig},
		{"InternalError", provider.ErrTransient},
		{"Unavailable", provider.ErrTransient},
		{"IncorrectInstanceState", provider.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			f := newFixture(t, ec2test.Options{}, nil)
			f.srv.Inject("RunInstances", ec2test.Fault{Code: tt.code})
			_, err := f.p.Create(ctxT(t), request("class"))
			if got := provider.ClassOf(err); got != tt.class {
				t.Fatalf("%s classified %v, want %v (%v)", tt.code, got, tt.class, err)
			}
			if !strings.Contains(err.Error(), tt.code) || !strings.Contains(err.Error(), "podvm-class") {
				t.Fatalf("error %q should name the code and the VM", err)
			}
		})
	}
	t.Run("instance not found", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{}, nil)
		f.srv.Inject("TerminateInstances", ec2test.Fault{Code: "InvalidInstanceID.NotFound"})
		if err := f.p.Delete(ctxT(t), "i-0123456789abcdef0"); err != nil {
			t.Fatalf("delete of a missing instance: %v", err)
		}
		if err := f.p.Delete(ctxT(t), "i-0123456789abcdef0"); err != nil { // the endpoint's own answer this time
			t.Fatalf("delete of an unknown instance: %v", err)
		}
		if err := f.p.Delete(ctxT(t), ""); !errors.Is(err, provider.ErrInvalidConfig) {
			t.Fatalf("delete with no id: %v", err)
		}
	})
}

func TestListPaginatesAndFilters(t *testing.T) {
	f := newFixture(t, ec2test.Options{PageSize: 2}, nil)
	var ids []string
	for i := range 5 {
		r := request(fmt.Sprintf("list%d", i))
		if i == 4 {
			r.Tags[provider.TagNode] = "node-2"
		}
		inst, err := f.p.Create(ctxT(t), r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, inst.ID)
	}
	if err := f.p.Delete(ctxT(t), ids[0]); err != nil {
		t.Fatal(err)
	}
	got, err := f.p.List(ctxT(t), provider.NodeSelector("c1", "node-1"))
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, in := range got {
		gotIDs = append(gotIDs, in.ID)
	}
	if !slices.Equal(gotIDs, ids[1:4]) {
		t.Fatalf("listed %v, want %v", gotIDs, ids[1:4])
	}
	var pages int
	for _, r := range f.srv.Requests("DescribeInstances") {
		if r.Get("Filter.1.Name") == "tag:"+provider.TagCluster {
			pages++
			if r.Get("MaxResults") == "" {
				t.Error("List asked without MaxResults")
			}
		}
	}
	if pages != 2 {
		t.Fatalf("List read %d pages, want 2 of 2", pages)
	}
}

func TestInstanceTypes(t *testing.T) {
	f := newFixture(t, ec2test.Options{PageSize: 2}, nil)
	got, err := f.p.InstanceTypes(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("%d SNP types, want 6: %v", len(got), got)
	}
	for _, it := range got {
		if !IsSevSnpType(it.Name) || it.VCPUs == 0 || it.MemoryMiB == 0 {
			t.Errorf("type %+v", it)
		}
	}
	sel, err := provider.SelectInstanceTypes(got, provider.Resources{VCPUs: 3, MemoryMiB: 12000}, "", []string{"m6a.large", "m6a.xlarge", "c6a.xlarge", "m6a.2xlarge"}, "m6a.large")
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) == 0 || sel[0] != "m6a.xlarge" {
		t.Fatalf("selection %v, want m6a.xlarge first", sel)
	}

	all := newFixture(t, ec2test.Options{}, func(c *Config) { c.DisableCVM = true })
	got, err = all.p.InstanceTypes(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ec2test.DefaultInstanceTypes()) {
		t.Fatalf("%d types with DISABLECVM", len(got))
	}
	for _, it := range got {
		if it.Name == "g5.xlarge" && (it.GPUs != 1 || it.VCPUs != 4 || it.MemoryMiB != 16384) {
			t.Errorf("g5.xlarge: %+v", it)
		}
	}
}

func TestValidate(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, func(c *Config) { c.InstanceTypes = []string{"m6a.large", "c6a.large"} })
	if err := f.p.Validate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		eo     ec2test.Options
		mutate func(*Config)
		key    string
	}{
		{"unknown AMI", ec2test.Options{}, func(c *Config) { c.ImageID = "ami-00000000000000404" }, KeyImageID},
		{"unknown type", ec2test.Options{}, func(c *Config) { c.InstanceTypes = []string{"m6a.huge"} }, KeyInstanceTypes},
		{"type without SEV-SNP in this region", ec2test.Options{InstanceTypes: []ec2test.InstanceType{{Name: "m6a.large", VCPUs: 2, MemoryMiB: 8192}}}, nil, KeyInstanceType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.eo, tt.mutate)
			err := f.p.Validate(ctxT(t))
			if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("error %v: want invalid config naming %s", err, tt.key)
			}
		})
	}
}

// fakeIMDS serves the IMDSv2 paths the provider reads, on loopback.
func fakeIMDS(t *testing.T, meta map[string]string) *httptest.Server {
	t.Helper()
	const token = "imds-session-token"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" {
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			fmt.Fprint(w, token)
			return
		}
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != token {
			http.Error(w, "no session token", http.StatusUnauthorized)
			return
		}
		v, ok := meta[strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDefaultsFromIMDS(t *testing.T) {
	imds := fakeIMDS(t, map[string]string{
		"placement/region": "eu-central-1",
		"mac":              "0a:1b:2c:3d:4e:5f",
		"network/interfaces/macs/0a:1b:2c:3d:4e:5f/subnet-id":          "subnet-0aaaaaaaaaaaaaaaa",
		"network/interfaces/macs/0a:1b:2c:3d:4e:5f/security-group-ids": "sg-0bbbbbbbbbbbbbbbb\nsg-0cccccccccccccccc\n",
	})
	f := newFixture(t, ec2test.Options{}, func(c *Config) { c.Region, c.SubnetID, c.SecurityGroupIDs = "", "", nil }, WithIMDSEndpoint(imds.URL))
	c := f.p.Config()
	if c.Region != "eu-central-1" || c.SubnetID != "subnet-0aaaaaaaaaaaaaaaa" || strings.Join(c.SecurityGroupIDs, ",") != "sg-0bbbbbbbbbbbbbbbb,sg-0cccccccccccccccc" {
		t.Fatalf("defaults from IMDS: %+v", c)
	}
	if _, err := f.p.Create(ctxT(t), request("imds")); err != nil {
		t.Fatal(err)
	}
	form := f.srv.Requests("RunInstances")[0]
	if form.Get("SubnetId") != "subnet-0aaaaaaaaaaaaaaaa" || form.Get("SecurityGroupId.2") != "sg-0cccccccccccccccc" {
		t.Fatalf("create did not use the IMDS defaults: %v", form)
	}

	t.Run("configured values win", func(t *testing.T) {
		f := newFixture(t, ec2test.Options{}, func(c *Config) { c.SecurityGroupIDs = nil }, WithIMDSEndpoint(imds.URL))
		c := f.p.Config()
		if c.Region != "us-east-2" || c.SubnetID != "subnet-0123456789abcdef0" || len(c.SecurityGroupIDs) != 2 {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("IMDS without the subnet", func(t *testing.T) {
		bad := fakeIMDS(t, map[string]string{"placement/region": "eu-central-1", "mac": "0a:1b:2c:3d:4e:5f"})
		_, err := New(context.Background(), &Config{ImageID: testAMI, InstanceType: DefaultInstanceType, RootVolumeGiB: 30},
			WithStaticCredentials(testKeyID, testSecret, ""), WithIMDSEndpoint(bad.URL),
			WithRetry(func(o *retry.StandardOptions) { o.MaxAttempts = 1 }))
		if !errors.Is(err, provider.ErrInvalidConfig) || !strings.Contains(err.Error(), KeySubnetID) {
			t.Fatalf("want invalid config naming %s, got %v", KeySubnetID, err)
		}
	})
}

func TestManyParallelCreates(t *testing.T) {
	f := newFixture(t, ec2test.Options{PendingDescribes: 1}, nil)
	f.srv.Inject("RunInstances", ec2test.Fault{Latency: 20 * time.Millisecond})
	const n = 100
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			inst, err := f.p.Create(ctxT(t), request(fmt.Sprintf("par%d", i)))
			errs[i] = err
			if err == nil {
				ids[i] = inst.ID
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		seen[ids[i]] = true
	}
	if len(seen) != n || len(f.srv.Instances()) != n {
		t.Fatalf("%d distinct ids, %d instances", len(seen), len(f.srv.Instances()))
	}
	if got := len(f.srv.Requests("DescribeImages")); got != 1 {
		t.Fatalf("%d concurrent creates made %d DescribeImages calls, want 1", n, got)
	}
}

func TestImageLookupFailureNotCached(t *testing.T) {
	f := newFixture(t, ec2test.Options{}, nil)
	f.srv.Inject("DescribeImages", ec2test.Fault{Code: "InternalError", Times: 3})
	if _, err := f.p.Create(ctxT(t), request("img1")); !errors.Is(err, provider.ErrTransient) || !strings.Contains(err.Error(), KeyImageID) {
		t.Fatalf("create while DescribeImages fails: %v", err)
	}
	if _, err := f.p.Create(ctxT(t), request("img2")); err != nil {
		t.Fatalf("create after DescribeImages recovered: %v", err)
	}
	if n := len(f.srv.Instances()); n != 1 {
		t.Fatalf("%d instances", n)
	}
}
