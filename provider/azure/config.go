package azure

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/peerpod/peerpod/provider"
)

// DefaultInstanceSize is the VM size used when AZURE_INSTANCE_SIZE is unset:
// the smallest AMD SEV-SNP confidential size.
const DefaultInstanceSize = "Standard_DC2as_v5"

// DefaultSSHUsername is the admin user name Azure requires on a Linux VM.
const DefaultSSHUsername = "peerpod"

// MaxUserDataBytes is Azure's limit on a VM's base64-encoded user data.
const MaxUserDataBytes = 64 * 1024

// Config is the Azure provider's configuration. Every field comes from the
// cloud-api-adaptor environment key named in its comment. Credentials are
// not part of it: azidentity reads AZURE_CLIENT_ID, AZURE_CLIENT_SECRET,
// AZURE_TENANT_ID (or workload / managed identity) on its own.
type Config struct {
	// SubscriptionID (AZURE_SUBSCRIPTION_ID, required) is where VMs are made.
	SubscriptionID string
	// Region (AZURE_REGION, required) is the location of every resource.
	Region string
	// ResourceGroup (AZURE_RESOURCE_GROUP, required) holds the VMs, NICs,
	// public IPs and disks.
	ResourceGroup string
	// SubnetID (AZURE_SUBNET_ID, required) is the ARM id of the subnet the
	// VMs' NICs join.
	SubnetID string
	// ImageID (AZURE_IMAGE_ID, required) is a managed image, a gallery image
	// (version) ARM id, or a community gallery path /CommunityGalleries/....
	ImageID string
	// NSGID (AZURE_NSG_ID, optional) is the network security group put on each NIC.
	NSGID string
	// InstanceSize (AZURE_INSTANCE_SIZE, default Standard_DC2as_v5) is the
	// size used when a request names none.
	InstanceSize string
	// InstanceSizes (AZURE_INSTANCE_SIZES, optional) is the allow-list of
	// sizes; empty means only InstanceSize.
	InstanceSizes []string
	// Zone (AZURE_ZONE, optional) is the availability zone ("1", "2", "3")
	// the VM and its public IP are placed in; empty lets Azure choose.
	Zone string
	// SecureBoot (ENABLE_SECURE_BOOT, default false) turns on UEFI secure boot.
	SecureBoot bool
	// PublicIP (USE_PUBLIC_IP, default false) gives each VM a public IP,
	// which then comes first in the reported addresses.
	PublicIP bool
	// RootVolumeSizeGiB (ROOT_VOLUME_SIZE, default 0 = the image's size) is
	// the OS disk size.
	RootVolumeSizeGiB int32
	// SSHUsername (SSH_USERNAME, default peerpod) is the VM's admin user.
	SSHUsername string
	// Tags (TAGS, "k=v,...") are added to every resource.
	Tags map[string]string
	// DisableCVM (DISABLECVM, default false) makes ordinary VMs without the
	// confidential profile (for development on non-confidential sizes).
	DisableCVM bool
}

var (
	uuidRE       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	regionRE     = regexp.MustCompile(`^[a-zA-Z0-9]+$`)
	rgRE         = regexp.MustCompile(`^[-\w._()]{1,90}$`)
	sizeRE       = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	userRE       = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	communityRE  = regexp.MustCompile(`(?i)^/CommunityGalleries/[^/]+/Images/[^/]+(/Versions/[^/]+)?$`)
	sharedRE     = regexp.MustCompile(`(?i)^/SharedGalleries/[^/]+/Images/[^/]+(/Versions/[^/]+)?$`)
	maxRootGiB   = int64(4095)
	validZones   = map[string]bool{"1": true, "2": true, "3": true}
	reservedUser = map[string]bool{"root": true, "admin": true, "administrator": true, "guest": true, "user": true, "test": true}
)

// LoadConfig reads the configuration through getenv (os.Getenv in
// production) and validates it. Errors are classified ErrInvalidConfig and
// name the key and what is wrong with it.
func LoadConfig(getenv func(string) string) (*Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	c := &Config{
		SubscriptionID: get("AZURE_SUBSCRIPTION_ID"),
		Region:         get("AZURE_REGION"),
		ResourceGroup:  get("AZURE_RESOURCE_GROUP"),
		SubnetID:       get("AZURE_SUBNET_ID"),
		ImageID:        get("AZURE_IMAGE_ID"),
		NSGID:          get("AZURE_NSG_ID"),
		InstanceSize:   get("AZURE_INSTANCE_SIZE"),
		InstanceSizes:  provider.ParseList(get("AZURE_INSTANCE_SIZES")),
		Zone:           get("AZURE_ZONE"),
		SSHUsername:    get("SSH_USERNAME"),
	}
	if c.InstanceSize == "" {
		c.InstanceSize = DefaultInstanceSize
	}
	if c.SSHUsername == "" {
		c.SSHUsername = DefaultSSHUsername
	}
	var err error
	for _, b := range []struct {
		key string
		dst *bool
	}{
		{"ENABLE_SECURE_BOOT", &c.SecureBoot},
		{"USE_PUBLIC_IP", &c.PublicIP},
		{"DISABLECVM", &c.DisableCVM},
	} {
		if *b.dst, err = parseBool(b.key, get(b.key)); err != nil {
			return nil, err
		}
	}
	if v := get("ROOT_VOLUME_SIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 || n > maxRootGiB {
			return nil, invalid("ROOT_VOLUME_SIZE", "%q is not a whole number of GiB between 0 and %d", v, maxRootGiB)
		}
		c.RootVolumeSizeGiB = int32(n)
	}
	if c.Tags, err = provider.ParseTags(getenv("TAGS")); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every field and names the key of the first bad one.
