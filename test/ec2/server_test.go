package ec2_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	ec2 "github.com/peerpod/peerpod/test/ec2"
)

// start runs an endpoint and a real SDK client pointed at it.
func start(t *testing.T, opts ec2.Options) (*ec2.Server, *sdk.Client) {
	t.Helper()
	srv, err := ec2.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	client := sdk.New(sdk.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 4
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		}),
	})
	return srv, client
}

func runInput(token string) *sdk.RunInstancesInput {
	return &sdk.RunInstancesInput{
		MinCount:         aws.Int32(1),
		MaxCount:         aws.Int32(1),
		ImageId:          aws.String(ec2.DefaultImage.ID),
		InstanceType:     types.InstanceTypeM6aLarge,
		SubnetId:         aws.String("subnet-0123"),
		SecurityGroupIds: []string{"sg-1", "sg-2"},
		ClientToken:      aws.String(token),
		CpuOptions:       &types.CpuOptionsRequest{AmdSevSnp: types.AmdSevSnpSpecificationEnabled},
		MetadataOptions:  &types.InstanceMetadataOptionsRequest{HttpTokens: types.HttpTokensStateRequired},
		UserData:         aws.String(base64.StdEncoding.EncodeToString([]byte("hello"))),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
			Ebs: &types.EbsBlockDevice{VolumeSize: aws.Int32(30)}}},
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("vm1")}, {Key: aws.String("k"), Value: aws.String("v")}}},
			{ResourceType: types.ResourceTypeVolume, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String("vm1")}}},
		},
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestRunDescribeTerminateThroughSDK(t *testing.T) {
	srv, c := start(t, ec2.Options{PendingDescribes: 2})
	ctx := context.Background()
	out, err := c.RunInstances(ctx, runInput("tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Instances) != 1 {
		t.Fatalf("RunInstances gave %d instances", len(out.Instances))
	}
	in := out.Instances[0]
	id := aws.ToString(in.InstanceId)
	if !strings.HasPrefix(id, "i-") || in.State.Name != types.InstanceStateNamePending || aws.ToString(out.ReservationId) == "" {
		t.Fatalf("bad instance %s state %s reservation %q", id, in.State.Name, aws.ToString(out.ReservationId))
	}
	if in.CpuOptions == nil || in.CpuOptions.AmdSevSnp != types.AmdSevSnpSpecificationEnabled {
		t.Errorf("cpu options not parsed: %+v", in.CpuOptions)
	}
	if in.MetadataOptions == nil || in.MetadataOptions.HttpTokens != types.HttpTokensStateRequired {
		t.Errorf("metadata options not parsed: %+v", in.MetadataOptions)
	}
	if in.LaunchTime == nil || time.Since(*in.LaunchTime) > time.Minute {
		t.Errorf("launch time not parsed: %v", in.LaunchTime)
	}
	if aws.ToString(in.ClientToken) != "tok-1" || aws.ToString(in.PrivateIpAddress) == "" {
		t.Errorf("client token %q, private ip %q", aws.ToString(in.ClientToken), aws.ToString(in.PrivateIpAddress))
	}

	// The real SDK waiter sees pending twice, then running.
	w := sdk.NewInstanceRunningWaiter(c, func(o *sdk.InstanceRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	desc, err := w.WaitForOutput(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}}, 10*time.Second)
	if err != nil {
		t.Fatalf("running waiter: %v", err)
	}
	got := desc.Reservations[0].Instances[0]
	if got.State.Name != types.InstanceStateNameRunning {
		t.Fatalf("state %s", got.State.Name)
	}
	tags := map[string]string{}
	for _, tg := range got.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if tags["Name"] != "vm1" || tags["k"] != "v" {
		t.Errorf("tags %v", tags)
	}
	if n := len(srv.Requests("DescribeInstances")); n != 3 {
		t.Errorf("waiter made %d describes, want 3 (pending, pending, running)", n)
	}
	st := srv.Instances()[0]
	if string(st.UserData) != "hello" || st.RootVolumeGiB != 30 || !st.SevSnp || st.HTTPTokens != "required" ||
		st.ResourceTags["volume"]["Name"] != "vm1" || len(st.SecurityGroupIDs) != 2 {
		t.Errorf("stored instance %+v", st)
	}

	// Terminate: shutting-down, then terminated as the SDK's waiter sees it.
	tout, err := c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if s := tout.TerminatingInstances[0]; s.CurrentState.Name != types.InstanceStateNameShuttingDown || s.PreviousState.Name != types.InstanceStateNameRunning {
		t.Fatalf("terminate state change %+v", s)
	}
	tw := sdk.NewInstanceTerminatedWaiter(c, func(o *sdk.InstanceTerminatedWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	if err := tw.Wait(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{id}}, 10*time.Second); err != nil {
		t.Fatalf("terminated waiter: %v", err)
	}
}

func TestClientTokenIdempotency(t *testing.T) {
	srv, c := start(t, ec2.Options{})
	ctx := context.Background()
	a, err := c.RunInstances(ctx, runInput("same"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.RunInstances(ctx, runInput("same"))
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(a.Instances[0].InstanceId) != aws.ToString(b.Instances[0].InstanceId) || aws.ToString(a.ReservationId) != aws.ToString(b.ReservationId) {
		t.Fatalf("same token gave two instances")
	}
	other := runInput("same")
	other.InstanceType = types.InstanceTypeC6aLarge
	_, err = c.RunInstances(ctx, other)
	if apiCode(err) != "IdempotentParameterMismatch" {
		t.Fatalf("changed parameters with same token: %v", err)
	}
	if n := len(srv.Instances()); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
}

func TestErrorsAsEC2SendsThem(t *testing.T) {
	tests := []struct {
		name    string
		fault   ec2.Fault
		in      func() *sdk.RunInstancesInput
		code    string
		status  int
		retried bool
	}{
		{"throttled", ec2.Fault{Code: "RequestLimitExceeded"}, func() *sdk.RunInstancesInput { return runInput("t") }, "RequestLimitExceeded", 503, true},
		{"capacity for one type", ec2.Fault{Code: "InsufficientInstanceCapacity", InstanceType: "m6a.large"}, func() *sdk.RunInstancesInput { return runInput("t") }, "InsufficientInstanceCapacity", 500, true},
		{"unknown image", ec2.Fault{}, func() *sdk.RunInstancesInput { i := runInput("t"); i.ImageId = aws.String("ami-0000"); return i }, "InvalidAMIID.NotFound", 400, false},
		{"malformed subnet", ec2.Fault{}, func() *sdk.RunInstancesInput { i := runInput("t"); i.SubnetId = aws.String("nope"); return i }, "InvalidSubnetID.Malformed", 400, false},
		{"snp on a non-snp type", ec2.Fault{}, func() *sdk.RunInstancesInput {
			i := runInput("t")
			i.InstanceType = types.InstanceTypeM5Large
			return i
		}, "InvalidParameterCombination", 400, false},
		{"user data too big", ec2.Fault{}, func() *sdk.RunInstancesInput {
			i := runInput("t")
			i.UserData = aws.String(base64.StdEncoding.EncodeToString(make([]byte, ec2.MaxUserData+1)))
			return i
		}, "InvalidParameterValue", 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := start(t, ec2.Options{})
			if tt.fault.Code != "" {
				srv.Inject("RunInstances", tt.fault)
			}
			_, err := c.RunInstances(context.Background(), tt.in())
			if apiCode(err) != tt.code {
				t.Fatalf("error %v, want code %s", err, tt.code)
			}
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != tt.status || re.ServiceRequestID() == "" {
				t.Fatalf("want HTTP %d with a request id, got %v", tt.status, err)
			}
			n := len(srv.Requests("RunInstances"))
			if tt.retried != (n > 1) {
				t.Fatalf("%d attempts; retried want %v", n, tt.retried)
			}
			if len(srv.Instances()) != 0 {
				t.Fatal("failed request made an instance")
			}
		})
	}
}

func TestThrottleThenSuccess(t *testing.T) {
	srv, c := start(t, ec2.Options{})
	srv.Inject("RunInstances", ec2.Fault{Code: "RequestLimitExceeded", Times: 2})
	if _, err := c.RunInstances(context.Background(), runInput("x")); err != nil {
		t.Fatalf("SDK did not retry through throttling: %v", err)
	}
	if n := len(srv.Requests("RunInstances")); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
}

func TestDroppedConnectionRetryFindsInstanceByToken(t *testing.T) {
	srv, c := start(t, ec2.Options{})
	srv.Inject("RunInstances", ec2.Fault{DropAfter: true, Times: 1})
	out, err := c.RunInstances(context.Background(), runInput("drop"))
	if err != nil {
		t.Fatalf("SDK did not retry a dropped connection: %v", err)
	}
	if n := len(srv.Requests("RunInstances")); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
	all := srv.Instances()
	if len(all) != 1 || all[0].ID != aws.ToString(out.Instances[0].InstanceId) {
		t.Fatalf("want the one instance of the first attempt, have %d", len(all))
	}
}

func TestLatencyHonoursCancel(t *testing.T) {
	srv, c := start(t, ec2.Options{})
	srv.Inject("DescribeInstances", ec2.Fault{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

func TestDescribeFiltersAndPagination(t *testing.T) {
	_, c := start(t, ec2.Options{PageSize: 3})
	ctx := context.Background()
	var ids []string
	for i := range 7 {
		in := runInput(strings.Repeat("p", i+1))
		if i%2 == 1 {
			in.TagSpecifications[0].Tags[1].Value = aws.String("other")
		}
		out, err := c.RunInstances(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, aws.ToString(out.Instances[0].InstanceId))
	}
	if _, err := c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: ids[:1]}); err != nil {
		t.Fatal(err)
	}
	count := func(filters []types.Filter) (n, pages int) {
		t.Helper()
		p := sdk.NewDescribeInstancesPaginator(c, &sdk.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(5)})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, r := range out.Reservations {
				n += len(r.Instances)
			}
		}
		return n, pages
	}
	if n, pages := count(nil); n != 7 || pages != 3 {
		t.Errorf("all: %d instances in %d pages, want 7 in 3", n, pages)
	}
	n, _ := count([]types.Filter{{Name: aws.String("tag:k"), Values: []string{"v"}}})
	if n != 4 {
		t.Errorf("tag:k=v matched %d, want 4", n)
	}
	n, _ = count([]types.Filter{{Name: aws.String("tag:k"), Values: []string{"v"}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}}})
	if n != 3 {
		t.Errorf("tag:k=v and not terminated matched %d, want 3", n)
	}
	n, _ = count([]types.Filter{{Name: aws.String("client-token"), Values: []string{"ppp"}}})
	if n != 1 {
		t.Errorf("client-token matched %d, want 1", n)
	}
	_, err := c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("bogus"), Values: []string{"x"}}}})
	if apiCode(err) != "InvalidParameterValue" {
		t.Errorf("unknown filter: %v", err)
	}
	_, err = c.DescribeInstances(ctx, &sdk.DescribeInstancesInput{InstanceIds: []string{"i-00000000000000000"}})
	if apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("unknown id: %v", err)
	}
	_, err = c.TerminateInstances(ctx, &sdk.TerminateInstancesInput{InstanceIds: []string{"i-00000000000000000"}})
	if apiCode(err) != "InvalidInstanceID.NotFound" {
		t.Errorf("terminate unknown id: %v", err)
	}
	if _, err := c.CreateTags(ctx, &sdk.CreateTagsInput{Resources: ids[1:2], Tags: []types.Tag{{Key: aws.String("added"), Value: aws.String("yes")}}}); err != nil {
		t.Fatal(err)
	}
	n, _ = count([]types.Filter{{Name: aws.String("tag:added"), Values: []string{"yes"}}})
	if n != 1 {
		t.Errorf("CreateTags then filter matched %d, want 1", n)
	}
}

