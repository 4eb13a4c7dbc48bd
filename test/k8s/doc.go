// Package k8s holds the deployment tests that run against a real
// kube-apiserver and etcd started on loopback: the chart's rendered
// manifests, the mutating webhook, node capacity across a rolling restart,
// and the RBAC of peerpodd and the webhook. kube-apiserver is built once by
// `make k8s-test-bin` (test/k8s/build-k8s.sh); etcd is Debian's etcd-server.
package k8s
