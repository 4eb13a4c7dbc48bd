package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MutatePath is the webhook's URL path.
const MutatePath = "/mutate-v1-pod"

// maxReview bounds an AdmissionReview body (the API server sends at most a few MiB).
const maxReview = 8 << 20

// Handler serves MutatePath (AdmissionReview v1) and /readyz.
func Handler(m *Mutator, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST "+MutatePath, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReview+1))
		if err != nil || len(body) > maxReview {
			http.Error(w, "admission review: body unreadable or too large", http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "admission review: not an AdmissionReview with a request", http.StatusBadRequest)
			return
		}
		resp := Review(m, review.Request, log)
		out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	return mux
}

// Review answers one admission request: allowed, with a patch for peer pods.
// A pod that cannot be decoded is refused with a message saying why.
func Review(m *Mutator, req *admissionv1.AdmissionRequest, log *slog.Logger) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(req, fmt.Sprintf("peerpod-webhook: pod %s/%s cannot be decoded: %v", req.Namespace, req.Name, err))
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	patch, err := m.Patch(&pod)
	if err != nil {
		return deny(req, "peerpod-webhook: "+err.Error())
	}
	if patch == nil {
		return resp
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	log.Info("sized peer pod", "pod", podName(&pod))
	return resp
}

func deny(req *admissionv1.AdmissionRequest, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: false,
		Result: &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Message: msg}}
}
