# Container images without a container engine: static binaries packed by
# deploy/image into docker-archive tarballs (push with crane or skopeo).
.PHONY: images

IMAGES_DIR  ?= $(CURDIR)/_output/images
IMAGE_REPO  ?= ghcr.io/peerpod
IMAGE_TAG   ?= dev
# Fixed timestamps for reproducible images: the last commit's time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_TOOL  := $(GO) run ./deploy/image -repo $(IMAGE_REPO) -tag $(IMAGE_TAG)

## images: build static peerpodd, peerpodctl, peerpod-webhook and the peerpod + peerpod-webhook image tarballs in $(IMAGES_DIR)
images:
	@mkdir -p $(IMAGES_DIR)/bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(IMAGES_DIR)/bin/ ./cmd/peerpodd ./cmd/peerpodctl ./cmd/peerpod-webhook
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(IMAGE_TOOL) -name peerpod \
	  -bin $(IMAGES_DIR)/bin/peerpodd:/usr/local/bin/peerpodd \
	  -bin $(IMAGES_DIR)/bin/peerpodctl:/usr/local/bin/peerpodctl \
	  -entrypoint /usr/local/bin/peerpodd -out $(IMAGES_DIR)/peerpod.tar
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(IMAGE_TOOL) -name peerpod-webhook \
	  -bin $(IMAGES_DIR)/bin/peerpod-webhook:/usr/local/bin/peerpod-webhook \
	  -entrypoint /usr/local/bin/peerpod-webhook -out $(IMAGES_DIR)/peerpod-webhook.tar
