package ec2

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxUserData is EC2's limit on user data, in bytes before base64 encoding.
const MaxUserData = 16 * 1024

// Instance states and their EC2 codes.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
)

var stateCodes = map[string]int{StatePending: 0, StateRunning: 16, StateShuttingDown: 32, StateTerminated: 48, "stopping": 64, "stopped": 80}

// Instance is one instance as the endpoint keeps it.
type Instance struct {
	ID, ReservationID   string
	ImageID             string
	InstanceType        string
	SubnetID            string
	SecurityGroupIDs    []string
	KeyName             string
	ClientToken         string
	LaunchTemplateName  string
	PrivateIP, PublicIP string
	State               string
	LaunchTime          time.Time
	// UserData is the decoded user data.
	UserData []byte
	// Tags are the instance's tags now.
	Tags map[string]string
	// ResourceTags are the tags RunInstances asked for, per resource type
	// ("instance", "volume", "network-interface").
	ResourceTags map[string]map[string]string
	// SevSnp is CpuOptions.AmdSevSnp == "enabled".
	SevSnp bool
	// HTTPTokens is MetadataOptions.HttpTokens ("" when not given).
	HTTPTokens string
	// RootDeviceName and RootVolumeGiB come from the image and BlockDeviceMapping.
	RootDeviceName string
	RootVolumeGiB  int32

	describes     int // describes seen while pending
	downDescribes int // describes seen while shutting down
}

func (in *Instance) clone() Instance {
	c := *in
	c.SecurityGroupIDs = slices.Clone(in.SecurityGroupIDs)
	c.UserData = slices.Clone(in.UserData)
	c.Tags = maps.Clone(in.Tags)
	c.ResourceTags = map[string]map[string]string{}
	for k, v := range in.ResourceTags {
		c.ResourceTags[k] = maps.Clone(v)
	}
	return c
}

// list returns prefix.1, prefix.2, ... up to the first missing index.
func list(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		k := prefix + "." + strconv.Itoa(i)
		if _, ok := form[k]; !ok {
			return out
		}
		out = append(out, form.Get(k))
	}
}

// tagList reads prefix.N.Key / prefix.N.Value.
func tagList(form url.Values, prefix string) (map[string]string, *apiError) {
	out := map[string]string{}
	for i := 1; ; i++ {
		k := fmt.Sprintf("%s.%d.Key", prefix, i)
		if _, ok := form[k]; !ok {
			break
		}
		key, val := form.Get(k), form.Get(fmt.Sprintf("%s.%d.Value", prefix, i))
		switch {
		case key == "" || len(key) > 128:
			return nil, errorf("InvalidParameterValue", "Tag key %q must be 1 to 128 characters", key)
		case strings.HasPrefix(strings.ToLower(key), "aws:"):
			return nil, errorf("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		case len(val) > 256:
			return nil, errorf("InvalidParameterValue", "Tag value for key %q is longer than 256 characters", key)
		}
		out[key] = val
	}
	if len(out) > 50 {
		return nil, errorf("TagLimitExceeded", "The maximum number of tags per resource is 50")
	}
	return out, nil
}

type filter struct {
	name   string
	values []string
}

func filters(form url.Values) []filter {
	var out []filter
	for i := 1; ; i++ {
		k := fmt.Sprintf("Filter.%d.Name", i)
		if _, ok := form[k]; !ok {
			return out
		}
		out = append(out, filter{name: form.Get(k), values: list(form, fmt.Sprintf("Filter.%d.Value", i))})
	}
}

// matchAny reports whether v matches one of the patterns ('*' and '?' wildcards, as EC2 filters take them).
func matchAny(v string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, v); ok || p == v {
			return true
		}
	}
	return false
}

// page cuts items at the offset in token, returning the page and the next token.
func page[T any](s *Server, items []T, form url.Values, lo, hi, def int) ([]T, string, *apiError) {
	limit := def
	if v := form.Get("MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return nil, "", errorf("InvalidParameterValue", "Value ( %s ) for parameter maxResults is invalid. Expecting a value between %d and %d.", v, lo, hi)
		}
		limit = n
	}
	if s.opts.PageSize > 0 && limit > s.opts.PageSize {
		limit = s.opts.PageSize
	}
	off := 0
	if tok := form.Get("NextToken"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "offset:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(raw), "offset:") || n < 0 || n > len(items) {
			return nil, "", errorf("InvalidPaginationToken", "The pagination token %q is not valid", tok)
		}
		off = n
	}
	end := min(off+limit, len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
	}
	return items[off:end], next, nil
}

