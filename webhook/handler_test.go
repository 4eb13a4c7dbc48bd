package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func review(t *testing.T, h http.Handler, kind string, op admissionv1.Operation, obj []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	in := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind},
			Operation: op, Namespace: "ns", Object: runtime.RawExtension{Raw: obj}},
	}
	body, _ := json.Marshal(in)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		return rec.Code, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	if out.Response.UID != "u-1" || out.Kind != "AdmissionReview" {
		t.Fatalf("answer does not echo the review: %+v", out)
	}
	return rec.Code, out.Response
}

func TestHandler(t *testing.T) {
	h := Handler(&Mutator{}, nil)
	kata := "kata-remote"
	peer, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{RuntimeClassName: &kata,
		Containers: []corev1.Container{ctr("a", rl("cpu", "1"), nil)}}})
	plain, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{ctr("a", rl("cpu", "1"), nil)}}})
	empty, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "e"}, Spec: corev1.PodSpec{RuntimeClassName: &kata}})
	tests := []struct {
		name      string
		kind      string
		op        admissionv1.Operation
		obj       []byte
		allowed   bool
		patched   bool
		denyMatch string
	}{
		{"peer pod", "Pod", admissionv1.Create, peer, true, true, ""},
		{"plain pod", "Pod", admissionv1.Create, plain, true, false, ""},
		{"update", "Pod", admissionv1.Update, peer, true, false, ""},
		{"not a pod", "Secret", admissionv1.Create, peer, true, false, ""},
		{"undecodable", "Pod", admissionv1.Create, []byte(`{"spec":7}`), false, false, "cannot be decoded"},
		{"no containers", "Pod", admissionv1.Create, empty, false, false, "no containers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, resp := review(t, h, tc.kind, tc.op, tc.obj)
			if resp.Allowed != tc.allowed || (resp.Patch != nil) != tc.patched {
				t.Fatalf("allowed %v patch %s", resp.Allowed, resp.Patch)
			}
			if tc.patched && (resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || !strings.Contains(string(resp.Patch), "kata.peerpods.io/vm")) {
				t.Errorf("patch %s type %v", resp.Patch, resp.PatchType)
			}
			if tc.denyMatch != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.denyMatch)) {
				t.Errorf("denial %+v, want %q", resp.Result, tc.denyMatch)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, MutatePath, strings.NewReader("not json")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("garbage body: %d", rec.Code)
	}
}
