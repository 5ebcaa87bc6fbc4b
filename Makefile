# Pinring. `make run` starts a local peer with its own kubo; `make test`
# runs every test, end-to-end ones included. Both build what they need.
GO      ?= go
BIN     := bin
KUBO    := $(BIN)/ipfs
CMDS    := cluster-peer cluster-ctl cluster-follow
STATICCHECK_VERSION := v0.8.2

PREFIX  ?= /usr/local

.PHONY: all build install kubo cluster-clients run test unit e2e bench bench-cluster lint tidy-check clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Installs the three binaries into $(PREFIX)/bin (and kubo when built).
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix $(BIN)/,$(CMDS)) $(DESTDIR)$(PREFIX)/bin/
	@if [ -x $(KUBO) ]; then install -m 0755 $(KUBO) $(DESTDIR)$(PREFIX)/bin/ipfs; fi
	@echo "installed $(CMDS) in $(DESTDIR)$(PREFIX)/bin; systemd units are in dist/ (docs/deploy.md)"

# kubo is a Go tool in its own module (tools/kubo), built once and reused.
kubo: $(KUBO)
$(KUBO): tools/kubo/go.mod tools/kubo/go.sum
	@echo "building kubo from the Go module proxy (several minutes on a cold cache)"
	cd tools/kubo && $(GO) build -o ../../$(KUBO) github.com/ipfs/kubo/cmd/ipfs
	@touch $(KUBO)

# IPFS Cluster's own clients, which the e2e tests drive against Pinring:
# ipfs-cluster-ctl and a program on its Go REST client (tools/ipfs-cluster,
# a module of its own), and its JavaScript client from npm (tools/js).
CLUSTER_TOOLS := $(BIN)/ipfs-cluster-ctl $(BIN)/cluster-conformance
cluster-clients: $(CLUSTER_TOOLS) tools/js/node_modules/.package-lock.json
$(BIN)/ipfs-cluster-ctl: tools/ipfs-cluster/go.mod tools/ipfs-cluster/go.sum
	@echo "building ipfs-cluster-ctl from the Go module proxy"
	cd tools/ipfs-cluster && $(GO) build -o ../../$@ github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-ctl
$(BIN)/cluster-conformance: tools/ipfs-cluster/go.mod tools/ipfs-cluster/go.sum $(wildcard tools/ipfs-cluster/conformance/*.go)
	cd tools/ipfs-cluster && $(GO) build -o ../../$@ ./conformance
tools/js/node_modules/.package-lock.json: tools/js/package.json tools/js/package-lock.json
	cd tools/js && npm ci --no-audit --no-fund

run: build kubo
	./scripts/run.sh

# Unit tests (with -race) and the end-to-end tests against real kubo.
test: kubo cluster-clients
	@# The dashboard test drives Debian's chromium; install it when missing
	@# (CI runs as root). Without it the test says why and is skipped.
	@if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the dashboard test"; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || echo "could not install chromium: the dashboard test will be skipped"; \
	else echo "chromium missing and not root: the dashboard test will be skipped"; fi
	PINRING_REQUIRE_BROWSER=$$( [ -x /usr/bin/chromium ] && echo 1 ) $(GO) test -race -count=1 -timeout 20m ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: kubo cluster-clients
	$(GO) test -count=1 -v -timeout 20m ./e2e/

bench:
	$(GO) test -run XXX -bench AddParallel -benchtime=100000x ./crdtstate/
	$(GO) test -run XXX -bench List -benchtime=3x ./crdtstate/
	$(GO) test -run XXX -bench RESTPin -benchtime=10000x ./peer/

# Replication across real peer processes: PINS=100000 make bench-cluster
PINS ?= 20000
bench-cluster: build
	$(GO) run ./bench -peers 3 -pins $(PINS)

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)

tidy-check:
	$(GO) mod tidy -diff

clean:
	rm -rf $(BIN)/cluster-* .pinring-run
