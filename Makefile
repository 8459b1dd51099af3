# shardproxy — see README.md. The two commands: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
# Packages with concurrency run under the race detector.
RACE_PKGS := ./proxy/... ./topology/... ./router/... ./rebalance/... ./test/pgcluster/...
DATA ?= $(CURDIR)/data

.PHONY: all build test test-long lint fmt vet demo demo-stop dev bench bench-scaleout bench-replicas deps pg drivers clean

all: build

deps:
	$(GO) mod download

# pg makes sure PostgreSQL server binaries are installed (Debian package when missing).
pg:
	@bash test/scripts/ensure-postgres.sh

# drivers installs psycopg 3, psycopg2 (Debian packages) and node-postgres
# (npm ci) for the driver check in test/e2e/drivers_test.go.
drivers:
	@bash test/scripts/ensure-drivers.sh

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
test: pg drivers build lint
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 18m $$($(GO) list ./... | grep -v -E '/(proxy|topology|router|rebalance)(/|$$)|/test/pgcluster$$')

# test-long: soak and scale suites that take longer than make test may.
test-long: pg build
	SHARDPROXY_LONG=1 $(GO) test -tags long -count=1 -timeout 60m ./test/...

# demo: 4 shards x 1 streaming replica under .demo (PostgreSQL on ports
# DEMO_PG_PORT..+7), single-node Raft, the proxy on 127.0.0.1:6432, admin and
# metrics on 127.0.0.1:9930, the social app seeded through the proxy (once;
# a rerun reuses the data) and serving on 127.0.0.1:8080. Ctrl-C stops it all.
DEMO_DIR ?= $(CURDIR)/.demo
DEMO_PG_PORT ?= 6440
demo: pg build
	$(GO) build -o $(BIN)/socialapp ./test/socialapp/cmd/socialapp
	$(BIN)/shardproxy dev --socialapp --shards 4 --replicas 1 --data $(DEMO_DIR) --pg-port $(DEMO_PG_PORT) \
		--raft-dir $(DEMO_DIR)/raft --listen 127.0.0.1:6432 --admin 127.0.0.1:9930 --app-listen 127.0.0.1:8080

# demo-stop: stop a demo started elsewhere and wait until it (with its
# PostgreSQL servers) has exited.
demo-stop:
	@pidfile=$(DEMO_DIR)/shardproxy.pid; \
	if [ ! -f $$pidfile ] || ! kill -0 $$(cat $$pidfile) 2>/dev/null; then echo "no demo running"; exit 0; fi; \
	pid=$$(cat $$pidfile); kill $$pid; \
	for i in $$(seq 1 600); do kill -0 $$pid 2>/dev/null || { echo "demo stopped"; exit 0; }; sleep 0.1; done; \
	echo "demo (pid $$pid) still running after 60s"; exit 1

# bench: side-by-side pgbench (direct PostgreSQL, PgBouncer, shardproxy) and Go benchmarks.
bench: pg build
	$(GO) test -run '^$$' -bench . -benchmem ./planner/... ./router/... ./proxy/...
	$(GO) test -run '^$$' -bench TransactionCommit -benchtime 3s -count 3 ./test/e2e/
	$(GO) test -run '^$$' -bench . -benchtime 2s ./test/compat/
	bash test/bench/pgbench.sh
	bash test/bench/scaleout.sh
	bash test/bench/moves.sh
	bash test/bench/replicas.sh

# bench-scaleout: 1, 2 and 4 shards at 0.25 core each, point selects and
# single-row updates by key through one shardproxy vs straight at the shards
# (the "Scale-out" section of docs/benchmarks.md; needs root for cgroups).
bench-scaleout: pg build
	bash test/bench/scaleout.sh

# bench-replicas: pgbench -S on one shard through shardproxy with 0, 1 and 2
# replicas, each server at 0.25 core (the "Read replicas" section of
# docs/benchmarks.md; needs root for cgroups).
bench-replicas: pg build
	bash test/bench/replicas.sh

clean:
	rm -rf $(BIN)
