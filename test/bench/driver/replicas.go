package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// -mode replicas (test/bench/replicas.sh): read scaling over streaming
// replicas. One shard with two replicas, every server capped at
// -cpu-quota cores; three shardproxy processes in front of it listing 0, 1
// and 2 of the replicas (primary_reads on, so the primary takes its share);
// pgbench -S with -clients-per-shard clients per server through each,
// interleaved over -rounds. Reads per server come from pg_stat_database.
// The section between the replicas markers of docs/benchmarks.md is
// replaced (or appended); the rest of the file is left alone, and the
// comparison benchmark keeps it (it keeps everything after the scale-out
// block).

const (
	replicasBegin = "<!-- replicas:begin (written by test/bench/replicas.sh) -->"
	replicasEnd   = "<!-- replicas:end -->"
	// replicasTarget is issue 6's target: tps with 2 replicas over none.
	replicasTarget = 2.7
)

// rpResult is one run with some replicas in use: pgbench through the proxy
// listing them (target "shardproxy"), or one pgbench straight at each
// server in use, all at once (target "direct", the servers' own ceiling).
type rpResult struct {
	replicas int
	round    int
	target   string
	run      pgbenchRun
	// xacts is how many transactions each server (primary, replica1, …)
	// committed during the run.
	xacts []int64
	// proxyCPU and pgCPU are CPU seconds used during the run by the
	// shardproxy process and by all three PostgreSQL servers.
	proxyCPU, pgCPU float64
}

type rpEnv struct {
	so      *soEnv // pgbench helpers
	o       options
	log     *slog.Logger
	results []rpResult
	scale   int
	pg      string
	// bouncer is the PgBouncer of target pgbouncer (nil when not run).
	bouncer     *child
	bouncerVer  string
	bouncerMode string // pool_mode
}

func runReplicas(ctx context.Context, o options, log *slog.Logger) error {
	if o.seconds < 1 || o.rounds < 1 || o.clientsPerShard < 1 {
		return errors.New("-seconds, -rounds and -clients-per-shard must be positive")
	}
	e := &rpEnv{o: o, log: log, scale: o.scale, so: &soEnv{o: o, log: log}}
	var err error
	if e.so.pgbench, err = findPgbench(); err != nil {
		return err
	}
	if _, err := os.Stat(o.shardproxy); err != nil {
		return fmt.Errorf("shardproxy binary: %v (run make build)", err)
	}
	if e.so.workDir, err = os.MkdirTemp("", "shardproxy-replicas-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.so.workDir)
	proto := strings.Split(o.protocols, ",")[0]

	log.Info("starting PostgreSQL: 1 primary, 2 replicas", "cpu_quota", o.cpuQuota)
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Replicas: 2, CPUQuota: o.cpuQuota, CPUs: o.serverCPUs, Logger: log,
		Settings: map[string]string{"shared_buffers": "128MB"}})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer cluster.Stop()
	sh := cluster.Shards[0]
	servers := append([]*pgcluster.Instance{sh.Primary}, sh.Replicas...)
	e.pg, _ = queryOne(ctx, sh.Primary.Port, "SHOW server_version")

	init := exec.CommandContext(ctx, e.so.pgbench, "-i", "-q", "-s", strconv.Itoa(e.scale), "-h", "127.0.0.1",
		"-p", strconv.Itoa(sh.Primary.Port), "-U", "postgres", "postgres")
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}
	if err := cluster.WaitReplicasCaughtUp(ctx); err != nil {
		return err
	}

	// proxies[target][n] lists n replicas; target baseline runs
	// -baseline, a second build compared with this one in the same run.
	proxies := map[string][]*child{}
	for _, t := range []string{"shardproxy", "baseline"} {
		binary := o.shardproxy
		if t == "baseline" {
			if binary = o.baseline; binary == "" {
				continue
			}
		}
		for n := 0; n <= 2; n++ {
			p, err := e.startProxy(ctx, sh, n, t, binary)
			if err != nil {
				return err
			}
			defer p.stop()
			if err := waitReady(ctx, p.port, 30*time.Second); err != nil {
				return fmt.Errorf("%s with %d replicas not ready: %w\n%s", t, n, err, tail(p))
			}
			proxies[t] = append(proxies[t], p)
		}
	}

	if soSelected(*soTargets, "pgbouncer") {
		if err := e.startBouncer(ctx, servers); err != nil {
			return err
		}
		defer e.bouncer.stop()
	}

	// Warm up every server's cache and every proxy's connections.
	for t, ps := range proxies {
		for n, p := range ps {
			e.measure(ctx, p, t, servers, n, 0, proto, min(3, o.seconds))
		}
	}
	if e.bouncer != nil {
		e.measureBouncer(ctx, servers, 2, 0, proto, min(3, o.seconds))
	}
	for round := 1; round <= o.rounds; round++ {
		for i := 0; i <= 2; i++ {
			n := i
			if round%2 == 0 {
				n = 2 - i // alternate the order between rounds
			}
			for _, t := range rpTargets {
				if !soSelected(*soTargets, t) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				var r rpResult
				switch t {
				case "direct":
					r = e.measureDirect(ctx, servers, n, round, proto, o.seconds)
				case "pgbouncer":
					r = e.measureBouncer(ctx, servers, n, round, proto, o.seconds)
				default:
					if len(proxies[t]) == 0 {
						continue
					}
					r = e.measure(ctx, proxies[t][n], t, servers, n, round, proto, o.seconds)
				}
				log.Info("run", "round", round, "target", t, "replicas", n, "tps", fmt.Sprintf("%.0f", r.run.tps),
					"lat_ms", fmt.Sprintf("%.2f", r.run.latencyMs), "xacts_per_server", r.xacts,
					"proxy_cpu_s", fmt.Sprintf("%.2f", r.proxyCPU), "postgres_cpu_s", fmt.Sprintf("%.2f", r.pgCPU), "failed", r.run.failure)
				e.results = append(e.results, r)
			}
		}
	}

	cmd := o.command
	if cmd == "" {
		cmd = "bash test/bench/replicas.sh"
	}
	section := e.report(proto, cmd)
	fmt.Print(section)
	if o.out != "" {
		old, err := os.ReadFile(o.out)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(o.out, []byte(replaceBlock(string(old), replicasBegin, replicasEnd, section)), 0o644); err != nil {
			return err
		}
		log.Info("wrote report", "file", o.out)
	}
	return nil
}

