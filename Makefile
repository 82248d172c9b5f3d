# tender: build the monitor and the example guests, run, test, bench, lint.
GO      ?= go
BIN     := bin
GUESTBIN := $(BIN)/guest

.PHONY: all tender guests run test test-race test-kvm-emulated kvm-report bench bench-deps lint generate clean mutants soak

all: tender guests

# Static binaries (no cgo resolver): they run anywhere, in a minimal VM too.
tender:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/tender ./cmd/tender
	CGO_ENABLED=0 $(GO) build -o $(BIN)/tender-serve ./cmd/tender-serve
	CGO_ENABLED=0 $(GO) build -o $(BIN)/tender-bench ./cmd/tender-bench
	CGO_ENABLED=0 $(GO) build -o $(BIN)/tender-oci ./cmd/tender-oci
	CGO_ENABLED=0 $(GO) build -o $(BIN)/bench/httpecho ./tests/fixtures/httpecho
	CGO_ENABLED=0 $(GO) build -o $(BIN)/bench/gohello ./tests/fixtures/gohello
	@mkdir -p $(BIN)/bench
	$(GUEST_CC) $(HOST_NOLIBC_CFLAGS) $(HOST_NOLIBC_LDFLAGS) -o $(BIN)/bench/maxrss bench/maxrss/maxrss.c

# guest/guest.mk defines GUEST_ELFS (every bin/guest/NAME.elf) and their rules.
include guest/guest.mk

guests: $(GUEST_ELFS)

# Benchmark fixtures: plain C programs the benchmarks compare tender with.
BENCH_BINS := $(BIN)/bench/kvm_floor $(BIN)/bench/pipe_echo
$(BIN)/bench/kvm_floor: tests/fixtures/kvm_floor.c
	@mkdir -p $(dir $@)
	gcc -O2 -Wall -Wextra -Werror -o $@ $<
# Static, as the tests run it in make test-kvm-emulated's minimal VM too.
$(BIN)/bench/pipe_echo: tests/fixtures/pipe_echo.c
	@mkdir -p $(dir $@)
	gcc -O2 -Wall -Wextra -Werror -static -o $@ $<

all: $(BENCH_BINS)

# KVM where the machine has it, else the process backend.
BACKEND ?= $(if $(wildcard /dev/kvm),kvm,process)

# The main job: build the monitor and the hello unikernel, then run it.
run: all
	@echo "tender run --backend=$(BACKEND) $(GUESTBIN)/hello.elf"
	@$(BIN)/tender run --backend=$(BACKEND) $(GUESTBIN)/hello.elf

# Every test: unit tests, fuzz seeds, and integration tests that boot the guests.
test: all
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# The tests of the monitor, the gateway, the CLI's helpers, tender-oci's
# package and the integration tests under Go's race detector (needs cgo, so
# gcc); the CLI tests still run the binaries built without it.
test-race: all
	CGO_ENABLED=1 $(GO) test -race -count=1 ./monitor/... ./gateway/ ./internal/... ./oci/ ./tests/

# The KVM tests under QEMU's emulation of an AMD CPU with SVM, for machines
# without /dev/kvm (see tests/kvm-in-qemu/run.sh for what this proves).
test-kvm-emulated: all
	bash tests/kvm-in-qemu/run.sh

# On a machine with /dev/kvm: the suite with TENDER_REQUIRE_KVM=1 three times,
# then every benchmark beside its baseline, and one Markdown table of the
# performance targets (also in bin/kvm-report.md; see docs/performance.md).
kvm-report: all
	$(GO) run ./tests/kvmreport

bench: all
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

# The container runtimes `tender bench` compares with (its crun and runc rows
# are reported unavailable without them), and wrk for make kvm-report's
# `tender serve` rows. Debian packages; needs root.
bench-deps:
	@command -v crun >/dev/null && command -v runc >/dev/null && command -v wrk >/dev/null || { \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q crun runc wrk; }

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

generate:
	$(GO) generate ./...

clean:
	rm -rf $(BIN)

# The mutation check: every one-line breaker of a documented promise in
# tests/mutants/mutants.txt must make its tests fail.
mutants: all
	$(GO) run ./tests/mutants

# tender serve under mixed loopback load for SOAK (default 10m) per backend,
# ending with SIGTERM: no request lost, descriptors, threads and RSS flat.
SOAK ?= 10m
soak: all
	TENDER_SOAK=$(SOAK) $(GO) test -count=1 -run '^TestSoak$$' -timeout 0 -v ./tests
