# layerimg: build VM images the way containers are built.
GO        ?= go
export GOPROXY ?= https://proxy.golang.org
export PATH := $(PATH):/usr/local/go/bin
DEB_PKGS  := mmdebstrap uidmap busybox-static docker-registry e2fsprogs dosfstools mtools gdisk qemu-utils qemu-system-x86 ovmf ca-certificates tar gzip ansible-core

.PHONY: deps test-deps build example test bench lint clean

# Debian packages that builds and tests need (run as root).
deps:
	@if ! dpkg -s $(DEB_PKGS) >/dev/null 2>&1; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEB_PKGS); \
	fi

# Azurite, the Azure Storage emulator the Azure tests upload to (npm, into
# .tools/; Node.js from Debian if the machine has none).
AZURITE   := azurite@3.35.0
test-deps: deps
	@if ! command -v npm >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; \
	fi
	@test -x .tools/node_modules/.bin/azurite-blob || \
		npm install --no-audit --no-fund --prefix .tools $(AZURITE)

build:
	$(GO) build -o bin/layerimg ./cmd/layerimg

# The self-contained example: a Debian base from the public mirror, a copy
# step, apt-get in the sandbox, and tests; no account or login needed.
example: deps build
	./bin/layerimg build recipes/examples/debian-minimal.yaml \
		--oci-layout out/image --rootfs-tar out/rootfs.tar --manifest out/build.json
	./bin/layerimg plan recipes/examples/debian-minimal.yaml

test: test-deps
	$(GO) test -timeout 45m ./...

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