func (c *Config) Validate() error {
	for _, r := range []struct{ key, val string }{
		{"AZURE_SUBSCRIPTION_ID", c.SubscriptionID},
		{"AZURE_REGION", c.Region},
		{"AZURE_RESOURCE_GROUP", c.ResourceGroup},
		{"AZURE_SUBNET_ID", c.SubnetID},
		{"AZURE_IMAGE_ID", c.ImageID},
	} {
		if r.val == "" {
			return invalid(r.key, "is required")
		}
	}
	if !uuidRE.MatchString(c.SubscriptionID) {
		return invalid("AZURE_SUBSCRIPTION_ID", "%q is not a subscription id (a UUID)", c.SubscriptionID)
	}
	if !regionRE.MatchString(c.Region) {
		return invalid("AZURE_REGION", "%q is not a region name such as eastus2", c.Region)
	}
	if !rgRE.MatchString(c.ResourceGroup) || strings.HasSuffix(c.ResourceGroup, ".") {
		return invalid("AZURE_RESOURCE_GROUP", "%q is not a resource group name (1-90 letters, digits, -_.(), not ending in '.')", c.ResourceGroup)
	}
	if err := checkARMID("AZURE_SUBNET_ID", c.SubnetID, "Microsoft.Network/virtualNetworks/subnets"); err != nil {
		return err
	}
	if c.NSGID != "" {
		if err := checkARMID("AZURE_NSG_ID", c.NSGID, "Microsoft.Network/networkSecurityGroups"); err != nil {
			return err
		}
	}
	if _, err := imageReference(c.ImageID); err != nil {
		return err
	}
	if !sizeRE.MatchString(c.InstanceSize) {
		return invalid("AZURE_INSTANCE_SIZE", "%q is not a VM size name such as %s", c.InstanceSize, DefaultInstanceSize)
	}
	for _, s := range c.InstanceSizes {
		if !sizeRE.MatchString(s) {
			return invalid("AZURE_INSTANCE_SIZES", "%q is not a VM size name such as %s", s, DefaultInstanceSize)
		}
	}
	if c.Zone != "" && !validZones[c.Zone] {
		return invalid("AZURE_ZONE", "%q is not an availability zone (1, 2 or 3)", c.Zone)
	}
	if c.RootVolumeSizeGiB < 0 || int64(c.RootVolumeSizeGiB) > maxRootGiB {
		return invalid("ROOT_VOLUME_SIZE", "%d is not between 0 and %d GiB", c.RootVolumeSizeGiB, maxRootGiB)
	}
	if !userRE.MatchString(c.SSHUsername) || reservedUser[c.SSHUsername] {
		return invalid("SSH_USERNAME", "%q is not a Linux user name Azure accepts (lower case, at most 32 characters, not a reserved name)", c.SSHUsername)
	}
	for k, v := range c.Tags {
		if err := checkTag(k, v); err != nil {
			return invalid("TAGS", "%v", err)
		}
	}
	return nil
}

// allowed reports whether size may be used: it is the default size or in
// the allow-list.
func (c *Config) allowed(size string) bool {
	if strings.EqualFold(size, c.InstanceSize) {
		return true
	}
	for _, s := range c.InstanceSizes {
		if strings.EqualFold(s, size) {
			return true
		}
	}
	return false
}

func parseBool(key, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid(key, "%q is not a boolean (true or false)", v)
	}
	return b, nil
}

// checkARMID checks that id is an ARM resource id of type typ.
func checkARMID(key, id, typ string) error {
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return invalid(key, "%q is not an ARM resource id (/subscriptions/.../resourceGroups/.../providers/%s/...)", id, typ)
	}
	if !strings.EqualFold(rid.ResourceType.String(), typ) {
		return invalid(key, "%q is a %s, want a %s", id, rid.ResourceType.String(), typ)
	}
	return nil
}

func invalid(key, format string, args ...any) error {
	return provider.Errorf(provider.ErrInvalidConfig, "%s: %s", key, fmt.Sprintf(format, args...))
}