func (s *Server) instanceType(name string) (InstanceType, bool) {
	for _, t := range s.types {
		if t.Name == name {
			return t, true
		}
	}
	return InstanceType{}, false
}

var resourceTypes = map[string]bool{"instance": true, "volume": true, "network-interface": true, "spot-instances-request": true, "elastic-gpu": true}

func (s *Server) runInstances(form url.Values, reqID string) (any, *apiError) {
	if form.Get("MinCount") != "1" || form.Get("MaxCount") != "1" {
		return nil, errorf("InvalidParameterValue", "this endpoint launches exactly one instance: MinCount and MaxCount must be 1 (got %q, %q)", form.Get("MinCount"), form.Get("MaxCount"))
	}
	token := form.Get("ClientToken")
	if len(token) > 64 {
		return nil, errorf("InvalidParameterValue", "Value (%s) for parameter clientToken is invalid. Length exceeds maximum of 64 characters", token)
	}
	// Identical parameters identify a retry; the form encodes sorted.
	key := form.Encode()

	s.mu.Lock()
	defer s.mu.Unlock()
	if token != "" {
		if rec, ok := s.tokens[token]; ok {
			if rec.paramsKey != key {
				return nil, errorf("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return xmlRunInstancesResponse{Xmlns: Namespace, RequestID: reqID, xmlReservation: s.reservationXML(rec.instance)}, nil
		}
	}

	in := &Instance{
		ClientToken:  token,
		SubnetID:     form.Get("SubnetId"),
		KeyName:      form.Get("KeyName"),
		ImageID:      form.Get("ImageId"),
		InstanceType: form.Get("InstanceType"),
		HTTPTokens:   form.Get("MetadataOptions.HttpTokens"),
		ResourceTags: map[string]map[string]string{},
		Tags:         map[string]string{},
	}
	in.SecurityGroupIDs = list(form, "SecurityGroupId")
	if lt := form.Get("LaunchTemplate.LaunchTemplateName"); lt != "" {
		in.LaunchTemplateName = lt
		if in.ImageID == "" {
			in.ImageID = DefaultImage.ID
		}
		if in.InstanceType == "" {
			in.InstanceType = "m6a.large"
		}
	}
	if in.ImageID == "" {
		return nil, errorf("MissingParameter", "The request must contain the parameter ImageId")
	}
	if !strings.HasPrefix(in.ImageID, "ami-") {
		return nil, errorf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", in.ImageID)
	}
	img, ok := s.images[in.ImageID]
	if !ok {
		return nil, errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", in.ImageID)
	}
	if in.InstanceType == "" {
		in.InstanceType = "m1.small" // EC2's historical default, absent from the catalogue
	}
	it, ok := s.instanceType(in.InstanceType)
	if !ok {
		return nil, errorf("InvalidParameterValue", "Invalid value '%s' for InstanceType.", in.InstanceType)
	}
	switch v := form.Get("CpuOptions.AmdSevSnp"); v {
	case "enabled":
		if !it.SevSnp {
			return nil, errorf("InvalidParameterCombination", "AMD SEV-SNP is not supported with instance type %s", it.Name)
		}
		in.SevSnp = true
	case "", "disabled":
	default:
		return nil, errorf("InvalidParameterValue", "Invalid value '%s' for CpuOptions.AmdSevSnp", v)
	}
	switch in.HTTPTokens {
	case "", "optional", "required":
	default:
		return nil, errorf("InvalidParameterValue", "Invalid value '%s' for MetadataOptions.HttpTokens", in.HTTPTokens)
	}
	if ud := form.Get("UserData"); ud != "" {
		raw, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, errorf("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if len(raw) > MaxUserData {
			return nil, errorf("InvalidParameterValue", "User data is limited to %d bytes", MaxUserData)
		}
		in.UserData = raw
	}
	if in.SubnetID != "" && !strings.HasPrefix(in.SubnetID, "subnet-") {
		return nil, errorf("InvalidSubnetID.Malformed", "The subnet ID '%s' is malformed", in.SubnetID)
	}
	nics := form.Get("NetworkInterface.1.DeviceIndex") != "" || form.Get("NetworkInterface.1.AssociatePublicIpAddress") != ""
	if nics {
		if in.SubnetID != "" || len(in.SecurityGroupIDs) > 0 {
			return nil, errorf("InvalidParameterCombination", "Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request")
		}
		in.SubnetID = form.Get("NetworkInterface.1.SubnetId")
		in.SecurityGroupIDs = list(form, "NetworkInterface.1.SecurityGroupId")
	}
	for _, g := range in.SecurityGroupIDs {
		if !strings.HasPrefix(g, "sg-") {
			return nil, errorf("InvalidGroupId.Malformed", "Invalid id: %q (expecting \"sg-...\")", g)
		}
	}
	in.RootDeviceName, in.RootVolumeGiB = img.RootDeviceName, img.SizeGiB
	for i := 1; ; i++ {
		p := fmt.Sprintf("BlockDeviceMapping.%d.", i)
		dev := form.Get(p + "DeviceName")
		if dev == "" {
			break
		}
		if v := form.Get(p + "Ebs.VolumeSize"); v != "" && dev == img.RootDeviceName {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 16384 {
				return nil, errorf("InvalidParameterValue", "Invalid value '%s' for volumeSize", v)
			}
			if int32(n) < img.SizeGiB {
				return nil, errorf("InvalidBlockDeviceMapping", "Volume of size %dGB is smaller than snapshot, expect size >= %dGB", n, img.SizeGiB)
			}
			in.RootVolumeGiB = int32(n)
		}
	}
	for i := 1; ; i++ {
		p := fmt.Sprintf("TagSpecification.%d.", i)
		rt, ok := form[p+"ResourceType"]
		if !ok {
			break
		}
		if !resourceTypes[rt[0]] {
			return nil, errorf("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt[0])
		}
		tags, aerr := tagList(form, p+"Tag")
		if aerr != nil {
			return nil, aerr
		}
		in.ResourceTags[rt[0]] = tags
	}
	maps.Copy(in.Tags, in.ResourceTags["instance"])

	s.seq++
	in.ID = randomID("i")
	in.ReservationID = randomID("r")
	in.PrivateIP = fmt.Sprintf("10.0.%d.%d", s.seq/250, s.seq%250+4)
	if form.Get("NetworkInterface.1.AssociatePublicIpAddress") == "true" {
		in.PublicIP = fmt.Sprintf("198.18.%d.%d", s.seq/250, s.seq%250+4)
	}
	in.State = StatePending
	in.LaunchTime = time.Now().UTC().Truncate(time.Millisecond)
	s.instances = append(s.instances, in)
	s.byID[in.ID] = in
	if token != "" {
		s.tokens[token] = tokenRecord{paramsKey: key, instance: in}
	}
	return xmlRunInstancesResponse{Xmlns: Namespace, RequestID: reqID, xmlReservation: s.reservationXML(in)}, nil
}

func (s *Server) reservationXML(in *Instance) xmlReservation {
	return xmlReservation{ReservationID: in.ReservationID, OwnerID: "123456789012", Instances: []xmlInstance{instanceXML(in)}}
}

func instanceXML(in *Instance) xmlInstance {
	x := xmlInstance{
		InstanceID:     in.ID,
		ImageID:        in.ImageID,
		State:          xmlState{Code: stateCodes[in.State], Name: in.State},
		KeyName:        in.KeyName,
		InstanceType:   in.InstanceType,
		LaunchTime:     in.LaunchTime.Format("2006-01-02T15:04:05.000Z"),
		SubnetID:       in.SubnetID,
		Architecture:   "x86_64",
		RootDeviceType: "ebs",
		RootDeviceName: in.RootDeviceName,
		ClientToken:    in.ClientToken,
		MetadataOptions: xmlMetadata{State: "applied", HTTPTokens: orDefault(in.HTTPTokens, "optional"),
			HTTPEndpoint: "enabled"},
	}
	if in.SevSnp {
		x.CPUOptions.AmdSevSnp = "enabled"
	}
	if in.State != StateTerminated {
		x.PrivateIPAddress = in.PrivateIP
		x.PrivateDNSName = "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + ".ec2.internal"
		x.IPAddress = in.PublicIP
		x.VpcID = "vpc-0000000000000000a"
		x.BlockDeviceMapping = []xmlBlockDevice{{DeviceName: in.RootDeviceName, EBS: xmlEBS{
			VolumeID: "vol-" + in.ID[2:], Status: "attached", DeleteOnTermination: true}}}
		nic := xmlNIC{NetworkInterfaceID: "eni-" + in.ID[2:], SubnetID: in.SubnetID, PrivateIPAddress: in.PrivateIP, Status: "in-use"}
		for _, g := range in.SecurityGroupIDs {
			nic.Groups = append(nic.Groups, xmlGroup{GroupID: g})
			x.Groups = append(x.Groups, xmlGroup{GroupID: g})
		}
		x.NetworkInterfaces = []xmlNIC{nic}
	}
	for _, k := range slices.Sorted(maps.Keys(in.Tags)) {
		x.Tags = append(x.Tags, xmlTag{Key: k, Value: in.Tags[k]})
	}
	return x
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// advance moves an instance along its life cycle by one describe. Callers hold s.mu.
func (s *Server) advance(in *Instance) {
	switch in.State {
	case StatePending:
		in.describes++
		if in.describes > s.opts.PendingDescribes && time.Since(in.LaunchTime) >= s.opts.PendingFor {
			in.State = StateRunning
		}
	case StateShuttingDown:
		in.downDescribes++
		if in.downDescribes >= s.opts.ShuttingDownDescribes {
			in.State = StateTerminated
		}
	}
}

// lookup resolves InstanceId.N parameters. Callers hold s.mu.
func (s *Server) lookup(ids []string) ([]*Instance, *apiError) {
	var out, missing = []*Instance{}, []string{}
	for _, id := range ids {
		if !strings.HasPrefix(id, "i-") {
			return nil, errorf("InvalidInstanceID.Malformed", "Invalid id: %q", id)
		}
		in, ok := s.byID[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		out = append(out, in)
	}
	if len(missing) == 1 {
		return nil, errorf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", missing[0])
	}
	if len(missing) > 1 {
		return nil, errorf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
	}
	return out, nil
}

func instanceMatches(in *Instance, f filter) (bool, *apiError) {
	switch {
	case strings.HasPrefix(f.name, "tag:"):
		v, ok := in.Tags[strings.TrimPrefix(f.name, "tag:")]
		return ok && matchAny(v, f.values), nil
	case f.name == "tag-key":
		for k := range in.Tags {
			if matchAny(k, f.values) {
				return true, nil
			}
		}
		return false, nil
	case f.name == "instance-state-name":
		return matchAny(in.State, f.values), nil
	case f.name == "instance-state-code":
		return matchAny(strconv.Itoa(stateCodes[in.State]), f.values), nil
	case f.name == "client-token":
		return in.ClientToken != "" && matchAny(in.ClientToken, f.values), nil
	case f.name == "instance-id":
		return matchAny(in.ID, f.values), nil
	case f.name == "instance-type":
		return matchAny(in.InstanceType, f.values), nil
	case f.name == "image-id":
		return matchAny(in.ImageID, f.values), nil
	case f.name == "subnet-id":
		return matchAny(in.SubnetID, f.values), nil
	}
	return false, errorf("InvalidParameterValue", "The filter '%s' is invalid", f.name)
}

func (s *Server) describeInstances(form url.Values, reqID string) (any, *apiError) {
	ids := list(form, "InstanceId")
	if len(ids) > 0 && form.Get("MaxResults") != "" {
		return nil, errorf("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	fs := filters(form)
	s.mu.Lock()
	defer s.mu.Unlock()
	cands := s.instances
	if len(ids) > 0 {
		var aerr *apiError
		if cands, aerr = s.lookup(ids); aerr != nil {
			return nil, aerr
		}
	}
	var match []*Instance
	for _, in := range cands {
		s.advance(in)
		ok := true
		for _, f := range fs {
			m, aerr := instanceMatches(in, f)
			if aerr != nil {
				return nil, aerr
			}
			ok = ok && m
		}
		if ok {
			match = append(match, in)
		}
	}
	pg, next, aerr := page(s, match, form, 5, 1000, 1000)
	if aerr != nil {
		return nil, aerr
	}
	resp := xmlDescribeInstancesResponse{Xmlns: Namespace, RequestID: reqID, NextToken: next, Reservations: []xmlReservation{}}
	for _, in := range pg {
		resp.Reservations = append(resp.Reservations, s.reservationXML(in))
	}
	return resp, nil
}

func (s *Server) terminateInstances(form url.Values, reqID string) (any, *apiError) {
	ids := list(form, "InstanceId")
	if len(ids) == 0 {
		return nil, errorf("MissingParameter", "The request must contain the parameter InstanceId")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ins, aerr := s.lookup(ids)
	if aerr != nil {
		return nil, aerr
	}
	resp := xmlTerminateInstancesResponse{Xmlns: Namespace, RequestID: reqID}
	for _, in := range ins {
		prev := in.State
		if in.State != StateTerminated {
			in.State = StateShuttingDown
		}
		resp.Instances = append(resp.Instances, xmlStateChange{InstanceID: in.ID,
			CurrentState:  xmlState{Code: stateCodes[in.State], Name: in.State},
			PreviousState: xmlState{Code: stateCodes[prev], Name: prev}})
	}
	return resp, nil
}

func (s *Server) createTags(form url.Values, reqID string) (any, *apiError) {
	ids := list(form, "ResourceId")
	if len(ids) == 0 {
		return nil, errorf("MissingParameter", "The request must contain the parameter ResourceId")
	}
	tags, aerr := tagList(form, "Tag")
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ins []*Instance
	for _, id := range ids {
		if strings.HasPrefix(id, "i-") {
			got, aerr := s.lookup([]string{id})
			if aerr != nil {
				return nil, aerr
			}
			ins = append(ins, got...)
		}
	}
	for _, in := range ins {
		maps.Copy(in.Tags, tags)
		if len(in.Tags) > 50 {
			return nil, errorf("TagLimitExceeded", "The maximum number of tags per resource is 50")
		}
	}
	return xmlReturnResponse{XMLName: xmlName("CreateTagsResponse"), Xmlns: Namespace, RequestID: reqID, Return: true}, nil
}

func (s *Server) describeImages(form url.Values, reqID string) (any, *apiError) {
	ids := list(form, "ImageId")
	s.mu.Lock()
	defer s.mu.Unlock()
	var imgs []Image
	if len(ids) == 0 {
		for _, k := range slices.Sorted(maps.Keys(s.images)) {
			imgs = append(imgs, s.images[k])
		}
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "ami-") {
			return nil, errorf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", id)
		}
		im, ok := s.images[id]
		if !ok {
			return nil, errorf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
		imgs = append(imgs, im)
	}
	resp := xmlDescribeImagesResponse{Xmlns: Namespace, RequestID: reqID, Images: []xmlImage{}}
	for _, im := range imgs {
		resp.Images = append(resp.Images, xmlImage{
			ImageID: im.ID, ImageLocation: "123456789012/podvm", ImageState: "available", OwnerID: "123456789012",
			Architecture: "x86_64", ImageType: "machine", Name: "podvm-" + im.ID, RootDeviceType: "ebs",
			RootDeviceName: im.RootDeviceName, VirtualizationType: "hvm", BootMode: "uefi", TpmSupport: "v2.0",
			BlockDeviceMapping: []xmlBlockDevice{{DeviceName: im.RootDeviceName, EBS: xmlEBS{
				SnapshotID: "snap-" + strings.TrimPrefix(im.ID, "ami-"), VolumeSize: im.SizeGiB, DeleteOnTermination: true}}},
		})
	}
	return resp, nil
}

func (s *Server) describeInstanceTypes(form url.Values, reqID string) (any, *apiError) {
	names := list(form, "InstanceType")
	fs := filters(form)
	s.mu.Lock()
	defer s.mu.Unlock()
	cands := s.types
	if len(names) > 0 {
		cands = nil
		for _, n := range names {
			t, ok := s.instanceType(n)
			if !ok {
				return nil, errorf("InvalidInstanceType", "The following supplied instance types do not exist: [%s]", n)
			}
			cands = append(cands, t)
		}
	}
	var match []InstanceType
	for _, t := range cands {
		ok := true
		for _, f := range fs {
			switch f.name {
			case "instance-type":
				ok = ok && matchAny(t.Name, f.values)
			case "processor-info.supported-features":
				var feats []string
				if t.SevSnp {
					feats = []string{"amd-sev-snp"}
				}
				hit := false
				for _, ft := range feats {
					hit = hit || matchAny(ft, f.values)
				}
				ok = ok && hit
			default:
				return nil, errorf("InvalidParameterValue", "The filter '%s' is invalid", f.name)
			}
		}
		if ok {
			match = append(match, t)
		}
	}
	pg, next, aerr := page(s, match, form, 5, 100, 100)
	if aerr != nil {
		return nil, aerr
	}
	resp := xmlDescribeInstanceTypesResponse{Xmlns: Namespace, RequestID: reqID, NextToken: next, Types: []xmlInstanceType{}}
	for _, t := range pg {
		x := xmlInstanceType{InstanceType: t.Name, CurrentGeneration: true, DefaultVCPUs: t.VCPUs, MemoryMiB: t.MemoryMiB,
			Architectures: []string{"x86_64"}, Manufacturer: "AMD"}
		if t.SevSnp {
			x.Features = []string{"amd-sev-snp"}
		}
		if t.GPUs > 0 {
			x.GPUs = []xmlGPU{{Name: "A10G", Manufacturer: "NVIDIA", Count: t.GPUs, MemoryMiB: 22888}}
		}
		resp.Types = append(resp.Types, x)
	}
	return resp, nil
}
