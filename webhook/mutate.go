// Package webhook is the admission logic of peerpod-webhook: it sizes each
// peer pod's VM from the pod's resource requests and limits, moves those
// resources off the node (the containers run in the VM) and has the pod
// request one unit of the node's peer-pod capacity instead.
package webhook

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Annotation and resource names the mutation writes.
const (
	AnnotationVCPUs  = "io.katacontainers.config.hypervisor.default_vcpus"
	AnnotationMemory = "io.katacontainers.config.hypervisor.default_memory"
	AnnotationGPUs   = "io.katacontainers.config.hypervisor.default_gpus"
	// AnnotationMutation explains what the webhook computed from what; its
	// presence also marks a pod as already mutated.
	AnnotationMutation = "peerpod.io/mutation"
	// ResourceVM is the extended resource each peer pod requests once.
	ResourceVM corev1.ResourceName = "kata.peerpods.io/vm"
	// ResourceGPU is the GPU resource summed into default_gpus.
	ResourceGPU corev1.ResourceName = "nvidia.com/gpu"
)

// moved are the resources taken off the containers into the VM size.
var moved = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, ResourceGPU}

// Size is a VM size computed from a pod.
type Size struct {
	// VCPUs is whole vCPUs, rounded up; 0 when the pod names no CPU.
	VCPUs int64
	// MemoryMiB is memory in MiB, rounded up; 0 when the pod names none.
	MemoryMiB int64
	// GPUs is the number of nvidia.com/gpu.
	GPUs int64
}

// effective is one container's amount of a resource: the limit when it is
// at least the request, else the request (a container may burst to its
// limit, and the VM must hold it).
func effective(r corev1.ResourceRequirements, name corev1.ResourceName) resource.Quantity {
	req, hasReq := r.Requests[name]
	lim, hasLim := r.Limits[name]
	switch {
	case hasLim && (!hasReq || lim.Cmp(req) >= 0):
		return lim.DeepCopy()
	case hasReq:
		return req.DeepCopy()
	}
	return resource.Quantity{}
}

// podAmount is the pod's amount of name: the sum over its containers, or
// the largest init container if that is more (init containers run one at a
// time, before the others), as the scheduler counts a pod.
func podAmount(spec *corev1.PodSpec, name corev1.ResourceName) resource.Quantity {
	var sum resource.Quantity
	for _, c := range spec.Containers {
		q := effective(c.Resources, name)
		sum.Add(q)
	}
	var sidecars resource.Quantity // restartable init containers run alongside
	for _, c := range spec.InitContainers {
		q := effective(c.Resources, name)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars.Add(q)
			continue
		}
		q.Add(sidecars)
		if q.Cmp(sum) > 0 {
			sum = q
		}
	}
	sum.Add(sidecars)
	return sum
}

// SizeOf computes the VM size of a pod.
func SizeOf(spec *corev1.PodSpec) Size {
	cpu := podAmount(spec, corev1.ResourceCPU)
	mem := podAmount(spec, corev1.ResourceMemory)
	gpu := podAmount(spec, ResourceGPU)
	const mib = 1 << 20
	return Size{
		VCPUs:     (cpu.MilliValue() + 999) / 1000,
		MemoryMiB: (mem.Value() + mib - 1) / mib,
		GPUs:      gpu.Value(),
	}
}

// Mutator decides and computes the mutation of pods.
type Mutator struct {
	// RuntimeClasses are the runtime classes of peer pods (default kata-remote).
	RuntimeClasses []string
}

// Applies reports whether pod is a peer pod this mutator sizes.
func (m *Mutator) Applies(pod *corev1.Pod) bool {
	if pod.Spec.RuntimeClassName == nil {
		return false
	}
	classes := m.RuntimeClasses
	if len(classes) == 0 {
		classes = []string{"kata-remote"}
	}
	for _, c := range classes {
		if *pod.Spec.RuntimeClassName == c {
			return true
		}
	}
	return false
}

