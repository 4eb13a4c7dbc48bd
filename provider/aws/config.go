package aws

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/peerpod/peerpod/provider"
)

// Config keys, as cloud-api-adaptor names them.
const (
	KeyImageID            = "PODVM_AMI_ID"
	KeyInstanceType       = "PODVM_INSTANCE_TYPE"
	KeyInstanceTypes      = "PODVM_INSTANCE_TYPES"
	KeyRegion             = "AWS_REGION"
	KeySubnetID           = "AWS_SUBNET_ID"
	KeySecurityGroupIDs   = "AWS_SG_IDS"
	KeyKeyName            = "SSH_KP_NAME"
	KeyUsePublicIP        = "USE_PUBLIC_IP"
	KeyRootVolumeSize     = "ROOT_VOLUME_SIZE"
	KeyUseLaunchTemplate  = "USE_PODVM_LAUNCHTEMPLATE"
	KeyLaunchTemplateName = "PODVM_LAUNCHTEMPLATE_NAME"
	KeyTags               = "TAGS"
	KeyDisableCVM         = "DISABLECVM"
	KeyAccessKeyID        = "AWS_ACCESS_KEY_ID"
	KeySecretAccessKey    = "AWS_SECRET_ACCESS_KEY"
	KeySessionToken       = "AWS_SESSION_TOKEN"
)

// Defaults.
const (
	DefaultInstanceType       = "m6a.large"
	DefaultRootVolumeGiB      = 30
	DefaultLaunchTemplateName = "kata"
	// MaxRootVolumeGiB is the largest EBS volume EC2 makes (16 TiB).
	MaxRootVolumeGiB = 16384
)

// SevSnpFamilies are the instance families on which EC2 offers AMD SEV-SNP
// (the EC2 API reference of CpuOptionsRequest.AmdSevSnp: M6a, R6a and C6a only).
var SevSnpFamilies = []string{"m6a", "c6a", "r6a"}

// Secret is a credential value. It prints as "[redacted]" in every format and
// in slog, so a Config can be logged whole.
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalText implements encoding.TextMarshaler, so JSON and text encoders redact too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Config is the AWS provider's configuration.
type Config struct {
	// ImageID is the pod VM AMI (PODVM_AMI_ID, required).
	ImageID string
	// InstanceType is the default instance type (PODVM_INSTANCE_TYPE, default m6a.large).
	InstanceType string
	// InstanceTypes is the allow-list of instance types (PODVM_INSTANCE_TYPES, comma separated).
	// Empty: only InstanceType is allowed.
	InstanceTypes []string
	// Region (AWS_REGION); empty: the SDK's shared config, then the node's IMDS.
	Region string
	// SubnetID (AWS_SUBNET_ID); empty: the node's subnet from IMDS.
	SubnetID string
	// SecurityGroupIDs (AWS_SG_IDS, comma separated); empty: the node's groups from IMDS.
	SecurityGroupIDs []string
	// KeyName is an EC2 key pair for SSH into the pod VM (SSH_KP_NAME); empty: none.
	KeyName string
	// UsePublicIP gives the VM a public IPv4 address on its primary network
	// interface (USE_PUBLIC_IP). No Elastic IP is made.
	UsePublicIP bool
	// RootVolumeGiB is the root volume size (ROOT_VOLUME_SIZE, default 30);
	// an image whose root snapshot is larger keeps its own size.
	RootVolumeGiB int32
	// UseLaunchTemplate launches from LaunchTemplateName (USE_PODVM_LAUNCHTEMPLATE).
	UseLaunchTemplate bool
	// LaunchTemplateName (PODVM_LAUNCHTEMPLATE_NAME, default kata).
	LaunchTemplateName string
	// Tags are put on every instance, volume and network interface (TAGS, k=v,...).
	Tags map[string]string
	// DisableCVM launches ordinary instances without AMD SEV-SNP (DISABLECVM).
	DisableCVM bool
	// AccessKeyID, SecretAccessKey and SessionToken are static credentials
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); empty:
	// the SDK's default chain (environment, shared files, IRSA web identity).
	AccessKeyID     Secret
	SecretAccessKey Secret
	SessionToken    Secret
}

