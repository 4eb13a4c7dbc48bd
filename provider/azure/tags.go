package azure

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// Azure tag names may not contain '/', so our "peerpod.io/<name>" keys are
// stored as "peerpod.io_<name>" and mapped back when read. Keys outside our
// prefix are stored unchanged; a key that already starts with the stored
// prefix is refused so the mapping stays one-to-one.
const (
	tagPrefix      = "peerpod.io/"
	azureTagPrefix = "peerpod.io_"
	maxTagKeyLen   = 512
	maxTagValueLen = 256
	maxTags        = 50
)

// toAzureTagKey maps one of our tag keys to its Azure form.
func toAzureTagKey(k string) string {
	if strings.HasPrefix(k, tagPrefix) {
		return azureTagPrefix + k[len(tagPrefix):]
	}
	return k
}

// fromAzureTagKey maps a stored Azure tag key back to ours. Azure treats tag
// names case-insensitively, so the prefix is matched the same way.
func fromAzureTagKey(k string) string {
	if len(k) >= len(azureTagPrefix) && strings.EqualFold(k[:len(azureTagPrefix)], azureTagPrefix) {
		return tagPrefix + k[len(azureTagPrefix):]
	}
	return k
}

// checkTag reports why key=value cannot be stored as an Azure tag.
func checkTag(k, v string) error {
	ak := toAzureTagKey(k)
	switch {
	case k == "":
		return fmt.Errorf("empty tag key")
	case len(k) >= len(azureTagPrefix) && strings.EqualFold(k[:len(azureTagPrefix)], azureTagPrefix):
		return fmt.Errorf("tag key %q uses the reserved prefix %s", k, azureTagPrefix)
	case strings.ContainsAny(ak, `<>%&\?/`):
		return fmt.Errorf("tag key %q contains a character Azure refuses (<>%%&\\?/)", k)
	case len(ak) > maxTagKeyLen:
		return fmt.Errorf("tag key %q is longer than %d characters", k, maxTagKeyLen)
	case len(v) > maxTagValueLen:
		return fmt.Errorf("tag %q: value is longer than %d characters", k, maxTagValueLen)
	}
	return nil
}

// azureTags merges the configured TAGS with the request's tags (the
// request's win) into the Azure form, checking each one.
func azureTags(extra, ours map[string]string) (map[string]*string, error) {
	out := make(map[string]*string, len(extra)+len(ours))
	for _, m := range []map[string]string{extra, ours} {
		for k, v := range m {
			if err := checkTag(k, v); err != nil {
				return nil, err
			}
			out[toAzureTagKey(k)] = &v
		}
	}
	if len(out) > maxTags {
		return nil, fmt.Errorf("%d tags, Azure allows at most %d per resource", len(out), maxTags)
	}
	return out, nil
}

// fromAzureTags maps stored tags back to our keys.
func fromAzureTags(in map[string]*string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if v != nil {
			out[fromAzureTagKey(k)] = *v
		}
	}
	return out
}

// imageReference turns an image id into the VM's image reference: a
// community gallery path, a direct-shared gallery path, or the ARM id of a
// managed image, gallery image (latest version) or gallery image version.
func imageReference(id string) (*armcompute.ImageReference, error) {
	switch {
	case communityRE.MatchString(id):
		return &armcompute.ImageReference{CommunityGalleryImageID: &id}, nil
	case sharedRE.MatchString(id):
		return &armcompute.ImageReference{SharedGalleryImageID: &id}, nil
	}
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return nil, invalid("AZURE_IMAGE_ID", "%q is neither an ARM resource id nor a /CommunityGalleries/<gallery>/Images/<image>/Versions/<version> path", id)
	}
	switch strings.ToLower(rid.ResourceType.String()) {
	case "microsoft.compute/images", "microsoft.compute/galleries/images", "microsoft.compute/galleries/images/versions":
		return &armcompute.ImageReference{ID: &id}, nil
	}
	return nil, invalid("AZURE_IMAGE_ID", "%q is a %s, want a managed image, a gallery image or a gallery image version", id, rid.ResourceType.String())
}