// Patch returns the JSON patch (RFC 6902) that mutates pod, or nil when the
// pod is not a peer pod or has been mutated already.
func (m *Mutator) Patch(pod *corev1.Pod) ([]byte, error) {
	if !m.Applies(pod) {
		return nil, nil
	}
	if _, done := pod.Annotations[AnnotationMutation]; done {
		return nil, nil
	}
	if len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("pod %s: no containers", podName(pod))
	}
	size := SizeOf(&pod.Spec)
	want := map[string]string{}
	var notes []string
	set := func(key string, v int64, what string) {
		if user, ok := pod.Annotations[key]; ok {
			notes = append(notes, fmt.Sprintf("%s kept as set (%s)", short(key), user))
			return
		}
		if v > 0 {
			want[key] = strconv.FormatInt(v, 10)
			notes = append(notes, fmt.Sprintf("%s=%d from %s", short(key), v, what))
		}
	}
	set(AnnotationVCPUs, size.VCPUs, describe(&pod.Spec, corev1.ResourceCPU))
	set(AnnotationMemory, size.MemoryMiB, describe(&pod.Spec, corev1.ResourceMemory))
	set(AnnotationGPUs, size.GPUs, describe(&pod.Spec, ResourceGPU))
	notes = append(notes, "cpu, memory and nvidia.com/gpu moved off the containers into the VM size; requests kata.peerpods.io/vm=1")
	want[AnnotationMutation] = strings.Join(notes, "; ")

	var ops []patchOp
	if pod.Annotations == nil {
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations", Value: want})
	} else {
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations/" + escape(k), Value: want[k]})
		}
	}
	for i, c := range pod.Spec.InitContainers {
		ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("/spec/initContainers/%d/resources", i), Value: strip(c.Resources, false)})
	}
	for i, c := range pod.Spec.Containers {
		ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("/spec/containers/%d/resources", i), Value: strip(c.Resources, i == 0)})
	}
	return json.Marshal(ops)
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// strip removes the moved resources; the first container also requests
// one kata.peerpods.io/vm.
func strip(r corev1.ResourceRequirements, first bool) corev1.ResourceRequirements {
	out := *r.DeepCopy()
	for _, name := range moved {
		delete(out.Requests, name)
		delete(out.Limits, name)
	}
	if first {
		if out.Requests == nil {
			out.Requests = corev1.ResourceList{}
		}
		if out.Limits == nil {
			out.Limits = corev1.ResourceList{}
		}
		out.Requests[ResourceVM] = resource.MustParse("1")
		out.Limits[ResourceVM] = resource.MustParse("1")
	}
	if len(out.Requests) == 0 {
		out.Requests = nil
	}
	if len(out.Limits) == 0 {
		out.Limits = nil
	}
	return out
}

// describe lists each container's request/limit of name, for the explanation.
func describe(spec *corev1.PodSpec, name corev1.ResourceName) string {
	var parts []string
	add := func(c corev1.Container, kind string) {
		req, hasReq := c.Resources.Requests[name]
		lim, hasLim := c.Resources.Limits[name]
		if !hasReq && !hasLim {
			return
		}
		s := c.Name + kind + ":"
		if hasReq {
			s += " request " + req.String()
		}
		if hasLim {
			s += " limit " + lim.String()
		}
		parts = append(parts, s)
	}
	for _, c := range spec.InitContainers {
		add(c, " (init)")
	}
	for _, c := range spec.Containers {
		add(c, "")
	}
	return strings.Join(parts, ", ")
}

func short(key string) string { return key[strings.LastIndex(key, ".")+1:] }

func escape(key string) string { // JSON pointer token (RFC 6901)
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

func podName(p *corev1.Pod) string {
	name := p.Name
	if name == "" {
		name = p.GenerateName + "*"
	}
	return p.Namespace + "/" + name
}
