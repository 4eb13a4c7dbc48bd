package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/peerpod/peerpod/shim/events"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/kube"
	"github.com/peerpod/peerpod/shim/nodecap"
	"github.com/peerpod/peerpod/shim/pullsecrets"
	"github.com/peerpod/peerpod/webhook"
)

const releaseNS = "peerpod-system"

// resources maps the kinds the chart renders to their API resources.
var resources = map[string]schema.GroupVersionResource{
	"v1/Namespace":                {Version: "v1", Resource: "namespaces"},
	"v1/ConfigMap":                {Version: "v1", Resource: "configmaps"},
	"v1/Secret":                   {Version: "v1", Resource: "secrets"},
	"v1/ServiceAccount":           {Version: "v1", Resource: "serviceaccounts"},
	"v1/Service":                  {Version: "v1", Resource: "services"},
	"apps/v1/DaemonSet":           {Group: "apps", Version: "v1", Resource: "daemonsets"},
	"apps/v1/Deployment":          {Group: "apps", Version: "v1", Resource: "deployments"},
	"node.k8s.io/v1/RuntimeClass": {Group: "node.k8s.io", Version: "v1", Resource: "runtimeclasses"},
	"rbac.authorization.k8s.io/v1/ClusterRole":                     {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding":              {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"rbac.authorization.k8s.io/v1/Role":                            {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"rbac.authorization.k8s.io/v1/RoleBinding":                     {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
}

// apply creates every object of a rendered manifest file.
func apply(t *testing.T, ctx context.Context, dyn dynamic.Interface, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, doc := range strings.Split(string(data), "\n---") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		key := obj.GetAPIVersion() + "/" + obj.GetKind()
		gvr, ok := resources[key]
		if !ok {
			t.Fatalf("%s document %d: kind %s not known to the test", path, i, key)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if ns := obj.GetNamespace(); ns != "" {
			ri = dyn.Resource(gvr).Namespace(ns)
		}
		if _, err := ri.Create(ctx, obj, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create %s %s/%s: %v", key, obj.GetNamespace(), obj.GetName(), err)
		}
		n++
	}
	return n
}

func TestDeploy(t *testing.T) {
	c := startCluster(t)
	ctx := ctxT(t)
	dyn, err := dynamic.NewForConfig(c.admin)
	if err != nil {
		t.Fatal(err)
	}

	// Every object of the azure manifests is created for real.
	n := apply(t, ctx, dyn, filepath.Join(repoRoot(t), "deploy", "manifests", "azure", "peerpod.yaml"))
	if n < 15 {
		t.Fatalf("only %d objects in the azure manifests", n)
	}
	ds, err := c.cs.AppsV1().DaemonSets(releaseNS).Get(ctx, "peerpodd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("DaemonSet rolling update = %+v, want maxSurge 0, maxUnavailable 1", ru)
	}
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	if sc.Privileged != nil && *sc.Privileged || len(sc.Capabilities.Add) != 2 {
		t.Errorf("peerpodd security context %+v: want unprivileged with NET_ADMIN, SYS_ADMIN", sc)
	}

	t.Run("rbac", func(t *testing.T) { testRBAC(t, ctx, c) })
	t.Run("webhook", func(t *testing.T) { testWebhook(t, ctx, c) })
	t.Run("nodecap", func(t *testing.T) { testNodeCapacity(t, ctx, c) })
	t.Run("events", func(t *testing.T) { testEvents(t, ctx, c) })
	t.Run("pullsecrets", func(t *testing.T) { testPullSecrets(t, ctx, c) })
}

func testRBAC(t *testing.T, ctx context.Context, c *cluster) {
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	peerpodd := "system:serviceaccount:" + releaseNS + ":peerpodd"
	hook := "system:serviceaccount:" + releaseNS + ":peerpod-webhook"
	cases := []struct {
		user, verb, resource, sub, ns, name string
		want                                bool
	}{
		{peerpodd, "get", "secrets", "", "", "", false},
		{peerpodd, "list", "secrets", "", "", "", false},
		{peerpodd, "get", "secrets", "", "other", "", false},
		{peerpodd, "get", "secrets", "", "default", "", true},
		{peerpodd, "list", "secrets", "", "default", "", false},
		{peerpodd, "get", "pods", "", "other", "", true},
		{peerpodd, "list", "pods", "", "", "", false},
		{peerpodd, "patch", "nodes", "status", "", "n1", true},
		{peerpodd, "delete", "nodes", "", "", "n1", false},
		{peerpodd, "create", "events", "", "other", "", true},
		{hook, "get", "secrets", "", "", "", false},
		{hook, "get", "secrets", "", releaseNS, "peerpod-webhook-tls", true},
		{hook, "get", "secrets", "", releaseNS, "peer-pods-secret", false},
		{hook, "patch", "mutatingwebhookconfigurations", "", "", "peerpod-webhook", true},
		{hook, "patch", "mutatingwebhookconfigurations", "", "", "someone-else", false},
	}
	for _, tc := range cases {
		group := ""
		if tc.resource == "mutatingwebhookconfigurations" {
			group = "admissionregistration.k8s.io"
		}
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: tc.user,
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: tc.verb, Group: group, Resource: tc.resource,
				Subresource: tc.sub, Namespace: tc.ns, Name: tc.name},
		}}
		got, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != tc.want {
			t.Errorf("%s %s %s/%s in %q name %q: allowed=%v, want %v", tc.user, tc.verb, tc.resource, tc.sub, tc.ns, tc.name, got.Status.Allowed, tc.want)
		}
	}
}

