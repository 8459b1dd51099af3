# shardproxy — see README.md. The two commands: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# Packages with concurrency run under the race detector.
RACE_PKGS := ./proxy/... ./topology/... ./router/... ./rebalance/... ./test/pgcluster/...
DATA ?= $(CURDIR)/data

.PHONY: all build test test-long lint fmt vet demo demo-stop dev bench bench-scaleout deps pg clean

all: build

deps:
	$(GO) mod download

# pg makes sure PostgreSQL server binaries are installed (Debian package when missing).
pg:
	@bash test/scripts/ensure-postgres.sh

build: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/shardproxy ./cmd/shardproxy
	$(GO) build -o $(BIN)/shardctl ./cmd/shardctl

fmt:
	gofmt -w $$(git ls-files '*.go')

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# test: the whole suite with real PostgreSQL servers; under 20 minutes on 2 cores.
test: pg build lint
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 18m $$($(GO) list ./... | grep -v -E '/(proxy|topology|router|rebalance)(/|$$)|/test/pgcluster$$')

# test-long: soak and scale suites that take longer than make test may.
test-long: pg build
	SHARDPROXY_LONG=1 $(GO) test -count=1 -timeout 60m ./test/...

# demo: a local cluster, the proxy in front, and how to connect.
demo: pg build
	$(BIN)/shardproxy dev --shards 2 --replicas 1 --data $(DATA)

demo-stop:
	@if [ -f $(DATA)/shardproxy.pid ]; then kill $$(cat $(DATA)/shardproxy.pid) && echo stopped; else echo "no demo running"; fi

# bench: side-by-side pgbench (direct PostgreSQL, PgBouncer, shardproxy) and Go benchmarks.
bench: pg build
	$(GO) test -run '^$$' -bench . -benchmem ./planner/... ./router/... ./proxy/...
	$(GO) test -run '^$$' -bench TransactionCommit -benchtime 3s -count 3 ./test/e2e/
	bash test/bench/pgbench.sh
	bash test/bench/scaleout.sh

# bench-scaleout: 1, 2 and 4 shards at 0.25 core each, point selects and
# single-row updates by key through one shardproxy vs straight at the shards
# (the "Scale-out" section of docs/benchmarks.md; needs root for cgroups).
bench-scaleout: pg build
	bash test/bench/scaleout.sh

clean:
	rm -rf $(BIN)
