package aws

import (
	"context"
	"slices"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/peerpod/peerpod/provider"
)

// Validate implements provider.Provider: it checks the configuration, that
// the credentials work, that the AMI exists and that every allowed instance
// type exists (and supports AMD SEV-SNP unless DISABLECVM), without creating anything.
func (p *Provider) Validate(ctx context.Context) error {
	if err := p.cfg.Validate(); err != nil {
		return err
	}
	if p.cfg.ImageID != "" {
		if _, err := p.image(ctx, p.cfg.ImageID); err != nil {
			return err
		}
	}
	allowed := p.cfg.AllowedTypes()
	if !slices.Contains(allowed, p.cfg.InstanceType) {
		allowed = append([]string{p.cfg.InstanceType}, allowed...)
	}
	tt := make([]types.InstanceType, len(allowed))
	for i, t := range allowed {
		tt[i] = types.InstanceType(t)
	}
	out, err := p.client.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: tt})
	if err != nil {
		return classify(err, "instance types %s (%s, %s)", strings.Join(allowed, ","), KeyInstanceType, KeyInstanceTypes)
	}
	if p.cfg.DisableCVM {
		return nil
	}
	for _, it := range out.InstanceTypes {
		if it.ProcessorInfo == nil || !slices.Contains(it.ProcessorInfo.SupportedFeatures, types.SupportedAdditionalProcessorFeatureAmdSevSnp) {
			key := KeyInstanceTypes
			if string(it.InstanceType) == p.cfg.InstanceType {
				key = KeyInstanceType
			}
			return provider.Errorf(provider.ErrInvalidConfig, "%s: EC2 says %s does not support AMD SEV-SNP; set %s=true to run without it", key, it.InstanceType, KeyDisableCVM)
		}
	}
	return nil
}

// InstanceTypes implements provider.InstanceTypeLister: every instance type
// of the region (only those with AMD SEV-SNP unless DISABLECVM), from
// DescribeInstanceTypes page by page.
func (p *Provider) InstanceTypes(ctx context.Context) ([]provider.InstanceType, error) {
	in := &ec2.DescribeInstanceTypesInput{MaxResults: sdkaws.Int32(100)}
	if !p.cfg.DisableCVM {
		in.Filters = []types.Filter{{Name: sdkaws.String("processor-info.supported-features"), Values: []string{"amd-sev-snp"}}}
	}
	pg := ec2.NewDescribeInstanceTypesPaginator(p.client, in)
	var out []provider.InstanceType
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, classify(err, "list instance types")
		}
		for _, it := range page.InstanceTypes {
			t := provider.InstanceType{Name: string(it.InstanceType)}
			if it.VCpuInfo != nil {
				t.VCPUs = int64(sdkaws.ToInt32(it.VCpuInfo.DefaultVCpus))
			}
			if it.MemoryInfo != nil {
				t.MemoryMiB = sdkaws.ToInt64(it.MemoryInfo.SizeInMiB)
			}
			if it.GpuInfo != nil {
				for _, g := range it.GpuInfo.Gpus {
					t.GPUs += int64(sdkaws.ToInt32(g.Count))
				}
			}
			out = append(out, t)
		}
	}
	return out, nil
}