func testWebhook(t *testing.T, ctx context.Context, c *cluster) {
	// The webhook's own RBAC must be enough to keep its certificate and
	// patch the caBundle: run EnsureCerts as its service account.
	hookCS, err := kubernetes.NewForConfig(c.as("system:serviceaccount:" + releaseNS + ":peerpod-webhook"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := webhook.EnsureCerts(ctx, hookCS, releaseNS, "peerpod-webhook-tls", "peerpod-webhook", []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("EnsureCerts as the webhook's service account: %v", err)
	}
	again, err := webhook.EnsureCerts(ctx, hookCS, releaseNS, "peerpod-webhook-tls", "peerpod-webhook", []string{"127.0.0.1"})
	if err != nil || !bytes.Equal(again.CACert, b.CACert) {
		t.Fatalf("second EnsureCerts made a new CA (err %v)", err)
	}
	cert, err := b.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: webhook.Handler(&webhook.Mutator{RuntimeClasses: []string{"kata-remote"}}, nil),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	// Point the chart's webhook at the in-process server (the caBundle is
	// already the one EnsureCerts patched in).
	url := "https://" + ln.Addr().String() + webhook.MutatePath
	patch := fmt.Sprintf(`[{"op":"remove","path":"/webhooks/0/clientConfig/service"},{"op":"add","path":"/webhooks/0/clientConfig/url","value":%q}]`, url)
	mwc, err := c.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, "peerpod-webhook", types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, b.CACert) {
		t.Fatal("caBundle is not the webhook's CA")
	}

	kata := "kata-remote"
	pod := func(ns, name string, class *string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
			RuntimeClassName: class,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}},
			Containers: []corev1.Container{
				{Name: "a", Image: "busybox", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("100Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("200M"), "nvidia.com/gpu": resource.MustParse("1")}}},
				{Name: "b", Image: "busybox", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")}}},
			}}}
	}
	// The API server retries webhook connection failures only by policy;
	// allow the new configuration a moment to be picked up.
	var got *corev1.Pod
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err = c.cs.CoreV1().Pods("default").Create(ctx, pod("default", "peer", &kata), metav1.CreateOptions{})
		if err == nil && got.Annotations[webhook.AnnotationMutation] != "" || time.Now().After(deadline) {
			break
		}
		if err == nil {
			c.cs.CoreV1().Pods("default").Delete(ctx, "peer", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("create peer pod: %v", err)
	}
	// cpu: a 1.5 + b 1 = 2.5 (init 3 is more) → 3; memory: 200M + 1Gi → 1215 MiB (rounded up); 1 GPU.
	wantAnn := map[string]string{webhook.AnnotationVCPUs: "3", webhook.AnnotationMemory: "1215", webhook.AnnotationGPUs: "1"}
	for k, v := range wantAnn {
		if got.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], v)
		}
	}
	if !strings.Contains(got.Annotations[webhook.AnnotationMutation], "default_vcpus=3 from") {
		t.Errorf("mutation explanation %q does not say how vcpus were computed", got.Annotations[webhook.AnnotationMutation])
	}
	c0 := got.Spec.Containers[0].Resources
	if q := c0.Requests[webhook.ResourceVM]; q.Value() != 1 {
		t.Errorf("container 0 requests %v, want kata.peerpods.io/vm: 1", c0.Requests)
	}
	for i, ctr := range got.Spec.Containers {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, webhook.ResourceGPU} {
			if _, ok := ctr.Resources.Requests[r]; ok {
				t.Errorf("container %d still requests %s", i, r)
			}
		}
	}
	if _, ok := got.Spec.Containers[1].Resources.Requests[corev1.ResourceEphemeralStorage]; !ok {
		t.Error("ephemeral-storage request of container b was dropped")
	}
	if got.Spec.Overhead == nil {
		t.Error("RuntimeClass overhead not applied to the peer pod")
	}

	// Other pods are left alone: no runtime class, another class, and a
	// kata-remote pod in an excluded namespace.
	runc := "runc"
	others := []*corev1.Pod{pod("default", "plain", nil), pod("other", "runc", &runc), pod("kube-system", "sys", &kata)}
	for _, p := range others {
		out, err := c.cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			if p.Spec.RuntimeClassName != nil && *p.Spec.RuntimeClassName == "runc" && strings.Contains(err.Error(), "RuntimeClass") {
				continue // no such RuntimeClass: admission refuses it, and the webhook was not involved
			}
			t.Fatalf("create %s/%s: %v", p.Namespace, p.Name, err)
		}
		if _, ok := out.Annotations[webhook.AnnotationMutation]; ok {
			t.Errorf("pod %s/%s was mutated", p.Namespace, p.Name)
		}
		if q, ok := out.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; !ok || q.MilliValue() != 500 {
			t.Errorf("pod %s/%s resources changed: %v", p.Namespace, p.Name, out.Spec.Containers[0].Resources)
		}
	}
}

