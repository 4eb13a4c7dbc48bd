// Package pullsecrets gathers a pod's image pull credentials — the
// imagePullSecrets of the pod and of its service account — into one
// containers auth.json document, which peerpodd sends to the pod VM over the
// attested tunnel (never in user data) so the guest can pull private images.
package pullsecrets

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/kube"
)

// Secret types holding registry credentials.
const (
	typeDockerConfigJSON = "kubernetes.io/dockerconfigjson"
	typeDockercfg        = "kubernetes.io/dockercfg"
)

// Source reads pull secrets from the API server.
type Source struct {
	Kube *kube.Client
	Log  *slog.Logger
}

type objRef struct {
	Name string `json:"name"`
}

type pod struct {
	Spec struct {
		ServiceAccountName string   `json:"serviceAccountName"`
		ImagePullSecrets   []objRef `json:"imagePullSecrets"`
	} `json:"spec"`
}

type serviceAccount struct {
	ImagePullSecrets []objRef `json:"imagePullSecrets"`
}

type secret struct {
	Type string            `json:"type"`
	Data map[string]string `json:"data"` // base64
}

// Secrets implements sandbox.SecretsFunc: the auth.json of the sandbox's
// pod, or empty secrets when the pod names none. A secret that is missing
// or of another type, or that peerpodd may not read (no Role in the pod's
// namespace), is skipped with a warning (the pull will then fail in the
// guest with an authentication error naming the registry); any other API
// failure is an error, so the caller retries.
func (s *Source) Secrets(ctx context.Context, e journal.Entry) (*userdata.Secrets, error) {
	if e.PodName == "" || e.PodNamespace == "" {
		return &userdata.Secrets{}, nil
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("sandbox_id", e.SandboxID, "pod", e.PodNamespace+"/"+e.PodName)
	ns := url.PathEscape(e.PodNamespace)
	var p pod
	if err := s.Kube.Get(ctx, "/api/v1/namespaces/"+ns+"/pods/"+url.PathEscape(e.PodName), &p); err != nil {
		if kube.IsNotFound(err) {
			log.Warn("pod not found; no image pull secrets")
			return &userdata.Secrets{}, nil
		}
		return nil, fmt.Errorf("pull secrets of pod %s/%s: %w", e.PodNamespace, e.PodName, err)
	}
	names := p.Spec.ImagePullSecrets
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	var acct serviceAccount
	if err := s.Kube.Get(ctx, "/api/v1/namespaces/"+ns+"/serviceaccounts/"+url.PathEscape(sa), &acct); err != nil {
		if !kube.IsNotFound(err) {
			return nil, fmt.Errorf("pull secrets of service account %s/%s: %w", e.PodNamespace, sa, err)
		}
	}
	names = append(names, acct.ImagePullSecrets...)

	auths := map[string]json.RawMessage{}
	seen := map[string]bool{}
	for _, ref := range names {
		if ref.Name == "" || seen[ref.Name] {
			continue
		}
		seen[ref.Name] = true
		var sec secret
		if err := s.Kube.Get(ctx, "/api/v1/namespaces/"+ns+"/secrets/"+url.PathEscape(ref.Name), &sec); err != nil {
			if kube.IsNotFound(err) {
				log.Warn("image pull secret not found", "secret", ref.Name)
				continue
			}
			if kube.IsForbidden(err) {
				// peerpodd reads Secrets only in the namespaces the chart
				// gave it a Role in (pullSecretNamespaces): pull without.
				log.Warn("image pull secret not readable: peerpodd has no Role for secrets in this namespace (add it to the chart's pullSecretNamespaces)", "secret", ref.Name)
				continue
			}
			return nil, fmt.Errorf("image pull secret %s/%s: %w", e.PodNamespace, ref.Name, err)
		}
		entries, err := registries(sec)
		if err != nil {
			log.Warn("image pull secret unusable", "secret", ref.Name, "err", err)
			continue
		}
		for reg, cred := range entries {
			if _, dup := auths[reg]; !dup { // the pod's own secrets come first and win
				auths[reg] = cred
			}
		}
	}
	if len(auths) == 0 {
		return &userdata.Secrets{}, nil
	}
	doc, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, fmt.Errorf("auth.json: %w", err)
	}
	log.Info("image pull credentials gathered", "registries", len(auths))
	return &userdata.Secrets{AuthJSON: doc}, nil
}

// registries returns the per-registry credentials of a pull secret.
func registries(sec secret) (map[string]json.RawMessage, error) {
	var key string
	switch sec.Type {
	case typeDockerConfigJSON:
		key = ".dockerconfigjson"
	case typeDockercfg:
		key = ".dockercfg"
	default:
		return nil, fmt.Errorf("type %q holds no registry credentials", sec.Type)
	}
	raw, err := base64.StdEncoding.DecodeString(sec.Data[key])
	if err != nil || len(raw) == 0 {
		return nil, fmt.Errorf("data %s is missing or not base64", key)
	}
	if sec.Type == typeDockerConfigJSON {
		var doc struct {
			Auths map[string]json.RawMessage `json:"auths"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("data %s is not a docker config: %v", key, errSummary(err))
		}
		return doc.Auths, nil
	}
	var legacy map[string]json.RawMessage // .dockercfg: the auths map itself
	if err := json.Unmarshal(raw, &legacy); err != nil {
		return nil, fmt.Errorf("data %s is not a docker config: %v", key, errSummary(err))
	}
	return legacy, nil
}

// errSummary keeps JSON errors from quoting secret bytes.
func errSummary(err error) string {
	switch err.(type) {
	case *json.SyntaxError:
		return "invalid JSON"
	case *json.UnmarshalTypeError:
		return "unexpected JSON structure"
	}
	return "invalid document"
}
