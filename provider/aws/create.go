package aws

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/peerpod/peerpod/provider"
)

// MaxUserData is EC2's limit on user data: 16 KiB before base64 encoding.
const MaxUserData = 16 * 1024

// TagName is the EC2 tag holding the VM name, shown by the console.
const TagName = "Name"

// liveStates are the states List reports; shutting-down and terminated
// instances are already on their way out.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

// ClientToken is the RunInstances idempotency token of one VM and instance
// type: "peerpod-" and 48 hex digits of SHA-256 over the sandbox id, the VM
// name and the type, 56 ASCII characters (EC2 takes up to 64). A retried
// RunInstances with it returns the instance the first call made.
func ClientToken(sandboxID, name, instanceType string) string {
	h := sha256.Sum256([]byte(sandboxID + "\x00" + name + "\x00" + instanceType))
	return "peerpod-" + hex.EncodeToString(h[:24])
}

// Create implements provider.Provider. It tries req.InstanceTypes in order
// (the configured default type when empty), moving to the next on a capacity
// error, waits until the instance runs and returns it with its IPs, the
// private address first.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) (*provider.Instance, error) {
	if req.Name == "" {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM: no name")
	}
	if req.SandboxID == "" {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: no sandbox id", req.Name)
	}
	if len(req.UserData) > MaxUserData {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: user data is %d bytes; EC2 takes at most %d (16 KiB) before base64 encoding",
			req.Name, len(req.UserData), MaxUserData)
	}
	cands := req.InstanceTypes
	if len(cands) == 0 {
		cands = []string{p.cfg.InstanceType}
	}
	if !p.cfg.DisableCVM {
		for _, t := range cands {
			if !IsSevSnpType(t) {
				return nil, provider.Errorf(provider.ErrInvalidConfig, "create VM %s: instance type %s does not support AMD SEV-SNP (families %s) and %s is not set",
					req.Name, t, strings.Join(SevSnpFamilies, ", "), KeyDisableCVM)
			}
		}
	}
	base, err := p.runInput(ctx, req)
	if err != nil {
		return nil, err
	}
	// With one candidate its token alone makes a retry safe. With several, an
	// earlier attempt may have launched a later type after the first had no
	// capacity; a retry must find that instance rather than launch the first
	// type now that it has room.
	if len(cands) > 1 {
		id, err := p.findByToken(ctx, req, cands)
		if err != nil {
			return nil, err
		}
		if id != "" {
			p.log.Info("found instance of an earlier create", "vm", req.Name, "instance", id)
			return p.waitRunning(ctx, req.Name, id)
		}
	}
	var tried []string
	for _, t := range cands {
		in := *base
		in.InstanceType = types.InstanceType(t)
		in.ClientToken = sdkaws.String(ClientToken(req.SandboxID, req.Name, t))
		out, err := p.client.RunInstances(ctx, &in)
		if err != nil {
			cerr := classify(err, "create VM %s: RunInstances %s", req.Name, t)
			if errors.Is(cerr, provider.ErrCapacity) {
				p.log.Warn("instance type unavailable, trying the next", "vm", req.Name, "type", t, "code", apiCode(err))
				tried = append(tried, fmt.Sprintf("%s (%s)", t, apiCode(err)))
				continue
			}
			return nil, cerr
		}
		if len(out.Instances) != 1 || out.Instances[0].InstanceId == nil {
			return nil, provider.Errorf(provider.ErrTransient, "create VM %s: RunInstances answered %d instances", req.Name, len(out.Instances))
		}
		got := out.Instances[0]
		id := *got.InstanceId
		if st := stateOf(got); st == types.InstanceStateNameShuttingDown || st == types.InstanceStateNameTerminated {
			return nil, provider.Errorf(provider.ErrConflict, "create VM %s: instance %s of an earlier attempt with the same client token is %s", req.Name, id, st)
		}
		p.log.Info("launched instance", "vm", req.Name, "instance", id, "type", t)
		return p.waitRunning(ctx, req.Name, id)
	}
	return nil, provider.Errorf(provider.ErrCapacity, "create VM %s: no capacity for any instance type tried: %s", req.Name, strings.Join(tried, ", "))
}

