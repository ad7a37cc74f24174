# tokengate: make run (the demo) and make test are all a newcomer needs.
GO            ?= go
STATICCHECK   ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK   ?= golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The gofmt of the toolchain go runs (GOTOOLCHAIN may have switched it), not whichever is on PATH.
GOFMT         ?= $(shell $(GO) env GOROOT)/bin/gofmt
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X main.version=$(VERSION)
PKGS          := ./...

.PHONY: all build test test-short lint lint-ci vet fmt-check staticcheck tidy-check vulncheck run bench bench-load fuzz clean

all: build

build: ## the tokengate binary in bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tokengate ./cmd/tokengate

test: vet ## go vet, then every test with the race detector (what CI runs)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short: ## quick run without the race detector
	$(GO) test -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

# The tracked Go files (another checkout's untracked scratch files are not ours to judge); without
# git (an unpacked tarball) every Go file under the tree.
fmt-check:
	@files=$$(git ls-files '*.go' 2>/dev/null); out=$$($(GOFMT) -l $${files:-.}); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

# go mod tidy -diff changes nothing: it prints what tidy would change and fails when that is not
# empty (an import added or removed without go.mod following, a direct dependency marked
# indirect or the reverse).
tidy-check:
	$(GO) mod tidy -diff

# govulncheck reads the Go vulnerability database at vuln.go.dev; on a machine that cannot
# reach it, point GOVULNDB at a local copy (GOVULNDB=file:///path/to/vulndb).
vulncheck:
	$(GO) run $(GOVULNCHECK) $(if $(GOVULNDB),-db $(GOVULNDB)) $(PKGS)

lint: fmt-check vet staticcheck vulncheck ## gofmt, go vet, staticcheck, govulncheck

# lint-ci is what .ci/run checks before the tests: everything in lint that needs no network
# beyond the Go module proxy (govulncheck reads vuln.go.dev, so it stays out), except go vet,
# which make test runs next (CI would otherwise vet every package twice).
lint-ci: fmt-check staticcheck tidy-check ## gofmt, staticcheck, go mod tidy -diff (go vet is in make test)

run: ## the demo: issuer, ext_authz, an echo upstream and a stand-in gateway on loopback
	$(GO) run ./cmd/tokengate demo

bench: ## benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./extauthz/ ./internal/... ./issuer/

# bench-load is issue 11's load harness (docs/performance.md): tokengate and the no-op reference
# ext_authz server, each pinned to one core, driven by the same lean client on the other core;
# about 90 seconds, loopback only, not part of make test. BENCH_LOAD_FLAGS passes flags to
# bin/tgload, e.g. --profile-dir bin/profiles for a CPU profile of tokengate per target.
bench-load: build ## the load harness: Checks/s, CPU per Check, p99, RSS and token rate, against a no-op server
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/noop-authz ./cmd/noop-authz
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tgprofd ./cmd/tgprofd
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tgload ./cmd/tgload
	bin/tgload --tokengate bin/tokengate --noop bin/noop-authz --tgprofd bin/tgprofd $(BENCH_LOAD_FLAGS)

fuzz: ## a short run of every fuzz target
	@for t in $$($(GO) test -list '^Fuzz' ./... 2>/dev/null | grep '^Fuzz'); do \
	  pkg=$$(grep -rl "func $$t(" --include='*_test.go' . | head -1 | xargs dirname); \
	  echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime 20s $$pkg || exit 1; \
	done

clean:
	rm -rf bin