var (
	reImage    = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	reSubnet   = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	reSG       = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
	reRegion   = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	reType     = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9-]+$`)
	reTemplate = regexp.MustCompile(`^[a-zA-Z0-9().\-/_]{3,128}$`)
)

// LoadConfig reads the configuration from getenv (os.Getenv in production)
// and validates it. Errors are classified provider.ErrInvalidConfig and name the key.
func LoadConfig(getenv func(string) string) (*Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	c := &Config{
		ImageID:            get(KeyImageID),
		InstanceType:       get(KeyInstanceType),
		InstanceTypes:      splitList(get(KeyInstanceTypes)),
		Region:             get(KeyRegion),
		SubnetID:           get(KeySubnetID),
		SecurityGroupIDs:   splitList(get(KeySecurityGroupIDs)),
		KeyName:            get(KeyKeyName),
		LaunchTemplateName: get(KeyLaunchTemplateName),
		RootVolumeGiB:      DefaultRootVolumeGiB,
		AccessKeyID:        Secret(get(KeyAccessKeyID)),
		SecretAccessKey:    Secret(get(KeySecretAccessKey)),
		SessionToken:       Secret(get(KeySessionToken)),
	}
	if c.InstanceType == "" {
		c.InstanceType = DefaultInstanceType
	}
	if c.LaunchTemplateName == "" {
		c.LaunchTemplateName = DefaultLaunchTemplateName
	}
	var err error
	if c.UsePublicIP, err = parseBool(KeyUsePublicIP, get(KeyUsePublicIP)); err != nil {
		return nil, err
	}
	if c.UseLaunchTemplate, err = parseBool(KeyUseLaunchTemplate, get(KeyUseLaunchTemplate)); err != nil {
		return nil, err
	}
	if c.DisableCVM, err = parseBool(KeyDisableCVM, get(KeyDisableCVM)); err != nil {
		return nil, err
	}
	if v := get(KeyRootVolumeSize); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return nil, provider.Errorf(provider.ErrInvalidConfig, "%s: %q is not a whole number of GiB", KeyRootVolumeSize, v)
		}
		c.RootVolumeGiB = int32(n)
	}
	if c.Tags, err = provider.ParseTags(getenv(KeyTags)); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the configuration without calling AWS; errors name the key.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return provider.Errorf(provider.ErrInvalidConfig, "%s: %s", key, fmt.Sprintf(format, args...))
	}
	switch {
	case c.ImageID == "" && !c.UseLaunchTemplate:
		return bad(KeyImageID, "required: the pod VM AMI id (ami-...)")
	case c.ImageID != "" && !reImage.MatchString(c.ImageID):
		return bad(KeyImageID, "%q is not an AMI id (ami- and 8 to 17 hex digits)", c.ImageID)
	case !reType.MatchString(c.InstanceType):
		return bad(KeyInstanceType, "%q is not an instance type (family.size)", c.InstanceType)
	case c.Region != "" && !reRegion.MatchString(c.Region):
		return bad(KeyRegion, "%q is not a region name (like us-east-2)", c.Region)
	case c.SubnetID != "" && !reSubnet.MatchString(c.SubnetID):
		return bad(KeySubnetID, "%q is not a subnet id (subnet-...)", c.SubnetID)
	case c.RootVolumeGiB < 1 || c.RootVolumeGiB > MaxRootVolumeGiB:
		return bad(KeyRootVolumeSize, "%d GiB is outside 1..%d", c.RootVolumeGiB, MaxRootVolumeGiB)
	case c.UseLaunchTemplate && !reTemplate.MatchString(c.LaunchTemplateName):
		return bad(KeyLaunchTemplateName, "%q is not a launch template name (3 to 128 of a-z A-Z 0-9 ( ) . - / _)", c.LaunchTemplateName)
	case (c.AccessKeyID == "") != (c.SecretAccessKey == ""):
		if c.AccessKeyID == "" {
			return bad(KeyAccessKeyID, "required when %s is set", KeySecretAccessKey)
		}
		return bad(KeySecretAccessKey, "required when %s is set", KeyAccessKeyID)
	case c.SessionToken != "" && c.AccessKeyID == "":
		return bad(KeySessionToken, "set without %s and %s", KeyAccessKeyID, KeySecretAccessKey)
	}
	for _, g := range c.SecurityGroupIDs {
		if !reSG.MatchString(g) {
			return bad(KeySecurityGroupIDs, "%q is not a security group id (sg-...)", g)
		}
	}
	for _, t := range c.InstanceTypes {
		if !reType.MatchString(t) {
			return bad(KeyInstanceTypes, "%q is not an instance type (family.size)", t)
		}
	}
	if !c.DisableCVM {
		if !IsSevSnpType(c.InstanceType) {
			return bad(KeyInstanceType, "%s does not support AMD SEV-SNP (families %s); choose one of them or set %s=true to run pods without a confidential VM",
				c.InstanceType, strings.Join(SevSnpFamilies, ", "), KeyDisableCVM)
		}
		for _, t := range c.InstanceTypes {
			if !IsSevSnpType(t) {
				return bad(KeyInstanceTypes, "%s does not support AMD SEV-SNP (families %s); remove it or set %s=true",
					t, strings.Join(SevSnpFamilies, ", "), KeyDisableCVM)
			}
		}
	}
	return nil
}

// IsSevSnpType reports whether instance type t belongs to a SEV-SNP family.
func IsSevSnpType(t string) bool {
	fam, _, _ := strings.Cut(t, ".")
	for _, f := range SevSnpFamilies {
		if fam == f {
			return true
		}
	}
	return false
}

// AllowedTypes is the allow-list in effect: InstanceTypes, or only InstanceType when that is empty.
func (c *Config) AllowedTypes() []string {
	if len(c.InstanceTypes) > 0 {
		return c.InstanceTypes
	}
	return []string{c.InstanceType}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseBool(key, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, provider.Errorf(provider.ErrInvalidConfig, "%s: %q is not true or false", key, v)
	}
	return b, nil
}