// runInput builds everything of the RunInstances call but the type and token.
func (p *Provider) runInput(ctx context.Context, req provider.CreateRequest) (*ec2.RunInstancesInput, error) {
	tags := maps.Clone(p.cfg.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	maps.Copy(tags, req.Tags)
	tags[TagName] = req.Name
	if err := checkTags(tags); err != nil {
		return nil, fmt.Errorf("create VM %s: %w", req.Name, err)
	}
	var tagList []types.Tag
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		tagList = append(tagList, types.Tag{Key: sdkaws.String(k), Value: sdkaws.String(tags[k])})
	}
	in := &ec2.RunInstancesInput{
		MinCount: sdkaws.Int32(1),
		MaxCount: sdkaws.Int32(1),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tagList},
			{ResourceType: types.ResourceTypeVolume, Tags: tagList},
			{ResourceType: types.ResourceTypeNetworkInterface, Tags: tagList},
		},
		// IMDSv2 only: the pod VM reads its user data with a session token.
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:   types.HttpTokensStateRequired,
			HttpEndpoint: types.InstanceMetadataEndpointStateEnabled,
		},
	}
	if len(req.UserData) > 0 {
		in.UserData = sdkaws.String(base64.StdEncoding.EncodeToString(req.UserData))
	}
	if !p.cfg.DisableCVM {
		in.CpuOptions = &types.CpuOptionsRequest{AmdSevSnp: types.AmdSevSnpSpecificationEnabled}
	}
	image := p.cfg.ImageID
	if req.Image != "" {
		image = req.Image
	}
	if p.cfg.UseLaunchTemplate {
		// The template gives image, network, key and disks; an image from
		// the pod's annotation still overrides it.
		in.LaunchTemplate = &types.LaunchTemplateSpecification{LaunchTemplateName: sdkaws.String(p.cfg.LaunchTemplateName), Version: sdkaws.String("$Default")}
		if req.Image != "" {
			in.ImageId = sdkaws.String(req.Image)
		}
		return in, nil
	}
	in.ImageId = sdkaws.String(image)
	if p.cfg.KeyName != "" {
		in.KeyName = sdkaws.String(p.cfg.KeyName)
	}
	if p.cfg.UsePublicIP {
		// A public address on the primary interface needs no Elastic IP and
		// goes away with the instance; subnet and groups move to the interface.
		in.NetworkInterfaces = []types.InstanceNetworkInterfaceSpecification{{
			DeviceIndex:              sdkaws.Int32(0),
			AssociatePublicIpAddress: sdkaws.Bool(true),
			DeleteOnTermination:      sdkaws.Bool(true),
			SubnetId:                 sdkaws.String(p.cfg.SubnetID),
			Groups:                   p.cfg.SecurityGroupIDs,
		}}
	} else {
		in.SubnetId = sdkaws.String(p.cfg.SubnetID)
		in.SecurityGroupIds = p.cfg.SecurityGroupIDs
	}
	img, err := p.image(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("create VM %s: %w", req.Name, err)
	}
	size := max(p.cfg.RootVolumeGiB, img.sizeGiB)
	in.BlockDeviceMappings = []types.BlockDeviceMapping{{
		DeviceName: sdkaws.String(img.rootDevice),
		Ebs:        &types.EbsBlockDevice{VolumeSize: sdkaws.Int32(size), DeleteOnTermination: sdkaws.Bool(true)},
	}}
	return in, nil
}

// checkTags applies EC2's tag rules so a bad TAGS value fails before any call.
func checkTags(tags map[string]string) error {
	if len(tags) > 50 {
		return provider.Errorf(provider.ErrInvalidConfig, "%s: %d tags; EC2 takes at most 50 per resource", KeyTags, len(tags))
	}
	for k, v := range tags {
		switch {
		case len(k) > 128:
			return provider.Errorf(provider.ErrInvalidConfig, "%s: tag key %q is longer than 128 characters", KeyTags, k)
		case len(v) > 256:
			return provider.Errorf(provider.ErrInvalidConfig, "%s: value of tag %q is longer than 256 characters", KeyTags, k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return provider.Errorf(provider.ErrInvalidConfig, "%s: tag key %q uses the reserved prefix aws:", KeyTags, k)
		}
	}
	return nil
}

// image returns the root device of an AMI. DescribeImages is called once per
// AMI: concurrent creates wait for the first call instead of each making one.
func (p *Provider) image(ctx context.Context, id string) (imageInfo, error) {
	p.mu.Lock()
	e, ok := p.images[id]
	if !ok {
		e = &imageEntry{done: make(chan struct{})}
		p.images[id] = e
	}
	p.mu.Unlock()
	if ok {
		select {
		case <-e.done:
		case <-ctx.Done():
			return imageInfo{}, fmt.Errorf("image %s: %w", id, ctx.Err())
		}
		if e.err != nil {
			return imageInfo{}, e.err
		}
		return e.info, nil
	}
	e.info, e.err = p.describeImage(ctx, id)
	if e.err != nil {
		// Let a later call ask again.
		p.mu.Lock()
		delete(p.images, id)
		p.mu.Unlock()
	}
	close(e.done)
	return e.info, e.err
}

func (p *Provider) describeImage(ctx context.Context, id string) (imageInfo, error) {
	out, err := p.client.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
	if err != nil {
		return imageInfo{}, classify(err, "image %s (%s)", id, KeyImageID)
	}
	if len(out.Images) != 1 || out.Images[0].RootDeviceName == nil {
		return imageInfo{}, provider.Errorf(provider.ErrInvalidConfig, "image %s (%s): not found or has no root device", id, KeyImageID)
	}
	im := out.Images[0]
	info := imageInfo{rootDevice: *im.RootDeviceName}
	for _, bd := range im.BlockDeviceMappings {
		if sdkaws.ToString(bd.DeviceName) == info.rootDevice && bd.Ebs != nil {
			info.sizeGiB = sdkaws.ToInt32(bd.Ebs.VolumeSize)
		}
	}
	return info, nil
}

// findByToken looks for a live instance launched with any candidate's token.
func (p *Provider) findByToken(ctx context.Context, req provider.CreateRequest, cands []string) (string, error) {
	tokens := make([]string, len(cands))
	for i, t := range cands {
		tokens[i] = ClientToken(req.SandboxID, req.Name, t)
	}
	out, err := p.client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: sdkaws.String("client-token"), Values: tokens},
		{Name: sdkaws.String("instance-state-name"), Values: []string{"pending", "running"}},
	}})
	if err != nil {
		return "", classify(err, "create VM %s: look for an earlier instance", req.Name)
	}
	for _, r := range out.Reservations {
		if len(r.Instances) > 0 {
			return sdkaws.ToString(r.Instances[0].InstanceId), nil
		}
	}
	return "", nil
}

