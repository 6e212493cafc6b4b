# box build. Every target exports the same cgo flags: changing any CGO_*
# variable rebuilds all of vendored llama.cpp/ggml (3-6 minutes), and the
# default cgo flags make ggml 3-40x slower (docs/engine-notes in shared docs).

GO        ?= go
# go mod download is a no-op once the module is cached; on a fresh machine it
# fetches the vendored llama.cpp/ggml sources the headers come from.
OLLAMA    := $(shell $(GO) mod download github.com/ollama/ollama >/dev/null 2>&1; $(GO) list -m -f '{{.Dir}}' github.com/ollama/ollama 2>/dev/null)
ARCH      := $(shell $(GO) env GOARCH)
ifeq ($(ARCH),amd64)
SIMD      ?= -march=x86-64-v3
else
SIMD      ?=
endif
OPT       ?= -O3 $(SIMD)

export CGO_ENABLED  := 1
export CGO_CFLAGS   := $(OPT)
export CGO_CXXFLAGS := $(OPT)
export CGO_CPPFLAGS := -I$(OLLAMA)/llama/llama.cpp/include -I$(OLLAMA)/ml/backend/ggml/ggml/include -I$(OLLAMA)/ml/backend/ggml/ggml/src

# box version: git describe and the commit, when built from a git checkout.
BOX_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BOX_COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -X main.version=$(BOX_VERSION) -X main.commit=$(BOX_COMMIT)

TEST_TIMEOUT ?= 30m
FUZZTIME     ?= 20s
BENCH_OUT    ?= bench.json

.PHONY: all build check-ollama test test-race fuzz bench bench-quick demo clean vet env

all: build

build: check-ollama
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/box ./cmd/box
	ln -sf box bin/boxtop

check-ollama:
	@test -d "$(OLLAMA)/llama/llama.cpp/include" || { echo "cannot find github.com/ollama/ollama in the module cache (go mod download failed?)"; exit 1; }

vet: check-ollama
	$(GO) vet ./...

test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The packages with concurrency of their own under the race detector (ggml
# and llama.cpp are rebuilt once for -race, then cached): the head's, the
# clients', and the worker supervisor's lifecycle, quota, admin and cache
# tests (its floods and many-process tests are left to the plain pass).
WORKER_RACE ?= TestAdmin|TestCrashed|TestHugeGraph|TestLeakFault|TestQuotas|TestAttacks|TestSlow|TestConnectionsAreBounded|TestCache
test-race: check-ollama
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./serve/ ./cluster/ ./remote/
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./api/ ./worker/ctl/ ./tui/ ./leakcheck/ ./probe/
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run '$(WORKER_RACE)' ./worker/

# Each fuzz target runs for FUZZTIME; the seed corpus lives in testdata/fuzz.
fuzz: check-ollama
	./scripts/fuzz.sh $(FUZZTIME)

bench: build
	./bin/box bench --out $(BENCH_OUT)

# A before/after check for a change, under 3 minutes on 2 cores: every
# suite, Q8_0 only, shorter tests, 3 repetitions (the 1b preset).
bench-quick: build
	./bin/box bench --suite cpu,rpc,cluster,load --types q8_0 --reps 3 --pp 128 --tg 32 --bw-mib 256 --out $(BENCH_OUT)

demo: build
	./scripts/demo.sh

# Run-time ggml backends: shared libraries in lib/box (beside bin/box) that
# the binary loads at start; the CPU backend stays built in. CMake builds
# them from the module's tree; build dirs are cached in ~/.cache/box/cmake.
# What the host cannot build (no nvcc: no CUDA) is skipped, and said so.
# See docs/gpu.md.
backends: check-ollama
	./scripts/backends.sh all
vulkan: check-ollama
	./scripts/backends.sh vulkan
cuda: check-ollama
	./scripts/backends.sh cuda
cpu-variants: check-ollama
	./scripts/backends.sh cpu-variants

# The GPU path on a Vulkan device (Mesa's lavapipe on CI; see docs/gpu.md).
# Needs make vulkan first, and fails without lib/box/libggml-vulkan.so.
VK_TEST_TIMEOUT ?= 20m
test-vulkan: build
	@test -f lib/box/libggml-vulkan.so || { echo "test-vulkan: lib/box/libggml-vulkan.so is missing (make vulkan)"; exit 1; }
	BOX_BACKENDS=$(CURDIR)/lib/box BOX_BIN=$(CURDIR)/bin/box $(GO) test -tags vulkan -count=1 -timeout $(VK_TEST_TIMEOUT) -v ./gputest/

# Prints the flags, for running go commands by hand: eval $$(make -s env)
env: check-ollama
	@echo export CGO_ENABLED=1 CGO_CFLAGS=\"$(CGO_CFLAGS)\" CGO_CXXFLAGS=\"$(CGO_CXXFLAGS)\" CGO_CPPFLAGS=\"$(CGO_CPPFLAGS)\"

clean:
	rm -rf bin lib
