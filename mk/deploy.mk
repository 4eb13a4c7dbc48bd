# Deployment: Helm chart, rendered manifests, webhook, tests on a real kube-apiserver.
.PHONY: k8s-test-bin render-tool manifests check-manifests lint-chart deploy-test

K8S_VERSION     ?= v1.34.4
K8S_STAGING     ?= v0.34.4
# Cache of the kube-apiserver build, keyed by version (under $(K8S_BIN_DIR)/$(K8S_VERSION)).
K8S_BIN_DIR     ?= $(CURDIR)/_output/k8s
RENDER          := $(CURDIR)/_output/render
CHART           := deploy/helm/peerpod
PROVIDERS       := azure aws libvirt

## k8s-test-bin: build kube-apiserver (k8s.io/kubernetes $(K8S_VERSION)) into $(K8S_BIN_DIR) once; cached afterwards
k8s-test-bin:
	bash test/k8s/build-k8s.sh $(K8S_BIN_DIR) $(K8S_VERSION) $(K8S_STAGING)

## render-tool: the offline Helm renderer/linter (own module, deploy/tools/render)
render-tool:
	cd deploy/tools/render && GOWORK=off $(GO) build -o $(RENDER) .

## manifests: render the chart into deploy/manifests/<provider>/peerpod.yaml
manifests: render-tool
	@for p in $(PROVIDERS); do \
	  $(RENDER) -chart $(CHART) -values $(CHART)/values-$$p.yaml -out deploy/manifests/$$p/peerpod.yaml || exit 1; done

## check-manifests: fail if deploy/manifests is stale against the chart; lint every provider's values
check-manifests: manifests lint-chart
	@git diff --exit-code -- deploy/manifests || { echo "deploy/manifests is stale: run make manifests"; exit 1; }

## lint-chart: helm lint plus a strict render of every provider's values
lint-chart: render-tool
	@for p in $(PROVIDERS); do \
	  $(RENDER) -chart $(CHART) -values $(CHART)/values-$$p.yaml -lint || exit 1; done

## deploy-test: the webhook, chart and node-capacity tests against a real kube-apiserver and etcd
deploy-test: k8s-test-bin render-tool
	PEERPOD_K8S_BIN=$(K8S_BIN_DIR)/$(K8S_VERSION) PEERPOD_RENDER=$(RENDER) \
	  $(GO) test -count=1 -timeout 20m ./webhook/... ./cmd/peerpod-webhook/... ./test/k8s/...
