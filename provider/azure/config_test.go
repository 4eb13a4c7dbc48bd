package azure

import (
	"errors"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/provider"
)

func goodEnv() map[string]string {
	return map[string]string{
		"AZURE_SUBSCRIPTION_ID": testSub,
		"AZURE_REGION":          testRegion,
		"AZURE_RESOURCE_GROUP":  testRG,
		"AZURE_SUBNET_ID":       testSubnet,
		"AZURE_IMAGE_ID":        testImage,
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	env := goodEnv()
	c, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if c.InstanceSize != DefaultInstanceSize || c.SSHUsername != DefaultSSHUsername {
		t.Errorf("defaults: size %q user %q", c.InstanceSize, c.SSHUsername)
	}
	if c.SecureBoot || c.PublicIP || c.DisableCVM || c.RootVolumeSizeGiB != 0 || c.Zone != "" || c.NSGID != "" {
		t.Errorf("unexpected non-default values: %+v", c)
	}
}

func TestLoadConfigAll(t *testing.T) {
	env := goodEnv()
	for k, v := range map[string]string{
		"AZURE_NSG_ID":         testNSG,
		"AZURE_INSTANCE_SIZE":  "Standard_DC4as_v5",
		"AZURE_INSTANCE_SIZES": "Standard_DC2as_v5, Standard_DC4as_v5",
		"AZURE_ZONE":           "3",
		"ENABLE_SECURE_BOOT":   "true",
		"USE_PUBLIC_IP":        "1",
		"ROOT_VOLUME_SIZE":     "40",
		"SSH_USERNAME":         "podadmin",
		"TAGS":                 "team=pods, cost-center=42",
		"DISABLECVM":           "false",
		"AZURE_CLIENT_SECRET":  "must-not-matter",
	} {
		env[k] = v
	}
	c, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if c.NSGID != testNSG || c.InstanceSize != "Standard_DC4as_v5" || len(c.InstanceSizes) != 2 ||
		c.Zone != "3" || !c.SecureBoot || !c.PublicIP || c.RootVolumeSizeGiB != 40 ||
		c.SSHUsername != "podadmin" || c.Tags["cost-center"] != "42" || c.DisableCVM {
		t.Errorf("LoadConfig = %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"no subscription", map[string]string{"AZURE_SUBSCRIPTION_ID": ""}, "AZURE_SUBSCRIPTION_ID: is required"},
		{"no region", map[string]string{"AZURE_REGION": ""}, "AZURE_REGION: is required"},
		{"no resource group", map[string]string{"AZURE_RESOURCE_GROUP": ""}, "AZURE_RESOURCE_GROUP: is required"},
		{"no subnet", map[string]string{"AZURE_SUBNET_ID": ""}, "AZURE_SUBNET_ID: is required"},
		{"no image", map[string]string{"AZURE_IMAGE_ID": ""}, "AZURE_IMAGE_ID: is required"},
		{"subscription not a UUID", map[string]string{"AZURE_SUBSCRIPTION_ID": "my-sub"}, `AZURE_SUBSCRIPTION_ID: "my-sub" is not a subscription id`},
		{"region with spaces", map[string]string{"AZURE_REGION": "East US"}, `AZURE_REGION: "East US" is not a region name`},
		{"resource group ends in dot", map[string]string{"AZURE_RESOURCE_GROUP": "rg."}, `AZURE_RESOURCE_GROUP: "rg." is not a resource group name`},
		{"resource group bad char", map[string]string{"AZURE_RESOURCE_GROUP": "rg/x"}, `AZURE_RESOURCE_GROUP: "rg/x" is not a resource group name`},
		{"subnet not an ARM id", map[string]string{"AZURE_SUBNET_ID": "pods"}, `AZURE_SUBNET_ID: "pods" is not an ARM resource id`},
		{"subnet is a vnet", map[string]string{"AZURE_SUBNET_ID": "/subscriptions/" + testSub + "/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet"},
			"AZURE_SUBNET_ID: \"/subscriptions/" + testSub + "/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet\" is a Microsoft.Network/virtualNetworks, want a Microsoft.Network/virtualNetworks/subnets"},
		{"nsg is a subnet", map[string]string{"AZURE_NSG_ID": testSubnet}, "AZURE_NSG_ID: \"" + testSubnet + "\" is a Microsoft.Network/virtualNetworks/subnets, want a Microsoft.Network/networkSecurityGroups"},
		{"nsg garbage", map[string]string{"AZURE_NSG_ID": "nsg-1"}, `AZURE_NSG_ID: "nsg-1" is not an ARM resource id`},
		{"image garbage", map[string]string{"AZURE_IMAGE_ID": "ubuntu:22.04"}, `AZURE_IMAGE_ID: "ubuntu:22.04" is neither an ARM resource id nor a /CommunityGalleries/`},
		{"image is a disk", map[string]string{"AZURE_IMAGE_ID": "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d"}, "is a Microsoft.Compute/disks, want a managed image, a gallery image or a gallery image version"},
		{"community gallery without image", map[string]string{"AZURE_IMAGE_ID": "/CommunityGalleries/x"}, "AZURE_IMAGE_ID: \"/CommunityGalleries/x\" is neither"},
		{"size with space", map[string]string{"AZURE_INSTANCE_SIZE": "Standard DC2"}, `AZURE_INSTANCE_SIZE: "Standard DC2" is not a VM size name`},
		{"sizes list bad item", map[string]string{"AZURE_INSTANCE_SIZES": "Standard_DC2as_v5,Bad Size"}, `AZURE_INSTANCE_SIZES: "Bad Size" is not a VM size name`},
		{"zone 4", map[string]string{"AZURE_ZONE": "4"}, `AZURE_ZONE: "4" is not an availability zone (1, 2 or 3)`},
		{"secure boot yes", map[string]string{"ENABLE_SECURE_BOOT": "yes"}, `ENABLE_SECURE_BOOT: "yes" is not a boolean`},
		{"public ip maybe", map[string]string{"USE_PUBLIC_IP": "maybe"}, `USE_PUBLIC_IP: "maybe" is not a boolean`},
		{"disablecvm 2", map[string]string{"DISABLECVM": "2"}, `DISABLECVM: "2" is not a boolean`},
		{"root volume not a number", map[string]string{"ROOT_VOLUME_SIZE": "30GiB"}, `ROOT_VOLUME_SIZE: "30GiB" is not a whole number of GiB between 0 and 4095`},
		{"root volume negative", map[string]string{"ROOT_VOLUME_SIZE": "-1"}, `ROOT_VOLUME_SIZE: "-1" is not a whole number`},
		{"root volume too big", map[string]string{"ROOT_VOLUME_SIZE": "5000"}, `ROOT_VOLUME_SIZE: "5000" is not a whole number`},
		{"ssh user reserved", map[string]string{"SSH_USERNAME": "root"}, `SSH_USERNAME: "root" is not a Linux user name Azure accepts`},
		{"ssh user upper case", map[string]string{"SSH_USERNAME": "Admin1"}, `SSH_USERNAME: "Admin1" is not a Linux user name`},
		{"tags not k=v", map[string]string{"TAGS": "team"}, `TAGS: "team" is not key=value`},
		{"tag key with slash", map[string]string{"TAGS": "a/b=c"}, `TAGS: tag key "a/b" contains a character Azure refuses`},
		{"tag key reserved prefix", map[string]string{"TAGS": "peerpod.io_x=1"}, `TAGS: tag key "peerpod.io_x" uses the reserved prefix peerpod.io_`},
		{"tag value too long", map[string]string{"TAGS": "k=" + strings.Repeat("v", 257)}, `TAGS: tag "k": value is longer than 256 characters`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := goodEnv()
			for k, v := range tc.set {
				env[k] = v
			}
			env["AZURE_CLIENT_SECRET"] = "s3cret-value"
			_, err := LoadConfig(func(k string) string { return env[k] })
			if err == nil {
				t.Fatalf("LoadConfig accepted %v", tc.set)
			}
			if !errors.Is(err, provider.ErrInvalidConfig) {
				t.Errorf("error class: %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("error leaks the client secret: %v", err)
			}
		})
	}
}

func TestImageReference(t *testing.T) {
	tests := []struct {
		id   string
		kind string
	}{
		{"/CommunityGalleries/cococommunity-42/Images/peerpod/Versions/1.2.3", "community"},
		{"/CommunityGalleries/cococommunity-42/Images/peerpod", "community"},
		{"/SharedGalleries/abc/Images/peerpod/Versions/latest", "shared"},
		{testImage, "id"},
		{"/subscriptions/" + testSub + "/resourceGroups/img-rg/providers/Microsoft.Compute/galleries/g/images/podvm", "id"},
		{"/subscriptions/" + testSub + "/resourceGroups/img-rg/providers/Microsoft.Compute/images/podvm", "id"},
	}
	for _, tc := range tests {
		ref, err := imageReference(tc.id)
		if err != nil {
			t.Errorf("imageReference(%s): %v", tc.id, err)
			continue
		}
		var got string
		switch {
		case ref.CommunityGalleryImageID != nil && *ref.CommunityGalleryImageID == tc.id:
			got = "community"
		case ref.SharedGalleryImageID != nil && *ref.SharedGalleryImageID == tc.id:
			got = "shared"
		case ref.ID != nil && *ref.ID == tc.id:
			got = "id"
		}
		if got != tc.kind {
			t.Errorf("imageReference(%s) = %+v, want a %s reference", tc.id, ref, tc.kind)
		}
	}
}

func TestTagKeyMapping(t *testing.T) {
	for _, k := range []string{provider.TagManaged, provider.TagSandbox, provider.TagPodUID, "team", "cost_center"} {
		ak := toAzureTagKey(k)
		if strings.ContainsAny(ak, `<>%&\?/`) {
			t.Errorf("toAzureTagKey(%q) = %q holds a character Azure refuses", k, ak)
		}
		if back := fromAzureTagKey(ak); back != k {
			t.Errorf("fromAzureTagKey(toAzureTagKey(%q)) = %q", k, back)
		}
	}
	// Azure may hand back tag names in another case.
	if got := fromAzureTagKey("PEERPOD.IO_sandbox-id"); got != provider.TagSandbox {
		t.Errorf("case-folded prefix maps to %q", got)
	}
	if _, err := azureTags(nil, map[string]string{"a?b": "1"}); err == nil {
		t.Error("azureTags accepted a key with '?'")
	}
	many := map[string]string{}
	for i := 0; i < 51; i++ {
		many[strings.Repeat("k", i+1)] = "v"
	}
	if _, err := azureTags(nil, many); err == nil || !strings.Contains(err.Error(), "at most 50") {
		t.Errorf("51 tags: %v", err)
	}
}
