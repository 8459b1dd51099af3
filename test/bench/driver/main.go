// Command driver runs the side-by-side pgbench comparison behind
// `make bench` (test/bench/pgbench.sh): one PostgreSQL server started with
// test/pgcluster, PgBouncer (transaction mode) and shardproxy (transaction
// mode) in front of it with the same pool size, and pgbench against all three
// targets, interleaved, for every workload. It records tps, latency and the
// CPU time each process used, measures memory per idle client with many idle
// connections, and writes docs/benchmarks.md.
//
// Everything it starts (PostgreSQL, PgBouncer, shardproxy, pgbench) is
// stopped before it returns, also on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

type options struct {
	// proxyPoolMode is shardproxy's pool.mode in -mode scaleout and
	// replicas (transaction unless -proxy-pool-mode says session).
	proxyPoolMode string
	// replicaBalance is shardproxy's replicas.balance in -mode replicas
	// ("" = its default).
	replicaBalance string
	seconds        int
	rounds         int
	clients        int
	threads        int
	pool           int
	scale          int
	idle           int
	shardproxy     string
	baseline       string // a second shardproxy binary, target "baseline"
	pgbouncer      string
	out            string
	command        string
	only           string
	pinCPU         string
	// clientSocket is how pgbench reaches the poolers: "tcp" (loopback)
	// or "unix" (their Unix-domain sockets; direct stays TCP).
	clientSocket string
	targets      string
	profileDir   string

	// -mode scaleout (see scaleout.go)
	mode            string
	shardCounts     string
	rowsPerShard    int
	clientsPerShard int
	cpuQuota        float64
	protocols       string
	scaleoutPool    int
	// serverCPUs and clientCPUs place the scaleout and replicas runs: the
	// PostgreSQL servers on serverCPUs (a cpuset group), shardproxy and
	// pgbench on clientCPUs (taskset); "" = anywhere.
	serverCPUs, clientCPUs string
}

func main() {
	var o options
	flag.IntVar(&o.seconds, "seconds", 15, "duration of each pgbench run (pgbench -T)")
	flag.IntVar(&o.rounds, "rounds", 2, "interleaved rounds over all targets")
	flag.IntVar(&o.clients, "clients", 50, "pgbench clients (-c)")
	flag.IntVar(&o.threads, "threads", 2, "pgbench threads (-j)")
	flag.IntVar(&o.pool, "pool", 20, "server pool size of PgBouncer and shardproxy")
	flag.IntVar(&o.scale, "scale", 10, "pgbench scale factor (-i -s)")
	flag.IntVar(&o.idle, "idle-clients", 10000, "idle client connections for the memory measurement (0 = skip)")
	flag.StringVar(&o.shardproxy, "shardproxy", "bin/shardproxy", "shardproxy binary")
	flag.StringVar(&o.baseline, "baseline", "", "a second shardproxy binary measured as target \"baseline\" (compare two builds in one run)")
	flag.StringVar(&o.pgbouncer, "pgbouncer", "", "pgbouncer binary (default: from PATH or /usr/sbin)")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "report file to write (\"\" = stdout only)")
	flag.StringVar(&o.command, "command", "", "command line to record in the report")
	flag.StringVar(&o.only, "only", "", "comma-separated workload names to run (default all)")
	flag.StringVar(&o.proxyPoolMode, "proxy-pool-mode", "transaction", "scaleout, replicas: shardproxy's pool.mode (transaction or session)")
	flag.StringVar(&o.replicaBalance, "replica-balance", "", "replicas: shardproxy's replicas.balance (sticky, round_robin, least_busy; \"\" = default)")
	flag.StringVar(&o.targets, "targets", "direct,pgbouncer,shardproxy", "targets to run, in interleaving order")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "directory for a Go CPU profile of shardproxy during each of its runs (\"\" = none)")
	flag.StringVar(&o.clientSocket, "client-socket", "tcp", "compare: how pgbench connects to PgBouncer and shardproxy: tcp (loopback) or unix (their Unix-domain sockets); direct always uses TCP")
	flag.StringVar(&o.pinCPU, "pin", "1", "CPU list pgbench is pinned to with taskset (\"\" = no pinning)")
	flag.StringVar(&o.mode, "mode", "compare", "compare (direct vs PgBouncer vs shardproxy on one server), scaleout (1, 2, 4 shards through one shardproxy) or replicas (pgbench -S over 0, 1, 2 replicas, see replicas.go)")
	flag.StringVar(&o.shardCounts, "shard-counts", "1,2,4", "scaleout: ascending shard counts to measure")
	flag.IntVar(&o.rowsPerShard, "rows-per-shard", 100000, "scaleout: pgbench_accounts rows per shard")
	flag.IntVar(&o.clientsPerShard, "clients-per-shard", 8, "scaleout: pgbench clients per shard")
	flag.Float64Var(&o.cpuQuota, "cpu-quota", 0.25, "scaleout: CPU quota of each PostgreSQL server in cores (cgroup v1; 0 = none)")
	flag.StringVar(&o.protocols, "protocols", "prepared", "scaleout: pgbench -M modes to run, comma-separated")
	flag.IntVar(&o.scaleoutPool, "scaleout-pool", 0, "scaleout: shardproxy pool.size per shard (0 = -clients-per-shard)")
	flag.StringVar(&o.serverCPUs, "server-cpus", "", "scaleout, replicas: CPU list the PostgreSQL servers are confined to (cgroup v1 cpuset; \"\" = anywhere)")
	flag.StringVar(&o.clientCPUs, "client-cpus", "", "scaleout, replicas: CPU list shardproxy and pgbench are pinned to with taskset (\"\" = anywhere)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runMode := run
	switch o.mode {
	case "compare":
	case "scaleout":
		runMode = runScaleout
	case "replicas":
		runMode = runReplicas
	default:
		fmt.Fprintf(os.Stderr, "bench: -mode %q: want compare, scaleout or replicas\n", o.mode)
		os.Exit(2)
	}
	if err := runMode(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}
