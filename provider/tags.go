package provider

import (
	"fmt"
	"sort"
	"strings"
)

// Tag keys peerpod puts on every VM and every resource made for it.
const (
	TagManaged      = "peerpod.io/managed"
	TagCluster      = "peerpod.io/cluster"
	TagNode         = "peerpod.io/node"
	TagSandbox      = "peerpod.io/sandbox-id"
	TagPodNamespace = "peerpod.io/pod-namespace"
	TagPodName      = "peerpod.io/pod-name"
	TagPodUID       = "peerpod.io/pod-uid"
	// TagWarm marks a VM booted for a node's warm pool ("true"). It stays
	// on the VM once a sandbox takes it; the node's journal records which.
	TagWarm = "peerpod.io/warm"
)

// Owner identifies a pod VM's owners: the cluster, the node and the pod.
type Owner struct {
	ClusterID    string
	Node         string
	SandboxID    string
	PodNamespace string
	PodName      string
	PodUID       string
}

// Tags returns the tags for a VM owned by o, with extra (the TAGS key) added.
// Our own keys win over extra ones of the same name.
func Tags(o Owner, extra map[string]string) map[string]string {
	t := make(map[string]string, len(extra)+7)
	for k, v := range extra {
		t[k] = v
	}
	t[TagManaged] = "true"
	set := func(k, v string) {
		if v != "" {
			t[k] = v
		}
	}
	set(TagCluster, o.ClusterID)
	set(TagNode, o.Node)
	set(TagSandbox, o.SandboxID)
	set(TagPodNamespace, o.PodNamespace)
	set(TagPodName, o.PodName)
	set(TagPodUID, o.PodUID)
	return t
}

// NodeSelector returns the tags that select every VM of one node of one cluster.
func NodeSelector(clusterID, node string) map[string]string {
	t := map[string]string{TagManaged: "true", TagNode: node}
	if clusterID != "" {
		t[TagCluster] = clusterID
	}
	return t
}

// ParseTags parses the TAGS value "k1=v1,k2=v2". Spaces around keys and
// values are trimmed; an empty string gives an empty map.
func ParseTags(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, Errorf(ErrInvalidConfig, "TAGS: %q is not key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, Errorf(ErrInvalidConfig, "TAGS: key %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// Matches reports whether have contains every key/value of want.
func Matches(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// FormatTags renders tags as sorted "k=v" pairs, for logs and errors.
func FormatTags(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%s", k, t[k])
	}
	return strings.Join(parts, ",")
}
