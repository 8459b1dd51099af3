#!/usr/bin/env bash
# Read-replica benchmark: one shard with a primary and two streaming replicas,
# each PostgreSQL capped at 0.25 core (cgroup v1, so run as root); pgbench -S
# through shardproxy processes listing 0, 1 and 2 of the replicas
# (primary_reads on), 8 clients per server in use, and the same load straight
# at the servers (one pgbench per server in use) as the baseline, interleaved
# rounds. Writes
# the "Read replicas" section of docs/benchmarks.md (the rest of the file is
# left alone). Run from anywhere:
#
#   bash test/bench/replicas.sh                 # make bench-replicas
#   BENCH_SECONDS=10 bash test/bench/replicas.sh
#
# Placement: BENCH_SERVER_CPUS confines the servers to those CPUs (cgroup v1
# cpuset) and BENCH_CLIENT_CPUS pins shardproxy and pgbench (taskset), e.g.
# BENCH_SERVER_CPUS=1 BENCH_CLIENT_CPUS=0 for machines of their own.
# Environment: BENCH_SECONDS (default 15), BENCH_ROUNDS (2),
# BENCH_CLIENTS_PER_SERVER (8), BENCH_SCALE (pgbench -i -s, 5),
# BENCH_CPU_QUOTA (0.25), BENCH_PROTOCOL (pgbench -M, simple),
# BENCH_OUT (docs/benchmarks.md; "" = stdout only), BENCH_SHARDPROXY (prebuilt
# binary; default: build the working tree into bin/shardproxy), BENCH_CPUPROFILE
# (a directory: a Go CPU profile of shardproxy per run, e.g.
# `go tool pprof -top bin/shardproxy DIR/shardproxy-replicas2-simple-r1.pprof`),
# BENCH_BALANCE (shardproxy's replicas.balance; default: its own default),
# BENCH_POOL_MODE (pool.mode, transaction), BENCH_TARGETS (of direct,
# pgbouncer,shardproxy,baseline; default all: target pgbouncer is the same
# load as direct through one PgBouncer, a database per server),
# BENCH_BASELINE (a second shardproxy binary or wrapper script, run
# as target baseline beside the build under test).
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}

if [ -z "${BENCH_TARGETS:-}" ] || [[ "${BENCH_TARGETS}" == *pgbouncer* ]]; then
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

exec bin/bench-driver -mode replicas \
	-seconds "$SECONDS_PER_RUN" \
	-rounds "${BENCH_ROUNDS:-2}" \
	-clients-per-shard "${BENCH_CLIENTS_PER_SERVER:-8}" \
	-scaleout-targets "${BENCH_TARGETS:-}" \
	-proxy-pool-mode "${BENCH_POOL_MODE:-transaction}" \
	-replica-balance "${BENCH_BALANCE:-}" \
	-scale "${BENCH_SCALE:-5}" \
	-cpu-quota "${BENCH_CPU_QUOTA:-0.25}" \
	-server-cpus "${BENCH_SERVER_CPUS:-}" \
	-client-cpus "${BENCH_CLIENT_CPUS:-}" \
	-protocols "${BENCH_PROTOCOL:-simple}" \
	-threads 2 \
	-cpuprofile "${BENCH_CPUPROFILE:-}" \
	-shardproxy "$SHARDPROXY" \
	-baseline "${BENCH_BASELINE:-}" \
	-out "${BENCH_OUT-docs/benchmarks.md}" \
	-command "BENCH_SECONDS=$SECONDS_PER_RUN bash test/bench/replicas.sh   # make bench-replicas"