// startProxy runs binary (a shardproxy build, target name) listing the
// first n replicas of sh.
func (e *rpEnv) startProxy(ctx context.Context, sh *pgcluster.Shard, n int, name, binary string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	clients := e.o.clientsPerShard * (n + 1)
	admin, err := profileAdmin(e.o)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nadmin_listen: %q\nlog_level: warn\nauth:\n  trust_loopback: true\n", port, admin)
	fmt.Fprintf(&b, "pool:\n  mode: %s\n  size: %d\n  max_client_conn: %d\n", e.o.proxyPoolMode, e.o.clientsPerShard, clients+100)
	fmt.Fprintf(&b, "replicas:\n  primary_reads: true\n")
	if e.o.replicaBalance != "" {
		fmt.Fprintf(&b, "  balance: %s\n", e.o.replicaBalance)
	}
	fmt.Fprintf(&b, "shards:\n  - name: %s\n    primary: {host: %s, port: %d}\n", sh.Name, sh.Primary.Host, sh.Primary.Port)
	if n > 0 {
		b.WriteString("    replicas:\n")
		for _, r := range sh.Replicas[:n] {
			fmt.Fprintf(&b, "      - {host: %s, port: %d}\n", r.Host, r.Port)
		}
	}
	path := filepath.Join(e.so.workDir, fmt.Sprintf("%s-replicas%d.yaml", name, n))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	env := &env{workDir: e.so.workDir}
	c, err := env.startChild(fmt.Sprintf("%s-replicas%d", name, n), clientCommand(ctx, e.o, binary, "--config", path), port)
	if err != nil {
		return nil, err
	}
	c.admin = admin
	return c, nil
}

// rpTargets are the replica benchmark's targets, in the order each
// configuration runs them (-scaleout-targets selects among them).
var rpTargets = []string{"direct", "pgbouncer", "shardproxy", "baseline"}

