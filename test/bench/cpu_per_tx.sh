#!/usr/bin/env bash
# CPU per transaction of the pooler, side by side: PgBouncer, shardproxy built
# from HEAD ("baseline") and shardproxy built from the working tree
# ("shardproxy"), interleaved in one run against one local PostgreSQL, so a
# change is judged by ratios measured together on a shared, noisy box.
#
#   bash test/bench/cpu_per_tx.sh                     # pgbench -S -M simple, 4 rounds of 8 s
#   CPT_ROUNDS=6 CPT_SECONDS=10 bash test/bench/cpu_per_tx.sh
#   CPT_BASELINE=/path/to/old/shardproxy bash test/bench/cpu_per_tx.sh
#
# Environment: CPT_ROUNDS (4), CPT_SECONDS (8), CPT_WORKLOADS (select-simple;
# comma-separated names of test/bench/pgbench.sh), CPT_TARGETS
# (pgbouncer,baseline,shardproxy), CPT_BASELINE (a prebuilt binary instead of
# building HEAD), CPT_SHARDPROXY (a prebuilt binary or wrapper script instead
# of building the working tree, e.g. one that sets GOMAXPROCS), CPT_LOG (/tmp/cpu_per_tx.log, the driver's full log),
# CPT_CLIENT_SOCKET (tcp; unix: pgbench reaches the poolers over their Unix-domain sockets).
#
# Prints, per workload and target, the median over rounds of the pooler's CPU
# µs per transaction (utime+stime from /proc/PID/stat over the run divided by
# pgbench's transactions) and of tps, then the ratios to PgBouncer and to the
# baseline. PostgreSQL is started by test/pgcluster on a free port from 61000
# up; nothing else is touched.
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
ROUNDS=${CPT_ROUNDS:-4}
SECS=${CPT_SECONDS:-8}
WORKLOADS=${CPT_WORKLOADS:-select-simple}
TARGETS=${CPT_TARGETS:-pgbouncer,baseline,shardproxy}
LOG=${CPT_LOG:-/tmp/cpu_per_tx.log}

work=$(mktemp -d /tmp/cpu_per_tx.XXXXXX)
trap 'rm -rf "$work"' EXIT

shardproxy=${CPT_SHARDPROXY:-}
if [ -z "$shardproxy" ]; then
	$GO build -o "$work/shardproxy" ./cmd/shardproxy
	shardproxy=$work/shardproxy
fi
$GO build -o "$work/bench-driver" ./test/bench/driver
baseline=${CPT_BASELINE:-}
if [ -z "$baseline" ] && [[ ",$TARGETS," == *",baseline,"* ]]; then
	mkdir "$work/head"
	git archive HEAD | tar -x -C "$work/head"
	(cd "$work/head" && $GO build -o "$work/shardproxy-head" ./cmd/shardproxy)
	baseline=$work/shardproxy-head
fi

echo "load before: $(cat /proc/loadavg)" >&2
"$work/bench-driver" -seconds "$SECS" -rounds "$ROUNDS" -clients 50 -pool 20 -idle-clients 0 \
	-only "$WORKLOADS" -targets "$TARGETS" -shardproxy "$shardproxy" -client-socket "${CPT_CLIENT_SOCKET:-tcp}" \
	-baseline "$baseline" -out "" >/dev/null 2>"$LOG" || { tail -30 "$LOG" >&2; exit 1; }
echo "load after: $(cat /proc/loadavg)" >&2

# Summarize the driver's "run" log lines: median µs/tx and tps per (workload, target).
awk '
/msg=run / {
	w = ""; t = ""; tps = ""; us = ""; failed = ""
	for (i = 1; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] == "workload") w = kv[2]
		else if (kv[1] == "target") t = kv[2]
		else if (kv[1] == "tps") tps = kv[2]
		else if (kv[1] == "pooler_us_per_tx") us = kv[2]
		else if (kv[1] == "failed" && kv[2] != "\"\"" && kv[2] != "") failed = kv[2]
	}
	if (failed != "") { print "failed run: " $0 > "/dev/stderr"; next }
	k = w SUBSEP t
	n[k]++; US[k, n[k]] = us; TPS[k, n[k]] = tps
	printf "round %-2d %-16s %-10s tps %8.0f  us/tx %6.1f\n", n[k], w, t, tps, us
	if (!(w in seenw)) { seenw[w] = 1; ws[++nw] = w }
	if (!(t in seent)) { seent[t] = 1; ts[++nt] = t }
}
function median(arr, k, m,    i, j, v, tmp) {
	for (i = 1; i <= m; i++) tmp[i] = arr[k, i] + 0
	for (i = 2; i <= m; i++) { v = tmp[i]; for (j = i - 1; j >= 1 && tmp[j] > v; j--) tmp[j + 1] = tmp[j]; tmp[j + 1] = v }
	return (m % 2) ? tmp[(m + 1) / 2] : (tmp[m / 2] + tmp[m / 2 + 1]) / 2
}
END {
	print ""
	for (a = 1; a <= nw; a++) {
		w = ws[a]
		for (b = 1; b <= nt; b++) {
			t = ts[b]; k = w SUBSEP t
			if (!n[k]) continue
			mu[t] = median(US, k, n[k]); mt[t] = median(TPS, k, n[k])
			printf "median %-16s %-10s tps %8.0f  us/tx %6.1f  (%d runs)\n", w, t, mt[t], mu[t], n[k]
		}
		if (mu["shardproxy"] && mu["pgbouncer"])
			printf "ratio  %-16s shardproxy/pgbouncer: us/tx %.2f  tps %.2f\n", w, mu["shardproxy"] / mu["pgbouncer"], mt["shardproxy"] / mt["pgbouncer"]
		if (mu["shardproxy"] && mu["baseline"])
			printf "ratio  %-16s shardproxy/baseline:  us/tx %.2f  tps %.2f\n", w, mu["shardproxy"] / mu["baseline"], mt["shardproxy"] / mt["baseline"]
		delete mu; delete mt
	}
}' "$LOG"