func TestImagesAndInstanceTypes(t *testing.T) {
	_, c := start(t, ec2.Options{PageSize: 3})
	ctx := context.Background()
	im, err := c.DescribeImages(ctx, &sdk.DescribeImagesInput{ImageIds: []string{ec2.DefaultImage.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Images) != 1 || aws.ToString(im.Images[0].RootDeviceName) != ec2.DefaultImage.RootDeviceName ||
		aws.ToInt32(im.Images[0].BlockDeviceMappings[0].Ebs.VolumeSize) != ec2.DefaultImage.SizeGiB {
		t.Fatalf("images %+v", im.Images)
	}
	_, err = c.DescribeImages(ctx, &sdk.DescribeImagesInput{ImageIds: []string{"ami-404"}})
	if apiCode(err) != "InvalidAMIID.NotFound" {
		t.Fatalf("unknown image: %v", err)
	}
	p := sdk.NewDescribeInstanceTypesPaginator(c, &sdk.DescribeInstanceTypesInput{})
	var all []types.InstanceTypeInfo
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, out.InstanceTypes...)
	}
	if len(all) != len(ec2.DefaultInstanceTypes()) || pages != 3 {
		t.Fatalf("%d types in %d pages", len(all), pages)
	}
	for _, it := range all {
		if it.InstanceType == types.InstanceTypeG5Xlarge {
			if it.GpuInfo == nil || aws.ToInt32(it.GpuInfo.Gpus[0].Count) != 1 || aws.ToInt64(it.MemoryInfo.SizeInMiB) != 16384 || aws.ToInt32(it.VCpuInfo.DefaultVCpus) != 4 {
				t.Errorf("g5.xlarge parsed as %+v", it)
			}
		}
		if it.InstanceType == types.InstanceTypeM6aLarge {
			if len(it.ProcessorInfo.SupportedFeatures) != 1 || it.ProcessorInfo.SupportedFeatures[0] != types.SupportedAdditionalProcessorFeatureAmdSevSnp {
				t.Errorf("m6a.large features %+v", it.ProcessorInfo.SupportedFeatures)
			}
		}
	}
	snp, err := c.DescribeInstanceTypes(ctx, &sdk.DescribeInstanceTypesInput{Filters: []types.Filter{
		{Name: aws.String("processor-info.supported-features"), Values: []string{"amd-sev-snp"}}}, MaxResults: aws.Int32(100)})
	if err != nil {
		t.Fatal(err)
	}
	if len(snp.InstanceTypes) != 3 || snp.NextToken == nil {
		t.Fatalf("first page of SNP types: %d, next %v", len(snp.InstanceTypes), snp.NextToken)
	}
}

func TestRejectsUnsignedAndWrongVersion(t *testing.T) {
	srv, _ := start(t, ec2.Options{})
	resp, err := http.Post(srv.URL(), "application/x-www-form-urlencoded", strings.NewReader("Action=DescribeInstances&Version=2016-11-15"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("x-amzn-RequestId") == "" {
		t.Fatalf("unsigned request: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL(), strings.NewReader("Action=DescribeInstances&Version=2014-01-01"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("wrong version: %d", resp.StatusCode)
	}
}
