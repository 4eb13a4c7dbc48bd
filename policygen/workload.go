package policygen

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// workload is the pod template of one YAML object.
type workload struct {
	Kind, Name, Namespace string
	// SandboxNameRegex matches the names of the pods it makes.
	SandboxNameRegex string
	Spec             corev1.PodSpec
	configMaps       map[string]*corev1.ConfigMap
	secrets          map[string]*corev1.Secret
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// parseWorkload finds the one workload in doc and the ConfigMaps and
// Secrets beside it.
func parseWorkload(doc []byte) (*workload, error) {
	var found *workload
	cms := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	for i, part := range docSeparator.Split(string(doc), -1) {
		if len(bytes.TrimSpace([]byte(part))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(part), &tm); err != nil {
			return nil, fmt.Errorf("policygen: YAML document %d: %w", i+1, err)
		}
		w, err := decodeObject(tm.Kind, []byte(part))
		if err != nil {
			return nil, fmt.Errorf("policygen: YAML document %d (%s): %w", i+1, tm.Kind, err)
		}
		switch {
		case tm.Kind == "ConfigMap":
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(part), &cm); err != nil {
				return nil, fmt.Errorf("policygen: ConfigMap: %w", err)
			}
			cms[cm.Name] = &cm
		case tm.Kind == "Secret":
			var s corev1.Secret
			if err := yaml.UnmarshalStrict([]byte(part), &s); err != nil {
				return nil, fmt.Errorf("policygen: Secret: %w", err)
			}
			secrets[s.Name] = &s
		case w != nil:
			if found != nil {
				return nil, fmt.Errorf("policygen: more than one workload (%s/%s and %s/%s): generate one policy per pod", found.Kind, found.Name, w.Kind, w.Name)
			}
			found = w
		}
	}
	if found == nil {
		return nil, errors.New("policygen: no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob in the input")
	}
	found.configMaps, found.secrets = cms, secrets
	return found, nil
}

func decodeObject(kind string, b []byte) (*workload, error) {
	strict := func(v any) error { return yaml.UnmarshalStrict(b, v) }
	// Pod names made by controllers: <name>-<suffix>.
	const rand5 = `[a-z0-9]{5}`
	mk := func(kind string, om metav1.ObjectMeta, spec corev1.PodSpec, nameRe string) *workload {
		return &workload{Kind: kind, Name: om.Name, Namespace: om.Namespace, Spec: spec, SandboxNameRegex: nameRe}
	}
	q := func(om metav1.ObjectMeta) string { return quoteMeta(om.Name) }
	switch kind {
	case "Pod":
		var o corev1.Pod
		if err := strict(&o); err != nil {
			return nil, err
		}
		re := "^" + q(o.ObjectMeta) + "$"
		if o.Name == "" && o.GenerateName != "" {
			re = "^" + quoteMeta(o.GenerateName) + rand5 + "$"
		}
		if o.Name == "" && o.GenerateName == "" {
			return nil, errors.New("the Pod has no name")
		}
		w := mk("Pod", o.ObjectMeta, o.Spec, re)
		if w.Name == "" {
			w.Name = o.GenerateName
		}
		return w, nil
	case "Deployment":
		var o appsv1.Deployment
		if err := strict(&o); err != nil {
			return nil, err
		}
		return mk(kind, o.ObjectMeta, o.Spec.Template.Spec, "^"+q(o.ObjectMeta)+"-[a-z0-9]{1,10}-"+rand5+"$"), nil
	case "StatefulSet":
		var o appsv1.StatefulSet
		if err := strict(&o); err != nil {
			return nil, err
		}
		return mk(kind, o.ObjectMeta, o.Spec.Template.Spec, "^"+q(o.ObjectMeta)+"-[0-9]+$"), nil
	case "DaemonSet":
		var o appsv1.DaemonSet
		if err := strict(&o); err != nil {
			return nil, err
		}
		return mk(kind, o.ObjectMeta, o.Spec.Template.Spec, "^"+q(o.ObjectMeta)+"-"+rand5+"$"), nil
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		if err := strict(&o); err != nil {
			return nil, err
		}
		return mk(kind, o.ObjectMeta, o.Spec.Template.Spec, "^"+q(o.ObjectMeta)+"-"+rand5+"$"), nil
	case "Job":
		var o batchv1.Job
		if err := strict(&o); err != nil {
			return nil, err
		}
		return mk(kind, o.ObjectMeta, o.Spec.Template.Spec, "^"+q(o.ObjectMeta)+"-"+rand5+"$"), nil
	case "CronJob":
		var o batchv1.CronJob
		if err := strict(&o); err != nil {
			return nil, err
		}
		return mk(kind, o.ObjectMeta, o.Spec.JobTemplate.Spec.Template.Spec, "^"+q(o.ObjectMeta)+"-[0-9]+-"+rand5+"$"), nil
	case "ConfigMap", "Secret", "Service", "ServiceAccount", "PersistentVolumeClaim", "List":
		return nil, nil
	case "":
		return nil, errors.New("no kind")
	default:
		return nil, nil
	}
}

// envFrom returns the variable names an envFrom source provides, with the
// values that can be pinned (ConfigMap data; Secret values are not pinned).
func (w *workload) envFrom(ef corev1.EnvFromSource) ([]string, map[string]string, error) {
	switch {
	case ef.ConfigMapRef != nil:
		cm, ok := w.configMaps[ef.ConfigMapRef.Name]
		if !ok {
			return nil, nil, fmt.Errorf("envFrom ConfigMap %q is not in the input: add it to the YAML so its variables can be pinned", ef.ConfigMapRef.Name)
		}
		return sortedKeys(cm.Data), cm.Data, nil
	case ef.SecretRef != nil:
		s, ok := w.secrets[ef.SecretRef.Name]
		if !ok {
			return nil, nil, fmt.Errorf("envFrom Secret %q is not in the input: add it (values may be placeholders) so its variable names are known", ef.SecretRef.Name)
		}
		names := sortedKeys(s.Data)
		names = append(names, sortedKeys(s.StringData)...)
		return names, nil, nil
	}
	return nil, nil, errors.New("envFrom without a ConfigMap or Secret")
}
