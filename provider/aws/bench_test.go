package aws

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	ec2test "github.com/peerpod/peerpod/test/ec2"
)

func benchFixture(b *testing.B, eo ec2test.Options) (*ec2test.Server, *Provider) {
	b.Helper()
	srv, err := ec2test.Start(eo)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	p, err := New(context.Background(), testConfig(),
		WithEndpoint(srv.URL()), WithStaticCredentials(testKeyID, testSecret, ""),
		WithWaiterDelay(time.Millisecond, 50*time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	return srv, p
}

// BenchmarkCreateDelete measures one create (RunInstances, the running
// waiter's DescribeInstances) and one delete against the local endpoint. The
// baselines on the same endpoint: one bare SDK call, and the same three calls
// with the same parameters made straight through the SDK.
func BenchmarkCreateDelete(b *testing.B) {
	ctx := context.Background()
	b.Run("baseline-sdk-call", func(b *testing.B) {
		_, p := benchFixture(b, ec2test.Options{})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-sdk-same-calls", func(b *testing.B) {
		// The calls Create and Delete make, with the same parameters, straight
		// through the SDK: what is left of create-delete is our own cost.
		_, p := benchFixture(b, ec2test.Options{})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			req := request(fmt.Sprintf("bench%d", i))
			in, err := p.runInput(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			in.InstanceType = types.InstanceTypeM6aLarge
			in.ClientToken = sdkaws.String(req.Name)
			out, err := p.client.RunInstances(ctx, in)
			if err != nil {
				b.Fatal(err)
			}
			ids := []string{*out.Instances[0].InstanceId}
			if _, err := p.client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids}); err != nil {
				b.Fatal(err)
			}
			if _, err := p.client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create-delete", func(b *testing.B) {
		_, p := benchFixture(b, ec2test.Options{})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			inst, err := p.Create(ctx, request(fmt.Sprintf("bench%d", i)))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Delete(ctx, inst.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParallelCreates100 makes 100 VMs at once while every RunInstances
// takes 2 s; the floor is 2 s. It reports the wall time and its ratio to the floor.
func BenchmarkParallelCreates100(b *testing.B) {
	const n, latency = 100, 2 * time.Second
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv, p := benchFixture(b, ec2test.Options{})
		srv.Inject("RunInstances", ec2test.Fault{Latency: latency})
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for j := range n {
			wg.Go(func() {
				if _, err := p.Create(ctx, request(fmt.Sprintf("par%d-%d", i, j))); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		wall := time.Since(start)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if got := len(srv.Instances()); got != n {
			b.Fatalf("%d instances, want %d", got, n)
		}
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(wall.Seconds()/latency.Seconds(), "x-floor")
	}
}
