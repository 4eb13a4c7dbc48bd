package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func ctr(name string, req, lim corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
}

func TestSizeOf(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := ctr("side", rl("cpu", "1"), nil)
	sidecar.RestartPolicy = &always
	tests := []struct {
		name string
		spec corev1.PodSpec
		want Size
	}{
		{"empty", corev1.PodSpec{Containers: []corev1.Container{ctr("a", nil, nil)}}, Size{}},
		{"limit above request wins", corev1.PodSpec{Containers: []corev1.Container{ctr("a", rl("cpu", "500m"), rl("cpu", "2"))}}, Size{VCPUs: 2}},
		{"request above limit wins", corev1.PodSpec{Containers: []corev1.Container{ctr("a", rl("cpu", "3"), rl("cpu", "2"))}}, Size{VCPUs: 3}},
		{"limit only", corev1.PodSpec{Containers: []corev1.Container{ctr("a", nil, rl("memory", "1Gi"))}}, Size{MemoryMiB: 1024}},
		{"sum rounded up", corev1.PodSpec{Containers: []corev1.Container{
			ctr("a", rl("cpu", "300m", "memory", "100M"), nil), ctr("b", rl("cpu", "800m", "memory", "1Mi"), nil)}},
			Size{VCPUs: 2, MemoryMiB: 97}},
		{"init container larger", corev1.PodSpec{
			InitContainers: []corev1.Container{ctr("i", rl("cpu", "4"), nil)},
			Containers:     []corev1.Container{ctr("a", rl("cpu", "1"), nil)}}, Size{VCPUs: 4}},
		{"sidecar adds", corev1.PodSpec{
			InitContainers: []corev1.Container{sidecar},
			Containers:     []corev1.Container{ctr("a", rl("cpu", "1"), nil)}}, Size{VCPUs: 2}},
		{"gpus", corev1.PodSpec{Containers: []corev1.Container{
			ctr("a", nil, rl("nvidia.com/gpu", "1")), ctr("b", rl("nvidia.com/gpu", "2"), rl("nvidia.com/gpu", "2"))}}, Size{GPUs: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := SizeOf(&tc.spec); got != tc.want {
				t.Errorf("SizeOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// applyPatch applies the few JSON patch forms Patch emits to a pod (as JSON).
func applyPatch(t *testing.T, pod *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	var ops []struct {
		Op, Path string
		Value    json.RawMessage
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	out := pod.DeepCopy()
	for _, op := range ops {
		if op.Op != "add" {
			t.Fatalf("unexpected op %s", op.Op)
		}
		p := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		switch {
		case op.Path == "/metadata/annotations":
			json.Unmarshal(op.Value, &out.Annotations)
		case len(p) == 3 && p[0] == "metadata":
			var v string
			json.Unmarshal(op.Value, &v)
			out.Annotations[strings.NewReplacer("~1", "/", "~0", "~").Replace(p[2])] = v
		case len(p) == 4 && p[1] == "containers":
			var r corev1.ResourceRequirements
			json.Unmarshal(op.Value, &r)
			i := int(p[2][0] - '0')
			out.Spec.Containers[i].Resources = r
		case len(p) == 4 && p[1] == "initContainers":
			var r corev1.ResourceRequirements
			json.Unmarshal(op.Value, &r)
			out.Spec.InitContainers[int(p[2][0]-'0')].Resources = r
		default:
			t.Fatalf("unexpected path %s", op.Path)
		}
	}
	return out
}

func TestPatch(t *testing.T) {
	kata, runc := "kata-remote", "runc"
	base := func(class *string, ann map[string]string) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{RuntimeClassName: class, Containers: []corev1.Container{
			ctr("a", rl("cpu", "1500m", "memory", "512Mi", "ephemeral-storage", "1Gi"), nil), ctr("b", rl("cpu", "1"), nil)}}}
		p.Name, p.Namespace, p.Annotations = "p", "ns", ann
		return p
	}
	m := &Mutator{}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		noPatch bool
		ann     map[string]string
	}{
		{"no runtime class", base(nil, nil), true, nil},
		{"other runtime class", base(&runc, nil), true, nil},
		{"already mutated", base(&kata, map[string]string{AnnotationMutation: "x"}), true, nil},
		{"peer pod", base(&kata, nil), false, map[string]string{AnnotationVCPUs: "3", AnnotationMemory: "512"}},
		{"user value kept", base(&kata, map[string]string{AnnotationVCPUs: "8"}), false, map[string]string{AnnotationVCPUs: "8", AnnotationMemory: "512"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			patch, err := m.Patch(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if tc.noPatch {
				if patch != nil {
					t.Fatalf("patched a pod it should leave alone: %s", patch)
				}
				return
			}
			got := applyPatch(t, tc.pod, patch)
			for k, v := range tc.ann {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], v)
				}
			}
			if _, ok := got.Annotations[AnnotationGPUs]; ok {
				t.Error("default_gpus set for a pod without GPUs")
			}
			if got.Annotations[AnnotationMutation] == "" {
				t.Error("no explanation annotation")
			}
			a := got.Spec.Containers[0].Resources
			if q := a.Requests[ResourceVM]; q.Value() != 1 {
				t.Errorf("container a requests %v", a.Requests)
			}
			if q := a.Limits[ResourceVM]; q.Value() != 1 {
				t.Errorf("container a limits %v", a.Limits)
			}
			if _, ok := a.Requests[corev1.ResourceCPU]; ok {
				t.Error("cpu request not moved off container a")
			}
			if _, ok := a.Requests[corev1.ResourceEphemeralStorage]; !ok {
				t.Error("ephemeral-storage dropped")
			}
			if r := got.Spec.Containers[1].Resources; len(r.Requests) != 0 || len(r.Limits) != 0 {
				t.Errorf("container b resources %v", r)
			}
		})
	}
	if _, err := m.Patch(&corev1.Pod{Spec: corev1.PodSpec{RuntimeClassName: &kata}}); err == nil || !strings.Contains(err.Error(), "no containers") {
		t.Errorf("pod without containers: %v", err)
	}
}