// waitRunning waits with the SDK's InstanceRunning waiter. If the instance
// does not come up, it is terminated so that a failed create leaves nothing.
func (p *Provider) waitRunning(ctx context.Context, name, id string) (*provider.Instance, error) {
	w := ec2.NewInstanceRunningWaiter(p.client, func(o *ec2.InstanceRunningWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.waitMin, p.waitMax
	})
	out, err := w.WaitForOutput(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}}, p.runningTimeout)
	if err == nil && (len(out.Reservations) == 0 || len(out.Reservations[0].Instances) == 0) {
		err = errors.New("DescribeInstances answered no instance")
	}
	if err != nil {
		p.cleanup(ctx, name, id)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create VM %s: wait for instance %s to run: %w", name, id, ctx.Err())
		}
		if apiCode(err) != "" {
			return nil, classify(err, "create VM %s: wait for instance %s to run", name, id)
		}
		return nil, provider.Errorf(provider.ErrTransient, "create VM %s: instance %s did not run (terminated it): %v", name, id, err)
	}
	inst := toInstance(out.Reservations[0].Instances[0])
	return &inst, nil
}

// cleanup terminates an instance a failed create made, even when ctx is done.
func (p *Provider) cleanup(ctx context.Context, name, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := p.Delete(ctx, id); err != nil {
		p.log.Error("failed create left an instance behind", "vm", name, "instance", id, "err", err)
	}
}

// Delete implements provider.Provider: it terminates the instance; its root
// volume and network interface go with it. An unknown instance is not an error.
func (p *Provider) Delete(ctx context.Context, id string) error {
	if id == "" {
		return provider.Errorf(provider.ErrInvalidConfig, "delete VM: no instance id")
	}
	_, err := p.client.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if apiCode(err) == "InvalidInstanceID.NotFound" {
			return nil
		}
		return classify(err, "delete VM %s", id)
	}
	return nil
}

// List implements provider.Provider with tag:<key> filters, leaving out
// instances that are shutting down or terminated.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Instance, error) {
	var filters []types.Filter
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		filters = append(filters, types.Filter{Name: sdkaws.String("tag:" + k), Values: []string{tags[k]}})
	}
	filters = append(filters, types.Filter{Name: sdkaws.String("instance-state-name"), Values: liveStates})
	pg := ec2.NewDescribeInstancesPaginator(p.client, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: sdkaws.Int32(500)})
	out := []provider.Instance{}
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, classify(err, "list VMs with tags %s", provider.FormatTags(tags))
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				out = append(out, toInstance(in))
			}
		}
	}
	return out, nil
}

func stateOf(in types.Instance) types.InstanceStateName {
	if in.State == nil {
		return ""
	}
	return in.State.Name
}

func toInstance(in types.Instance) provider.Instance {
	out := provider.Instance{
		ID:           sdkaws.ToString(in.InstanceId),
		InstanceType: string(in.InstanceType),
		Tags:         map[string]string{},
	}
	for _, t := range in.Tags {
		out.Tags[sdkaws.ToString(t.Key)] = sdkaws.ToString(t.Value)
	}
	out.Name = out.Tags[TagName]
	for _, s := range []*string{in.PrivateIpAddress, in.PublicIpAddress} {
		if a, err := netip.ParseAddr(sdkaws.ToString(s)); err == nil {
			out.IPs = append(out.IPs, a)
		}
	}
	if in.LaunchTime != nil {
		out.Created = *in.LaunchTime
	}
	return out
}
