#!/usr/bin/env bash
# Scale-out benchmark: 1, 2 and 4 shards, each PostgreSQL capped at 0.25 core
# (cgroup v1, so run as root), point selects and single-row updates by key
# through one shardproxy process with 8 clients per shard, and the same load
# straight at each shard as the baseline. Writes the "Scale-out" section of
# docs/benchmarks.md (the rest of the file is left alone). Run from anywhere:
#
#   bash test/bench/scaleout.sh                 # make bench-scaleout
#   BENCH_SECONDS=10 bash test/bench/scaleout.sh
#
# Placement: BENCH_SERVER_CPUS confines the servers to those CPUs (cgroup v1
# cpuset) and BENCH_CLIENT_CPUS pins shardproxy and pgbench (taskset), e.g.
# BENCH_SERVER_CPUS=1 BENCH_CLIENT_CPUS=0 for machines of their own.
# Environment: BENCH_SECONDS (default 15), BENCH_ROUNDS (2), BENCH_SHARD_COUNTS
# (1,2,4), BENCH_CLIENTS_PER_SHARD (8), BENCH_ROWS_PER_SHARD (100000),
# BENCH_CPU_QUOTA (0.25), BENCH_PROTOCOLS (pgbench -M modes, default prepared;
# e.g. prepared,extended), BENCH_SCALEOUT_POOL (pool.size per shard, default
# the clients per shard), BENCH_OUT (docs/benchmarks.md; "" = stdout only),
# BENCH_SHARDPROXY (prebuilt binary; default: build the working tree into
# bin/shardproxy), BENCH_CPUPROFILE (a directory: save a Go CPU profile of
# shardproxy for each of its runs, e.g.
# `go tool pprof -top bin/shardproxy DIR/shardproxy-scaleout-4shards-select-prepared-r1.pprof`),
# BENCH_BASELINE (a second shardproxy binary on the same cluster, run as
# target "baseline" next to "shardproxy" in every round, to compare two
# builds side by side; its runs are in the log and the every-run table),
# BENCH_TARGETS (targets to run, of direct,shardproxy,baseline,pgbouncer;
# default all but pgbouncer, which is the direct load through one PgBouncer
# with a database per shard),
# BENCH_WORKLOADS (select,update; default both). For example, two builds on
# point selects at 4 shards only:
#   BENCH_BASELINE=/tmp/shardproxy-head BENCH_TARGETS=baseline,shardproxy \
#   BENCH_WORKLOADS=select BENCH_SHARD_COUNTS=4 BENCH_OUT= bash test/bench/scaleout.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}

if [[ "${BENCH_TARGETS:-}" == *pgbouncer* ]]; then
	bash test/scripts/ensure-pgbouncer.sh
fi
if ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 && ! command -v pgbench >/dev/null 2>&1; then
	bash test/scripts/ensure-postgres.sh
fi

mkdir -p bin
SHARDPROXY=${BENCH_SHARDPROXY:-bin/shardproxy}
if [ -z "${BENCH_SHARDPROXY:-}" ]; then
	$GO build -o bin/shardproxy ./cmd/shardproxy
fi
$GO build -o bin/bench-driver ./test/bench/driver

exec bin/bench-driver -mode scaleout \
	-seconds "$SECONDS_PER_RUN" \
	-rounds "${BENCH_ROUNDS:-2}" \
	-shard-counts "${BENCH_SHARD_COUNTS:-1,2,4}" \
	-clients-per-shard "${BENCH_CLIENTS_PER_SHARD:-8}" \
	-rows-per-shard "${BENCH_ROWS_PER_SHARD:-100000}" \
	-cpu-quota "${BENCH_CPU_QUOTA:-0.25}" \
	-server-cpus "${BENCH_SERVER_CPUS:-}" \
	-client-cpus "${BENCH_CLIENT_CPUS:-}" \
	-protocols "${BENCH_PROTOCOLS:-prepared}" \
	-scaleout-pool "${BENCH_SCALEOUT_POOL:-0}" \
	-threads 2 \
	-cpuprofile "${BENCH_CPUPROFILE:-}" \
	-baseline "${BENCH_BASELINE:-}" \
	-scaleout-targets "${BENCH_TARGETS:-}" \
	-proxy-pool-mode "${BENCH_POOL_MODE:-transaction}" \
	-only "${BENCH_WORKLOADS:-}" \
	-shardproxy "$SHARDPROXY" \
	-out "${BENCH_OUT-docs/benchmarks.md}" \
	-command "BENCH_SECONDS=$SECONDS_PER_RUN bash test/bench/scaleout.sh   # make bench-scaleout"
