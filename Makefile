# layerimg: build VM images the way containers are built.
GO        ?= go
export GOPROXY ?= https://proxy.golang.org
export PATH := $(PATH):/usr/local/go/bin
DEB_PKGS  := mmdebstrap uidmap busybox-static docker-registry e2fsprogs dosfstools mtools gdisk qemu-utils qemu-system-x86 ovmf ca-certificates tar gzip ansible-core \
             qemu-user-static binfmt-support qemu-system-arm qemu-efi-aarch64

.PHONY: deps test-deps build example test bench lint clean

# Debian packages that builds and tests need (run as root).
deps:
	@if ! dpkg -s $(DEB_PKGS) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEB_PKGS); \
	fi

# Azurite, the Azure Storage emulator the Azure tests upload to (npm, into
# .tools/; Node.js from Debian if the machine has none).
AZURITE   := azurite@3.35.0
# cosign, the outside oracle for signatures and attestations (Go module proxy,
# into .tools/bin; a few minutes on 2 cores, once). arm64 run steps need a
# binfmt_misc handler for qemu-aarch64 (qemu-user-static above).
COSIGN    := github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
test-deps: deps
	@if ! command -v npm >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; \
	fi
	@test -x .tools/node_modules/.bin/azurite-blob || \
		npm install --no-audit --no-fund --prefix .tools $(AZURITE)
	@test -x .tools/bin/cosign || GOBIN=$(CURDIR)/.tools/bin $(GO) install $(COSIGN)
	@mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
	@update-binfmts --enable qemu-aarch64 2>/dev/null || true

build:
	$(GO) build -o bin/layerimg ./cmd/layerimg

# The self-contained example: a Debian base from the public mirror, a copy
# step, apt-get in the sandbox, and tests; no account or login needed.
example: deps build
	./bin/layerimg build recipes/examples/debian-minimal.yaml \
		--oci-layout out/image --rootfs-tar out/rootfs.tar --manifest out/build.json
	./bin/layerimg plan recipes/examples/debian-minimal.yaml

test: test-deps
	$(GO) test -timeout 80m ./...

# Side-by-side figures for BENCHMARKS.md (same tree, same machine, one run).
bench: test-deps
	$(GO) test -run XXX -bench 'LayerCreate|TarGzipPipeline' -benchtime 5x ./layers
	$(GO) test -run XXX -bench NoopRebuild -benchtime 20x ./cmd/layerimg
	$(GO) test -run XXX -bench TTYNoopRebuild -benchtime 200x ./internal/progress
	# Disks against qemu-img and the shell pipeline; set LAYERIMG_BENCH_ROOTFS
	# and LAYERIMG_BENCH_DISK to measure a real image (see BENCHMARKS.md).
	$(GO) test -run XXX -bench 'Convert|DiskAssembly' -benchtime 3x ./cmd/layerimg
	# Cloud uploads against the stand-ins (fake EC2/EBS with 50 ms per call).
	$(GO) test -run XXX -bench 'EBSDirect|EBSIncremental' -benchtime 3x ./export/aws
	$(GO) test -run XXX -bench AzureUpload -benchtime 3x ./export/azure

lint:
	test -z "$$(gofmt -l .)"
	$(GO) vet ./...

clean:
	rm -rf bin out .tools
