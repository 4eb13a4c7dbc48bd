// Package policygen derives an agent policy from a pod definition: the
// commands, environment, working directory, user, security context, mounts,
// exec commands and digest-pinned images of each container become policy
// data, appended to peerpod's rules (rules.rego), and wrapped in an initdata
// document whose annotation the pod carries.
package policygen

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"

	"github.com/peerpod/peerpod/api/initdata"
)

// Rules is the Rego text every generated policy starts with.
//
//go:embed rules.rego
var Rules string

// Options configure Generate.
type Options struct {
	// Resolver pins images and reads their configuration; required.
	Resolver ImageResolver
	// Namespace overrides the workload's namespace ("" = metadata.namespace,
	// or "default").
	Namespace string
	// AnyNamespace leaves the namespace unchecked.
	AnyNamespace bool
	// RedactStdout denies ReadStdout/ReadStderr (the agent then returns
	// empty data: kubectl logs shows nothing).
	RedactStdout bool
	// AllowStdin allows WriteStdin/CloseStdin (kubectl attach -i).
	AllowStdin bool
	// AllowUpdate allows UpdateContainer (in-place resource resize).
	AllowUpdate bool
	// Algorithm is the initdata digest algorithm (default "sha256").
	Algorithm string
	// PauseImage is the image reference of the sandbox container as the
	// runtime sends it (default "pause", the bundle baked into the VM).
	PauseImage string
}

// Result is a generated policy.
type Result struct {
	// Workload is "<Kind>/<name>".
	Workload string
	// Data is the policy data appended to Rules.
	Data *PolicyData
	// Policy is the complete Rego text.
	Policy string
	// Initdata is the initdata TOML carrying the policy.
	Initdata []byte
	// Digest is the initdata digest (what attestation binds).
	Digest []byte
	// Annotation is the value of initdata.Annotation to add to the pod.
	Annotation string
	// Warnings name what the policy cannot pin.
	Warnings []string
	// Pinned maps each image reference of the pod that is not pinned by
	// digest to the pinned reference the policy requires: the runtime sends
	// the pod's reference, so the pod must use the pinned one.
	Pinned map[string]string
}

// Generate builds the policy for the single workload in doc (YAML, possibly
// several documents: ConfigMaps and Secrets referenced by envFrom are read
// from the same input).
func Generate(ctx context.Context, doc []byte, opts Options) (*Result, error) {
	if opts.Resolver == nil {
		return nil, errors.New("policygen: no image resolver")
	}
	if opts.Algorithm == "" {
		opts.Algorithm = "sha256"
	}
	if opts.PauseImage == "" {
		opts.PauseImage = "pause"
	}
	w, err := parseWorkload(doc)
	if err != nil {
		return nil, err
	}
	data, warnings, err := buildData(ctx, w, opts)
	if err != nil {
		return nil, fmt.Errorf("policygen: %s/%s: %w", w.Kind, w.Name, err)
	}
	policy, err := Render(data)
	if err != nil {
		return nil, err
	}
	toml, err := initdata.Marshal(opts.Algorithm, map[string]string{initdata.KeyPolicy: policy})
	if err != nil {
		return nil, fmt.Errorf("policygen: %w", err)
	}
	id, err := initdata.Parse(toml)
	if err != nil {
		return nil, fmt.Errorf("policygen: %w", err)
	}
	anno, err := initdata.EncodeAnnotation(toml)
	if err != nil {
		return nil, fmt.Errorf("policygen: %w", err)
	}
	return &Result{
		Workload:   w.Kind + "/" + w.Name,
		Data:       data,
		Policy:     policy,
		Initdata:   toml,
		Digest:     id.Digest(),
		Annotation: anno,
		Warnings:   warnings,
		Pinned:     pinned(w, data),
	}, nil
}

// Render returns Rules followed by "policy_data := <data>", one key (and
// one container) a line: OPA's planner measures each statement's source
// text up to its last line, and a single line of the whole data would make
// planning the rules quadratic in its size. The data is
// written as a Rego value in which the lists the rules use as sets
// (env, env_any_value, required_mounts, ro_mounts) are sets, capabilities
// is an object keyed by its entries (for object.filter)
// and mounts is an object keyed by destination, so a decision needs no scans.
func Render(data *PolicyData) (string, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("policygen: encode policy data: %w", err)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("policygen: policy data: %w", err)
	}
	obj := v.(ast.Object)
	cs := obj.Get(ast.StringTerm("containers")).Value.(*ast.Array)
	out := make([]*ast.Term, 0, cs.Len())
	for i := 0; i < cs.Len(); i++ {
		c := cs.Elem(i).Value.(ast.Object)
		nc := ast.NewObject()
		c.Foreach(func(k, v *ast.Term) {
			switch k.Value.(ast.String) {
			case "env", "env_any_value", "required_mounts", "ro_mounts":
				arr := v.Value.(*ast.Array)
				set := ast.NewSet()
				arr.Foreach(func(t *ast.Term) { set.Add(t) })
				nc.Insert(k, ast.NewTerm(set))
			case "capabilities":
				// An object keyed by the entries (values true), so the
				// rules check a whole input list with one builtin call
				// (object.filter).
				arr := v.Value.(*ast.Array)
				keys := ast.NewObject()
				arr.Foreach(func(t *ast.Term) { keys.Insert(t, ast.InternedTerm(true)) })
				nc.Insert(k, ast.NewTerm(keys))
			case "mounts":
				byDest := ast.NewObject()
				v.Value.(*ast.Array).Foreach(func(m *ast.Term) {
					byDest.Insert(m.Value.(ast.Object).Get(ast.StringTerm("destination")), m)
				})
				nc.Insert(k, ast.NewTerm(byDest))
			default:
				nc.Insert(k, v)
			}
		})
		out = append(out, ast.NewTerm(nc))
	}
	obj.Insert(ast.StringTerm("containers"), ast.ArrayTerm(out...))
	var sb strings.Builder
	sb.WriteString(Rules + "\npolicy_data := {\n")
	for _, k := range obj.Keys() {
		v := obj.Get(k)
		if arr, ok := v.Value.(*ast.Array); ok && arr.Len() > 0 {
			fmt.Fprintf(&sb, "\t%v: [\n", k)
			arr.Foreach(func(e *ast.Term) { fmt.Fprintf(&sb, "\t\t%v,\n", e) })
			sb.WriteString("\t],\n")
			continue
		}
		fmt.Fprintf(&sb, "\t%v: %v,\n", k, v)
	}
	sb.WriteString("}\n")
	return sb.String(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteMeta(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// pinned lists the pod's image references that differ from the policy's.
func pinned(w *workload, data *PolicyData) map[string]string {
	out := map[string]string{}
	all := append(append([]corev1.Container{}, w.Spec.InitContainers...), w.Spec.Containers...)
	for i, c := range all {
		if got := data.Containers[i+1].Image; got != c.Image {
			out[c.Image] = got
		}
	}
	return out
}