// saClient is a shim/kube client authenticated with a real token of the
// peerpodd service account.
func saClient(t *testing.T, ctx context.Context, c *cluster, sa string) *kube.Client {
	t.Helper()
	tr, err := c.cs.CoreV1().ServiceAccounts(releaseNS).CreateToken(ctx, sa, &authv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", sa, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	tok := tr.Status.Token
	return &kube.Client{BaseURL: c.url,
		HTTP:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		Token: func() (string, error) { return tok, nil }}
}

func testNodeCapacity(t *testing.T, ctx context.Context, c *cluster) {
	node := "worker-" + randHex(t, 3)
	// A node as its kubelet registers it: with a capacity of its own.
	if _, err := c.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := saClient(t, ctx, c, "peerpodd")
	capacity := func() (string, string) {
		t.Helper()
		n, err := c.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		q, ok := n.Status.Capacity[nodecap.Resource]
		v := ""
		if ok {
			v = q.String()
		}
		return v, n.Annotations[nodecap.OwnerAnnotation]
	}
	old, err := nodecap.New(k, node, "uid-old", 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Advertise(ctx); err != nil {
		t.Fatalf("advertise as peerpodd's service account: %v", err)
	}
	if v, o := capacity(); v != "10" || o != "uid-old" {
		t.Fatalf("after first advertise: capacity %q owner %q", v, o)
	}
	// Rolling restart: the new daemon starts and advertises, then the old one stops.
	nw, _ := nodecap.New(k, node, "uid-new", 12, nil)
	if err := nw.Advertise(ctx); err != nil {
		t.Fatal(err)
	}
	if err := old.Withdraw(ctx); err != nil {
		t.Fatalf("old daemon's withdraw: %v", err)
	}
	if v, o := capacity(); v != "12" || o != "uid-new" {
		t.Fatalf("after the old daemon stopped: capacity %q owner %q, want 12 owned by uid-new", v, o)
	}
	// The owner's own withdraw removes both.
	if err := nw.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	if v, o := capacity(); v != "" || o != "" {
		t.Fatalf("after the owner withdrew: capacity %q owner %q, want none", v, o)
	}
	// peerpodd may not touch other objects: reading a secret outside the
	// configured namespaces is refused.
	var out json.RawMessage
	err = k.Get(ctx, "/api/v1/namespaces/other/secrets/x", &out)
	var se *kube.StatusError
	if !errorsAs(err, &se) || se.Code != http.StatusForbidden {
		t.Fatalf("peerpodd reading a secret in namespace other: %v, want 403", err)
	}
}

// TestLintChart lints and strictly renders the chart with every provider's values.
func TestLintChart(t *testing.T) {
	render := os.Getenv("PEERPOD_RENDER")
	if render == "" {
		render = filepath.Join(repoRoot(t), "_output", "render")
	}
	if _, err := os.Stat(render); err != nil {
		// Not built by make: build it (its own module, deploy/tools/render).
		render = filepath.Join(t.TempDir(), "render")
		build := exec.Command("go", "build", "-o", render, ".")
		build.Dir = filepath.Join(repoRoot(t), "deploy", "tools", "render")
		build.Env = append(os.Environ(), "GOWORK=off")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build deploy/tools/render: %v\n%s", err, out)
		}
	}
	chart := filepath.Join(repoRoot(t), "deploy", "helm", "peerpod")
	for _, p := range []string{"azure", "aws", "libvirt"} {
		out, err := exec.Command(render, "-chart", chart, "-values", filepath.Join(chart, "values-"+p+".yaml"), "-lint").CombinedOutput()
		if err != nil {
			t.Errorf("lint %s: %v\n%s", p, err, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	mustWrite(t, bad, []byte("provider: gcp\n"))
	if out, err := exec.Command(render, "-chart", chart, "-values", bad, "-lint").CombinedOutput(); err == nil || !strings.Contains(string(out), `provider: "gcp"`) {
		t.Errorf("lint accepted provider gcp: %v\n%s", err, out)
	}
}

func testEvents(t *testing.T, ctx context.Context, c *cluster) {
	k := saClient(t, ctx, c, "peerpodd")
	rec := &events.Recorder{Kube: k, Node: "worker-1"}
	pod, err := c.cs.CoreV1().Pods("other").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "evpod"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.Emit(events.Event{Namespace: "other", Pod: "evpod", PodUID: string(pod.UID), Reason: events.ReasonCreated, Message: "VM podvm-evpod created in 1.2s"})
	rec.Emit(events.Event{Namespace: "other", Pod: "evpod", PodUID: string(pod.UID), Reason: events.ReasonFailed, Warning: true, Message: "VM podvm-evpod failed"})
	rec.Wait()
	list, err := c.cs.CoreV1().Events("other").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=evpod"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]corev1.Event{}
	for _, ev := range list.Items {
		got[ev.Reason] = ev
	}
	if ev, ok := got[events.ReasonCreated]; !ok || ev.Type != "Normal" || ev.InvolvedObject.UID != pod.UID || ev.Source.Component != events.Component || ev.Message != "VM podvm-evpod created in 1.2s" {
		t.Errorf("created event = %+v (present %v)", ev, ok)
	}
	if ev, ok := got[events.ReasonFailed]; !ok || ev.Type != "Warning" {
		t.Errorf("failed event = %+v (present %v)", ev, ok)
	}
	// Posting as peerpodd's own service account must be allowed; a refused
	// post is reported.
	bad := &events.Recorder{Kube: saClient(t, ctx, c, "peerpod-webhook"), Node: "worker-1"}
	if err := bad.Post(ctx, events.Event{Namespace: "other", Pod: "evpod", Reason: events.ReasonReady}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("event post by the webhook's account: %v, want 403", err)
	}
}

// testPullSecrets reads image pull secrets as peerpodd: allowed in a
// pullSecretNamespaces namespace, refused elsewhere, where the pod starts
// without credentials instead of failing.
func testPullSecrets(t *testing.T, ctx context.Context, c *cluster) {
	k := saClient(t, ctx, c, "peerpodd")
	src := &pullsecrets.Source{Kube: k}
	cfg := []byte(`{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}`)
	for _, ns := range []string{"default", "other"} {
		if _, err := c.cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred"},
			Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pull"},
			Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}},
				Containers: []corev1.Container{{Name: "a", Image: "registry.example/app"}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := src.Secrets(ctx, journal.Entry{SandboxID: "s1", PodNamespace: "default", PodName: "pull"})
	if err != nil {
		t.Fatalf("pull secrets in default: %v", err)
	}
	if !strings.Contains(string(sec.AuthJSON), "registry.example") {
		t.Errorf("auth.json %q lacks registry.example", sec.AuthJSON)
	}
	sec, err = src.Secrets(ctx, journal.Entry{SandboxID: "s2", PodNamespace: "other", PodName: "pull"})
	if err != nil {
		t.Fatalf("pull secrets in a namespace without the Role: %v, want none and no error", err)
	}
	if len(sec.AuthJSON) != 0 {
		t.Errorf("auth.json read in namespace other: %q", sec.AuthJSON)
	}
}

// TestOtherProvidersAccepted creates the aws and libvirt manifests, each in
// a fresh API server (TestDeploy covers azure and the behaviour).
func TestOtherProvidersAccepted(t *testing.T) {
	for _, p := range []string{"aws", "libvirt"} {
		t.Run(p, func(t *testing.T) {
			c := startCluster(t)
			ctx := ctxT(t)
			dyn, err := dynamic.NewForConfig(c.admin)
			if err != nil {
				t.Fatal(err)
			}
			if n := apply(t, ctx, dyn, filepath.Join(repoRoot(t), "deploy", "manifests", p, "peerpod.yaml")); n < 15 {
				t.Fatalf("only %d objects", n)
			}
			cm, err := c.cs.CoreV1().ConfigMaps(releaseNS).Get(ctx, "peer-pods-cm", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cm.Data["CLOUD_PROVIDER"] != p || cm.Data["ATTESTER"] == "" || cm.Data["PEERPODS_LIMIT_PER_NODE"] != "10" {
				t.Errorf("peer-pods-cm %v", cm.Data)
			}
		})
	}
}
