#!/usr/bin/env bash
# Online data movement benchmark: 1,000,000 users on 3 shards, a 4th added,
# a rebalance moves a quarter of them to it while clients update and read
# users by key through one shardproxy. Reports copy rows/s, the longest
# write hold at cutover, the load's p99 before vs during the moves and
# client errors, and writes the "Online data movement" section of
# docs/benchmarks.md (between the moves markers; the rest of the file is
# left alone, and the other generators keep this section). Run from
# anywhere:
#
#   bash test/bench/moves.sh                       # part of make bench
#   BENCH_MOVE_ROWS=200000 bash test/bench/moves.sh
#
# Environment: BENCH_MOVE_ROWS (1000000), BENCH_MOVE_CLIENTS (4),
# BENCH_MOVE_BEFORE_SECONDS (15), BENCH_OUT (docs/benchmarks.md; "" =
# report on stdout only).
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && ! command -v postgres >/dev/null 2>&1; then
	bash test/scripts/ensure-postgres.sh
fi
export BENCH_OUT=${BENCH_OUT-$PWD/docs/benchmarks.md}
exec $GO test -tags movebench -count=1 -timeout 40m -run '^TestMoveBenchmark$' -v ./test/e2e/