// measureDirect runs one pgbench -S straight at each of the first n+1
// servers (the primary and n replicas), clients-per-shard clients each,
// all at once: what the capped servers can do without a proxy. tps and
// transactions are summed, latency averaged.
func (e *rpEnv) measureDirect(ctx context.Context, servers []*pgcluster.Instance, n, round int, proto string, seconds int) rpResult {
	return e.measureEach(ctx, servers, n, round, proto, seconds, "direct", nil, func(i int) (int, string) {
		return servers[i].Port, "postgres"
	})
}

// measureBouncer is measureDirect through PgBouncer: each pgbench connects
// to PgBouncer's database for its server (bouncerDB), so every read passes
// a pooler as it does through shardproxy, but PgBouncer does no read/write
// split (pgbench picks the server).
func (e *rpEnv) measureBouncer(ctx context.Context, servers []*pgcluster.Instance, n, round int, proto string, seconds int) rpResult {
	return e.measureEach(ctx, servers, n, round, proto, seconds, "pgbouncer", e.bouncer, func(i int) (int, string) {
		return e.bouncer.port, bouncerDB(i)
	})
}

// startBouncer runs one PgBouncer with a database per server,
// clients-per-shard server connections each.
func (e *rpEnv) startBouncer(ctx context.Context, servers []*pgcluster.Instance) error {
	// PgBouncer 1.18 cannot run -M prepared in transaction pooling; in
	// session pooling with a server connection per client it passes
	// prepared statements through.
	e.bouncerMode = "transaction"
	if strings.Split(e.o.protocols, ",")[0] == "prepared" {
		e.bouncerMode = "session"
	}
	var err error
	e.bouncer, e.bouncerVer, err = startServersBouncer(ctx, e.o, e.log, e.so.workDir, servers, e.o.clientsPerShard, e.bouncerMode)
	return err
}

