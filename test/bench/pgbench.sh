#!/usr/bin/env bash
# pgbench side by side: direct PostgreSQL, PgBouncer and shardproxy, interleaved,
# on one local server. Writes docs/benchmarks.md. Run from anywhere:
#
#   bash test/bench/pgbench.sh                 # 15 s per run (make bench)
#   BENCH_SECONDS=10 bash test/bench/pgbench.sh
#
# Environment: BENCH_SECONDS (default 15), BENCH_ROUNDS (2), BENCH_CLIENTS (50),
# BENCH_POOL (20), BENCH_IDLE_CLIENTS (10000), BENCH_ONLY (comma-separated
# workloads, e.g. select-simple,connect), BENCH_TARGETS (direct,pgbouncer,shardproxy),
# BENCH_OUT (docs/benchmarks.md), BENCH_SHARDPROXY (prebuilt binary), BENCH_CPUPROFILE (a directory: save a Go CPU
# profile of shardproxy for each of its runs; look at one with
# `go tool pprof -top bin/shardproxy DIR/shardproxy-select-simple-r1.pprof`),
# BENCH_BASELINE (a second shardproxy binary, e.g. built from the last commit,
# run as target "baseline": add it to BENCH_TARGETS, e.g.
# BENCH_TARGETS=baseline,shardproxy, to compare two builds in one run; its
# figures are in the log and in the "Every run" table).
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}

bash test/scripts/ensure-pgbouncer.sh
if ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 && ! command -v pgbench >/dev/null 2>&1; then
	bash test/scripts/ensure-postgres.sh
fi

mkdir -p bin
# BENCH_SHARDPROXY: a prebuilt binary to measure (e.g. one built from a clean
# export of HEAD); by default the working tree is built.
SHARDPROXY=${BENCH_SHARDPROXY:-bin/shardproxy}
if [ -z "${BENCH_SHARDPROXY:-}" ]; then
	$GO build -o bin/shardproxy ./cmd/shardproxy
fi
$GO build -o bin/bench-driver ./test/bench/driver

# 10,000 idle clients need as many descriptors in the driver and in each pooler.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec bin/bench-driver \
	-seconds "$SECONDS_PER_RUN" \
	-rounds "${BENCH_ROUNDS:-2}" \
	-clients "${BENCH_CLIENTS:-50}" \
	-pool "${BENCH_POOL:-20}" \
	-idle-clients "${BENCH_IDLE_CLIENTS:-10000}" \
	-only "${BENCH_ONLY:-}" \
	-targets "${BENCH_TARGETS:-direct,pgbouncer,shardproxy}" \
	-cpuprofile "${BENCH_CPUPROFILE:-}" \
	-shardproxy "$SHARDPROXY" \
	-baseline "${BENCH_BASELINE:-}" \
	-out "${BENCH_OUT:-docs/benchmarks.md}" \
	-command "BENCH_SECONDS=$SECONDS_PER_RUN bash test/bench/pgbench.sh   # the pgbench part of make bench"
