GO ?= go
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The guest kernel unpacked by scripts/fetch-kernel.sh; tests that read a real kernel skip without it.
export INITOS_KERNEL_ROOT ?= $(wildcard /var/lib/initos-runtime/kernel)
FUZZTIME ?= 30s

.PHONY: build test integration stress conformance lint bench fuzz proto clean

# build: the runtime CLI, the containerd shim, the static guest agent and its process helper into bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/initos-runtime ./cmd/initos-runtime
	$(GO) build -ldflags "-X github.com/initos-runtime/initos-runtime/shim.Version=$(VERSION)" -o bin/containerd-shim-initos-v2 ./cmd/containerd-shim-initos-v2
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS) -s -w" -o bin/initos-agent ./cmd/initos-agent
	CGO_ENABLED=0 $(GO) build -ldflags "-s -w" -o bin/initos-exec ./cmd/initos-exec

# test: unit tests of every package (root-only ones skip without root; no VMs)
test:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

# integration: boots real VMs (qemu; TCG where KVM is unusable) through the CLI
integration:
	INITOS_INTEGRATION=1 $(GO) test -count=1 -timeout 40m -v ./integration/

# stress: boots INITOS_STRESS_N VMs (60), INITOS_STRESS_PAR at a time (6), prints the boot times, and counts host leaks over podman and nerdctl runs (not in CI)
stress:
	INITOS_INTEGRATION=1 INITOS_STRESS=1 $(GO) test -count=1 -timeout 60m -v -run '^TestStress(Boot|Leaks)$$' ./integration/

# conformance: critest v1.37.0 against a private containerd under runc and initos, prints passed/failed/skipped and the time of each (CONFORMANCE_ARGS=--ci: only conformance/initos-pass.txt; --templates: initos's VMs from templates)
conformance:
	./scripts/conformance.sh $(CONFORMANCE_ARGS)

# lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

# bench: every phase of a start (host and guest) beside runc, engines beside runc, ten at once and their memory, volume throughput; writes docs/benchmarks.md (.svg)
bench:
	INITOS_INTEGRATION=1 INITOS_BENCH_REPORT=$(CURDIR)/docs/benchmarks.md $(GO) test -count=1 -run '^$$' -bench . -benchtime 3x -timeout 45m ./integration/ ./bundle/ ./initrd/

# fuzz: runs each fuzz target for FUZZTIME (default 30s)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseCmdline$$' -fuzztime $(FUZZTIME) ./guestagent/
	$(GO) test -run '^$$' -fuzz '^FuzzSetupRequest$$' -fuzztime $(FUZZTIME) ./guestagent/
	$(GO) test -run '^$$' -fuzz '^FuzzCreateProcessRequest$$' -fuzztime $(FUZZTIME) ./guestagent/
	$(GO) test -run '^$$' -fuzz '^FuzzProcessJSON$$' -fuzztime $(FUZZTIME) ./guestagent/
	$(GO) test -run '^$$' -fuzz '^FuzzConfig$$' -fuzztime $(FUZZTIME) ./guestagent/procinit/
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./bundle/
	$(GO) test -run '^$$' -fuzz '^FuzzValidateSpec$$' -fuzztime $(FUZZTIME) ./bundle/
	$(GO) test -run '^$$' -fuzz '^FuzzHybridVsockHandshake$$' -fuzztime $(FUZZTIME) ./vmm/cloudhypervisor/

# proto: regenerate agentapi and monitorapi from their .proto (protoc and its Go plugins: scripts/setup.sh installs them)
proto:
	$(GO) generate ./agentapi/ ./monitorapi/

clean:
	rm -rf bin
