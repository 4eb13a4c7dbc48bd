package pool

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/aws"
	ec2test "github.com/peerpod/peerpod/test/ec2"
)

// TestWarmVMsOnEC2 makes warm VMs through the real EC2 client against the
// local Query-protocol endpoint: they launch with warm user data and the
// warm tags, and the pool terminates them when it stops.
func TestWarmVMsOnEC2(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	srv, err := ec2test.Start(ec2test.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	cfg := &aws.Config{ImageID: ec2test.DefaultImage.ID, InstanceType: aws.DefaultInstanceType, Region: "us-east-2",
		SubnetID: "subnet-0123456789abcdef0", SecurityGroupIDs: []string{"sg-0123456789abcdef0"}, RootVolumeGiB: aws.DefaultRootVolumeGiB}
	prov, err := aws.New(context.Background(), cfg, aws.WithEndpoint(srv.URL()), aws.WithStaticCredentials("AKIDPOOLTEST", "pool-test-secret", ""),
		aws.WithWaiterDelay(time.Millisecond, 10*time.Millisecond), aws.WithRunningTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint's addresses are not ours to dial: the VMs stay booting.
	p := newPool(t, prov, 15150, func(o *Options) {
		o.Size, o.BootTimeout = 2, time.Hour
		o.Reachable = func(context.Context, string) bool { return false }
	})
	stop := run(t, p)
	waitFor(t, "two warm instances", func() bool { return p.Status().Booting == 2 })
	running := 0
	for _, in := range srv.Instances() {
		if in.State != "running" {
			continue
		}
		running++
		ud, err := userdata.Decode(in.UserData)
		if err != nil || !ud.Warm || ud.SandboxID != "" {
			t.Fatalf("instance %s user data %+v, %v", in.ID, ud, err)
		}
		if in.Tags[provider.TagWarm] != "true" || in.Tags[provider.TagNode] != "node-a" || in.Tags[provider.TagSandbox] != "" || in.ClientToken == "" {
			t.Fatalf("instance %s tags %v, client token %q", in.ID, in.Tags, in.ClientToken)
		}
	}
	if running != 2 {
		t.Fatalf("%d running instances, want 2", running)
	}
	stop()
	for _, in := range srv.Instances() {
		if in.State == "running" || in.State == "pending" {
			t.Fatalf("instance %s still %s after the pool stopped", in.ID, in.State)
		}
	}
}