// measureEach runs one pgbench -S per server in use (the first n+1),
// clients-per-shard clients each, all at once, at the port and database
// conn names for server i; pooler (nil for none) is the process whose CPU
// is the run's proxy CPU.
func (e *rpEnv) measureEach(ctx context.Context, servers []*pgcluster.Instance, n, round int, proto string, seconds int,
	target string, pooler *child, conn func(i int) (port int, db string)) rpResult {
	postmasters := make([]int, len(servers))
	for i, s := range servers {
		postmasters[i] = s.PID()
	}
	waitQuietAll(postmasters)
	before := xactCounts(ctx, servers)
	pgBefore := postgresCPU(postmasters)
	var poolerBefore float64
	if pooler != nil {
		poolerBefore = treeCPUSeconds(pooler.cmd.Process.Pid)
	}
	r := rpResult{replicas: n, round: round, target: target}
	var waits []func() pgbenchRun
	for i := range servers[:n+1] {
		port, db := conn(i)
		args := []string{"-n", "-S", "-c", strconv.Itoa(e.o.clientsPerShard), "-j", "1", "-T", strconv.Itoa(seconds),
			"-M", proto, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", db}
		wait, err := e.so.startPgbench(ctx, args, seconds)
		if err != nil {
			r.run.failure = err.Error()
			continue
		}
		waits = append(waits, wait)
	}
	failure := r.run.failure
	r.run = sumRuns(waits)
	if failure != "" {
		r.run.failure = failure
	}
	r.pgCPU = postgresCPU(postmasters) - pgBefore
	if pooler != nil {
		r.proxyCPU = treeCPUSeconds(pooler.cmd.Process.Pid) - poolerBefore
	}
	after := xactCounts(ctx, servers)
	for i := range servers {
		r.xacts = append(r.xacts, after[i]-before[i])
	}
	return r
}

// measure runs pgbench -S through p (target name) with clients-per-shard clients per
// server in use, and counts each server's committed transactions.
func (e *rpEnv) measure(ctx context.Context, p *child, name string, servers []*pgcluster.Instance, n, round int, proto string, seconds int) rpResult {
	var postmasters []int
	for _, s := range servers {
		postmasters = append(postmasters, s.PID())
	}
	waitQuietAll(postmasters)
	before := xactCounts(ctx, servers)
	proxyBefore, pgBefore := treeCPUSeconds(p.cmd.Process.Pid), postgresCPU(postmasters)
	clients := e.o.clientsPerShard * (n + 1)
	args := []string{"-n", "-S", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(e.o.threads), "-T", strconv.Itoa(seconds),
		"-M", proto, "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres", "postgres"}
	r := rpResult{replicas: n, round: round, target: name}
	wait, err := e.so.startPgbench(ctx, args, seconds)
	if err != nil {
		r.run.failure = err.Error()
		return r
	}
	profiled := (&env{o: e.o, log: e.log}).startProfile(ctx, target{name: r.target, admin: p.admin}, workload{name: fmt.Sprintf("replicas%d-%s", n, proto)}, round)
	r.run = wait()
	<-profiled
	r.proxyCPU = treeCPUSeconds(p.cmd.Process.Pid) - proxyBefore
	r.pgCPU = postgresCPU(postmasters) - pgBefore
	after := xactCounts(ctx, servers)
	for i := range servers {
		r.xacts = append(r.xacts, after[i]-before[i])
	}
	return r
}

// xactCounts reads xact_commit of database postgres on every server.
// Backends flush their statistics when idle (within about a second), so
// counts trail a little: good enough for each server's share.
func xactCounts(ctx context.Context, servers []*pgcluster.Instance) []int64 {
	out := make([]int64, len(servers))
	for i, s := range servers {
		v, _ := queryOne(ctx, s.Port, "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")
		out[i], _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	return out
}

// report is the replicas block of docs/benchmarks.md, markers included.
func (e *rpEnv) report(proto, command string) string {
	type agg struct {
		tps, lat        float64
		proxyCPU, pgCPU float64
		processed       int64
		good            int
		failure         string
		xacts           []int64
		runs            []string
	}
	aggs := map[string]*[3]agg{}
	for _, t := range rpTargets {
		aggs[t] = &[3]agg{}
	}
	for _, r := range e.results {
		a := &aggs[r.target][r.replicas]
		a.runs = append(a.runs, fmt.Sprintf("%.0f", r.run.tps))
		if r.run.failure != "" {
			a.failure = r.run.failure
			continue
		}
		a.tps += r.run.tps
		a.lat += r.run.latencyMs
		a.processed += r.run.processed
		a.proxyCPU += r.proxyCPU / float64(e.o.seconds)
		a.pgCPU += r.pgCPU / float64(e.o.seconds)
		a.good++
		if a.xacts == nil {
			a.xacts = make([]int64, len(r.xacts))
		}
		for i, x := range r.xacts {
			a.xacts[i] += x
		}
	}
	for _, as := range aggs {
		for i := range as {
			if a := &as[i]; a.good > 0 {
				a.tps /= float64(a.good)
				a.lat /= float64(a.good)
				a.proxyCPU /= float64(a.good)
				a.pgCPU /= float64(a.good)
			}
		}
	}
	var b strings.Builder
	b.WriteString(replicasBegin + "\n## Read replicas\n\n")
	fmt.Fprintf(&b, "Written by `test/bench/replicas.sh` on %s (commit %s):\n\n```\n%s\n```\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(cmdOut("git", "rev-parse", "--short", "HEAD")), command)
	fmt.Fprintf(&b, "One shard: a primary and two streaming replicas (`test/pgcluster`, PostgreSQL %s), each server capped at %.2f core "+
		"(cgroup v1; the servers' group weighs cpu.shares 8192, so each gets its quota whenever it has work), `pgbench -i -s %d` data. Three shardproxy processes in front of it list 0, 1 and 2 of the replicas "+
		"(`replicas.primary_reads: true`, `balance: %s`, pool.size %d per server, %s pooling). `pgbench -S -M %s` with %d clients per "+
		"server in use, %d s per run, %d interleaved rounds (mean of the rounds). Target \"direct\" is the same load without a "+
		"proxy: one pgbench straight at each server in use, all at once, what the capped servers can do on this machine. "+
		"Target \"pgbouncer\" (%s, when run) is direct with a pooler on the path: one PgBouncer (%s pooling, "+
		"%d server connections per server) with a database per server, one pgbench at each server's database, so PgBouncer "+
		"passes the reads without choosing where they go — how far a single-threaded C pooler on this machine gets. "+
		"\"share\" is each server's part of the "+
		"transactions committed during the runs (pg_stat_database; approximate, statistics trail). CPU columns are cores in use "+
		"on average during the runs (the pooler: shardproxy or PgBouncer; the three PostgreSQL servers together); PostgreSQL µs per query is their CPU "+
		"divided by the transactions pgbench processed.\n\n",
		e.pg, e.o.cpuQuota, e.scale, cmp.Or(e.o.replicaBalance, config.BalanceSticky+" (the default)"), e.o.clientsPerShard, e.o.proxyPoolMode, proto, e.o.clientsPerShard, e.o.seconds, e.o.rounds,
		orNone(e.bouncerVer), e.bouncerMode, e.o.clientsPerShard)
	if pl := placement(e.o); pl != "" {
		b.WriteString(pl + "\n\n")
	}
	b.WriteString("| replicas | target | clients | tps | ratio to 0 replicas | latency | share primary / replica1 / replica2 | pooler CPU | PostgreSQL CPU | PostgreSQL µs per query | runs (tps) | target |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|\n")
	starved := false
	for n := 0; n <= 2; n++ {
		for _, t := range rpTargets {
			a, base := aggs[t][n], aggs[t][0]
			if len(a.runs) == 0 {
				continue
			}
			tps, ratioCell, lat, share, pcpu, gcpu, perQuery := "failed: "+a.failure, "-", "-", "-", "-", "-", "-"
			if a.good > 0 {
				tps, lat = fmt.Sprintf("%.0f", a.tps), fmt.Sprintf("%.2f ms", a.lat)
				if t != "direct" {
					pcpu = fmt.Sprintf("%.2f", a.proxyCPU)
				}
				gcpu = fmt.Sprintf("%.2f (%.0f%% of the servers' quota)", a.pgCPU, 100*a.pgCPU/(e.o.cpuQuota*float64(n+1)))
				if a.processed > 0 {
					perQuery = fmt.Sprintf("%.1f", a.pgCPU*float64(e.o.seconds*a.good)*1e6/float64(a.processed))
				}
				if t == "shardproxy" && a.pgCPU < 0.85*e.o.cpuQuota*float64(n+1) {
					starved = true // the ratio the target is about did not measure the servers
				}
				if base.good > 0 && base.tps > 0 {
					ratioCell = fmt.Sprintf("%.2f×", a.tps/base.tps)
				}
				var total int64
				for _, x := range a.xacts {
					total += x
				}
				var parts []string
				for _, x := range a.xacts {
					parts = append(parts, fmt.Sprintf("%.0f%%", 100*float64(x)/float64(max(total, 1))))
				}
				share = strings.Join(parts, " / ")
			}
			target := "—"
			if n == 2 && t == "shardproxy" {
				target = fmt.Sprintf("≥ %.1f×", replicasTarget)
				if a.good > 0 && base.good > 0 && base.tps > 0 {
					if a.tps/base.tps >= replicasTarget {
						target += " met"
					} else {
						target += " **not met**"
					}
				}
			}
			fmt.Fprintf(&b, "| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, t, e.o.clientsPerShard*(n+1), tps,
				ratioCell, lat, share, pcpu, gcpu, perQuery, strings.Join(a.runs, ", "), target)
		}
	}
	load := loadAverage()
	fmt.Fprintf(&b, "\nMachine: %d logical CPUs, shared with other jobs (1-minute load average when the report was written: %s); %s.\n",
		runtime.NumCPU(), load, runtime.Version())
	// The load average counts the benchmark's own servers and clients;
	// what says the ratios are not about read scaling is PostgreSQL using
	// well under its quota (then pgbench and shardproxy, not the servers'
	// caps, limited tps).
	if starved {
		b.WriteString("**The machine was overloaded during this run**: where PostgreSQL used well under its quota behind shardproxy, pgbench and " +
			"shardproxy could not get CPU and the servers' caps were not what limited tps, so the ratios say little about " +
			"read scaling. Rerun on a quiet machine.\n")
	}
	b.WriteString(replicasEnd + "\n")
	return b.String()
}

// replaceBlock puts section (markers included) in place of doc's block
// between begin and end, or appends it.
func replaceBlock(doc, begin, end, section string) string {
	old, ok := block(doc, begin, end)
	if !ok {
		if strings.TrimSpace(doc) == "" {
			return "# Benchmarks\n\n" + section
		}
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return strings.Replace(doc, old, strings.TrimRight(section, "\n"), 1)
}

// loadAverage is the 1-minute load average from /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
