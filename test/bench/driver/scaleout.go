package main

// Scale-out mode (-mode scaleout, test/bench/scaleout.sh, make bench-scaleout):
// for each shard count N, N PostgreSQL servers capped at -cpu-quota cores
// each, a pgbench_accounts table distributed by aid over them through
// shardproxy, and pgbench custom scripts (point select by key, single-row
// update by key) with -clients-per-shard × N clients through one shardproxy
// process, interleaved with the same load driven straight at each shard
// (-clients-per-shard clients per shard, tps summed) as the baseline.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// soTargets restricts the targets of every round (-scaleout-targets,
// BENCH_TARGETS in scaleout.sh; "baseline" runs only with -baseline,
// "pgbouncer" only when listed), and
// -only the workloads (BENCH_WORKLOADS), e.g. to compare two builds on
// point selects alone. Registered here, before main parses the flags.
var soTargets = flag.String("scaleout-targets", "", "scaleout: comma-separated targets to run of direct, shardproxy, baseline, pgbouncer (\"\" = all but pgbouncer)")

// soSelected reports whether name is in the comma-separated list (an
// empty list selects everything).
func soSelected(list, name string) bool {
	if list == "" {
		return true
	}
	for _, x := range strings.Split(list, ",") {
		if strings.TrimSpace(x) == name {
			return true
		}
	}
	return false
}

// soWorkload is one custom pgbench script; %[1]s is the table, %[2]d the
// largest key.
type soWorkload struct {
	name, label, script string
}

var soWorkloads = []soWorkload{
	{"select", "point select by key",
		"\\set aid random(1, %[2]d)\nSELECT abalance FROM %[1]s WHERE aid = :aid;\n"},
	{"update", "single-row update by key",
		"\\set aid random(1, %[2]d)\n\\set delta random(-5000, 5000)\nUPDATE %[1]s SET abalance = abalance + :delta WHERE aid = :aid;\n"},
}

const (
	soTable       = "pgbench_accounts"        // distributed by aid through the proxy
	soDirectTable = "pgbench_accounts_direct" // per shard, keys 1..rows on that shard, for the baseline
	// soFillfactor leaves room on every page so updates are HOT from the
	// first run on; with pgbench's 100 the first update of each row moves
	// it to another page and inserts into the index, so a table's update
	// cost would depend on how many updates it has had (the baseline table
	// gets more, being faster).
	soFillfactor = 90
)

// soShardingYAML is the config's sharding section.
const soShardingYAML = `distributions:
  - {name: accounts, scheme: hash, key_type: int}
tables:
  - {name: ` + soTable + `, key: aid, distribution: accounts}
`

// soResult is one measured run.
type soResult struct {
	shards    int
	round     int
	workload  string // soWorkload.name
	protocol  string // pgbench -M
	target    string // "direct" or "shardproxy"
	clients   int
	tps       float64
	latencyMs float64
	processed int64
	failure   string
	// CPU seconds during the run.
	proxyCPU, postgresCPU, pgbenchCPU float64
}

// soClusterInfo describes one shard count's setup for the report.
type soClusterInfo struct {
	shards      int
	rowsByShard []int64
	loadSeconds float64
}

// soEnv is the state of a scale-out run.
type soEnv struct {
	o         options
	log       *slog.Logger
	pgbench   string
	workDir   string
	revision  string
	pgVersion string
	protocols []string
	counts    []int
	results   []soResult
	clusters  []soClusterInfo
}

// parseShardCounts reads "1,2,4" into ascending distinct positive counts.
func parseShardCounts(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("shard count %q: want a positive integer", f)
		}
		if seen[n] {
			return nil, fmt.Errorf("shard count %d listed twice", n)
		}
		if len(out) > 0 && n < out[len(out)-1] {
			return nil, fmt.Errorf("shard counts must be ascending, got %d after %d", n, out[len(out)-1])
		}
		seen[n] = true
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no shard counts")
	}
	return out, nil
}

// parseProtocols reads "prepared,extended" (pgbench -M values).
func parseProtocols(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case "":
		case "simple", "extended", "prepared":
			out = append(out, f)
		default:
			return nil, fmt.Errorf("protocol %q: want simple, extended or prepared", f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no protocol")
	}
	return out, nil
}

func runScaleout(ctx context.Context, o options, log *slog.Logger) error {
	if o.seconds < 1 || o.rounds < 1 || o.clientsPerShard < 1 || o.rowsPerShard < 1 {
		return errors.New("-seconds, -rounds, -clients-per-shard and -rows-per-shard must be positive")
	}
	e := &soEnv{o: o, log: log}
	var err error
	if e.counts, err = parseShardCounts(o.shardCounts); err != nil {
		return fmt.Errorf("-shard-counts: %w", err)
	}
	if e.protocols, err = parseProtocols(o.protocols); err != nil {
		return fmt.Errorf("-protocols: %w", err)
	}
	e.revision = strings.TrimSpace(cmdOut("git", "rev-parse", "--short", "HEAD"))
	if e.pgbench, err = findPgbench(); err != nil {
		return err
	}
	if _, err := os.Stat(o.shardproxy); err != nil {
		return fmt.Errorf("shardproxy binary: %v (run make build)", err)
	}
	if e.workDir, err = os.MkdirTemp("", "shardproxy-scaleout-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.workDir)
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}

	for _, n := range e.counts {
		if err := e.runShards(ctx, n); err != nil {
			return fmt.Errorf("%d shard(s): %w", n, err)
		}
	}

	section := e.report()
	fmt.Print(section)
	if o.out != "" {
		old, err := os.ReadFile(o.out)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		doc := replaceScaleout(string(old), section)
		if err := os.WriteFile(o.out, []byte(doc), 0o644); err != nil {
			return err
		}
		log.Info("wrote report", "file", o.out)
	}
	return nil
}

// runShards measures one shard count: cluster, proxy, data, runs.
func (e *soEnv) runShards(ctx context.Context, n int) error {
	log := e.log.With("shards", n)
	log.Info("starting PostgreSQL", "cpu_quota", e.o.cpuQuota)
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		Shards:   n,
		CPUQuota: e.o.cpuQuota,
		CPUs:     e.o.serverCPUs,
		Logger:   e.log,
		Settings: map[string]string{"shared_buffers": "128MB"},
	})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer cluster.Stop()
	if e.pgVersion == "" {
		if v, err := queryOne(ctx, cluster.Shards[0].Primary.Port, "SHOW server_version"); err == nil {
			e.pgVersion = v
		}
	}

	var spec topology.Spec
	if err := yaml.Unmarshal([]byte(soShardingYAML), &spec); err != nil {
		return err
	}
	var shardSpecs []topology.ShardSpec
	for _, s := range cluster.Shards {
		shardSpecs = append(shardSpecs, topology.ShardSpec{Name: s.Name, Primary: s.Primary.Addr()})
	}
	snap, err := topology.Build(shardSpecs, spec)
	if err != nil {
		return err
	}

	proxy, admin, err := e.startProxy(ctx, cluster, n, "shardproxy", e.o.shardproxy)
	if err != nil {
		return err
	}
	defer proxy.stop()
	if err := waitReady(ctx, proxy.port, 30*time.Second); err != nil {
		return fmt.Errorf("shardproxy not ready: %w\n%s", err, tail(proxy))
	}
	// -baseline: a second shardproxy binary on the same cluster, measured
	// as target "baseline" right after "shardproxy" (log and every-run
	// table only), to compare two builds side by side.
	var baseline *child
	baselineAdmin := ""
	if e.o.baseline != "" {
		if baseline, baselineAdmin, err = e.startProxy(ctx, cluster, n, "baseline", e.o.baseline); err != nil {
			return err
		}
		defer baseline.stop()
		if err := waitReady(ctx, baseline.port, 30*time.Second); err != nil {
			return fmt.Errorf("baseline shardproxy not ready: %w\n%s", err, tail(baseline))
		}
	}

	// Target pgbouncer (only when listed): one PgBouncer in session
	// pooling (pgbench -M prepared needs it in PgBouncer 1.18) with a
	// database per shard, the direct load through it.
	var bouncer *child
	if soListed(*soTargets, "pgbouncer") {
		if bouncer, err = e.startBouncer(ctx, cluster); err != nil {
			return err
		}
		defer bouncer.stop()
	}

	t0 := time.Now()
	rows, err := e.load(ctx, cluster, proxy.port, router.For(snap), n)
	if err != nil {
		return fmt.Errorf("load: %w\n%s", err, tail(proxy))
	}
	info := soClusterInfo{shards: n, rowsByShard: rows, loadSeconds: time.Since(t0).Seconds()}
	e.clusters = append(e.clusters, info)
	log.Info("loaded", "rows_by_shard", rows, "seconds", fmt.Sprintf("%.1f", info.loadSeconds))

	postmasters := make([]int, n)
	for i, s := range cluster.Shards {
		postmasters[i] = s.Primary.PID()
	}
	var total int64
	for _, r := range rows {
		total += r
	}
	rc := soRunContext{n: n, cluster: cluster, proxy: proxy, admin: admin, baseline: baseline, baselineAdmin: baselineAdmin,
		bouncer: bouncer, postmasters: postmasters, rows: rows, total: total}

	// Warm up: server connections, plan caches, shared buffers.
	for _, proto := range e.protocols {
		warm := min(3, e.o.seconds)
		_ = e.runProxy(ctx, rc, "shardproxy", soWorkloads[0], proto, 0, warm)
		if baseline != nil {
			_ = e.runProxy(ctx, rc, "baseline", soWorkloads[0], proto, 0, warm)
		}
		if soSelected(*soTargets, "direct") {
			_ = e.runDirect(ctx, rc, soWorkloads[0], proto, 0, warm)
		}
		if bouncer != nil {
			_ = e.runEachShard(ctx, rc, "pgbouncer", soWorkloads[0], proto, 0, warm)
		}
	}

	for round := 1; round <= e.o.rounds; round++ {
		for _, proto := range e.protocols {
			for _, w := range soWorkloads {
				if !soSelected(e.o.only, w.name) {
					continue
				}
				// Reverse the order every other round, so no target always
				// follows another's autovacuum or warm caches (with a
				// baseline, shardproxy and baseline swap places too).
				order := []string{"direct", "shardproxy"}
				if baseline != nil {
					order = append(order, "baseline")
				}
				if bouncer != nil {
					order = append(order, "pgbouncer")
				}
				if round%2 == 0 {
					slices.Reverse(order)
				}
				for _, t := range order {
					if !soSelected(*soTargets, t) {
						continue
					}
					if err := ctx.Err(); err != nil {
						return err
					}
					if err := e.vacuum(ctx, cluster); err != nil {
						return err
					}
					var r soResult
					switch t {
					case "direct":
						r = e.runDirect(ctx, rc, w, proto, round, e.o.seconds)
					case "pgbouncer":
						r = e.runEachShard(ctx, rc, t, w, proto, round, e.o.seconds)
					default:
						r = e.runProxy(ctx, rc, t, w, proto, round, e.o.seconds)
					}
					log.Info("run", "round", round, "workload", w.name, "protocol", proto, "target", t,
						"tps", fmt.Sprintf("%.0f", r.tps), "lat_ms", fmt.Sprintf("%.2f", r.latencyMs),
						"proxy_cpu_s", fmt.Sprintf("%.2f", r.proxyCPU), "postgres_cpu_s", fmt.Sprintf("%.2f", r.postgresCPU),
						"pgbench_cpu_s", fmt.Sprintf("%.2f", r.pgbenchCPU), "failed", r.failure)
					e.results = append(e.results, r)
				}
			}
		}
	}
	return nil
}

type soRunContext struct {
	n        int
	cluster  *pgcluster.Cluster
	proxy    *child
	admin    string
	baseline *child // -baseline proxy, or nil
	bouncer  *child // PgBouncer of target pgbouncer, or nil
	// baselineAdmin is the baseline proxy's admin address when profiling.
	baselineAdmin string
	postmasters   []int
	rows          []int64 // rows of soTable on each shard
	total         int64
}

func (e *soEnv) startProxy(ctx context.Context, cluster *pgcluster.Cluster, n int, name, binary string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	admin, err := profileAdmin(e.o)
	if err != nil {
		return nil, "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\nadmin_listen: %q\nlog_level: warn\nauth:\n  trust_loopback: true\n", port, admin)
	fmt.Fprintf(&b, "pool:\n  mode: %s\n  size: %d\n  max_client_conn: %d\n", e.o.proxyPoolMode, e.poolSize(), e.o.clientsPerShard*n+100)
	b.WriteString("shards:\n")
	for _, s := range cluster.Shards {
		fmt.Fprintf(&b, "  - name: %s\n    primary: {host: %s, port: %d}\n", s.Name, s.Primary.Host, s.Primary.Port)
	}
	b.WriteString("sharding:\n")
	for _, line := range strings.Split(strings.TrimRight(soShardingYAML, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	path := filepath.Join(e.workDir, fmt.Sprintf("%s-%d.yaml", name, n))
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, "", err
	}
	env := &env{workDir: e.workDir}
	c, err := env.startChild(fmt.Sprintf("%s-%d", name, n), clientCommand(ctx, e.o, binary, "--config", path), port)
	if err != nil {
		return nil, "", err
	}
	c.admin = admin
	return c, admin, nil
}

// poolSize is the proxy's server pool per shard: by default as many server
// connections per shard as the direct baseline has backends per shard.
func (e *soEnv) poolSize() int {
	if e.o.scaleoutPool > 0 {
		return e.o.scaleoutPool
	}
	return e.o.clientsPerShard
}

// load creates soTable through the proxy (DDL reaches every shard), COPYs
// rowsPerShard × n rows into it through the proxy (split by key), checks on
// every shard that each row is where the router says, then creates the
// per-shard baseline table with as many rows, keys 1..rows. It returns the
// rows on each shard.
func (e *soEnv) load(ctx context.Context, cluster *pgcluster.Cluster, proxyPort int, rt *router.Router, n int) ([]int64, error) {
	conn, err := connect(ctx, proxyPort)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	ddl := fmt.Sprintf("CREATE TABLE %s (aid integer PRIMARY KEY, bid integer, abalance integer, filler character(84)) WITH (fillfactor = %d)", soTable, soFillfactor)
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+soTable).ReadAll(); err != nil {
		return nil, fmt.Errorf("drop through the proxy: %w", err)
	}
	if _, err := conn.Exec(ctx, ddl).ReadAll(); err != nil {
		return nil, fmt.Errorf("create through the proxy: %w", err)
	}
	total := int64(e.o.rowsPerShard) * int64(n)
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 0, 1<<16)
		for aid := int64(1); aid <= total; aid++ {
			buf = strconv.AppendInt(buf, aid, 10)
			buf = append(buf, '\t')
			buf = strconv.AppendInt(buf, (aid-1)/100000+1, 10)
			buf = append(buf, "\t0\t\n"...)
			if len(buf) > 60000 {
				if _, err := pw.Write(buf); err != nil {
					return
				}
				buf = buf[:0]
			}
		}
		_, _ = pw.Write(buf)
		pw.Close()
	}()
	tag, err := conn.CopyFrom(ctx, pr, fmt.Sprintf("COPY %s (aid, bid, abalance, filler) FROM STDIN", soTable))
	pr.Close()
	if err != nil {
		return nil, fmt.Errorf("COPY through the proxy: %w", err)
	}
	if tag.RowsAffected() != total {
		return nil, fmt.Errorf("COPY through the proxy: %d rows, want %d", tag.RowsAffected(), total)
	}

	rows := make([]int64, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range cluster.Shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows[i], errs[i] = e.prepareShard(ctx, s, rt)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var sum int64
	for _, r := range rows {
		sum += r
	}
	if sum != total {
		return nil, fmt.Errorf("placement: the shards hold %d rows together, want %d", sum, total)
	}
	return rows, nil
}

// prepareShard checks the placement of soTable on one shard, vacuums it and
// creates the baseline table of the same size.
func (e *soEnv) prepareShard(ctx context.Context, s *pgcluster.Shard, rt *router.Router) (int64, error) {
	conn, err := connect(ctx, s.Primary.Port)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT aid FROM "+soTable, nil, nil, nil, nil)
	var count, misplaced int64
	example := ""
	for res.NextRow() {
		aid, err := strconv.ParseInt(string(res.Values()[0]), 10, 64)
		if err != nil {
			return 0, err
		}
		count++
		owner, err := rt.ShardForKey("accounts", router.IntKey(aid))
		if err != nil {
			return 0, err
		}
		if owner != s.Name {
			misplaced++
			if example == "" {
				example = fmt.Sprintf("aid %d belongs on %s", aid, owner)
			}
		}
	}
	if _, err := res.Close(); err != nil {
		return 0, err
	}
	if misplaced > 0 {
		return 0, fmt.Errorf("placement: %s holds %d misplaced rows of %d (e.g. %s)", s.Name, misplaced, count, example)
	}
	if count == 0 {
		return 0, fmt.Errorf("placement: %s holds no rows", s.Name)
	}
	stmts := []string{
		"DROP TABLE IF EXISTS " + soDirectTable,
		fmt.Sprintf("CREATE TABLE %s (aid integer PRIMARY KEY, bid integer, abalance integer, filler character(84)) WITH (fillfactor = %d)", soDirectTable, soFillfactor),
		fmt.Sprintf("INSERT INTO %s SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, %d) g", soDirectTable, count),
		"VACUUM ANALYZE " + soTable,
		"VACUUM ANALYZE " + soDirectTable,
		"CHECKPOINT",
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q).ReadAll(); err != nil {
			return 0, fmt.Errorf("%s: %s: %w", s.Name, q, err)
		}
	}
	return count, nil
}

// scriptFile writes the pgbench script of w for table and keys 1..max.
func (e *soEnv) scriptFile(w soWorkload, table string, maxKey int64) (string, error) {
	path := filepath.Join(e.workDir, fmt.Sprintf("%s-%s-%d.sql", w.name, table, maxKey))
	return path, os.WriteFile(path, []byte(fmt.Sprintf(w.script, table, maxKey)), 0o644)
}

// pgbenchRun is one pgbench process's parsed outcome.
type pgbenchRun struct {
	tps, latencyMs float64
	processed      int64
	cpu            float64
	failure        string
}

func (e *soEnv) pgbenchArgs(port, clients, threads, seconds int, proto, script string) []string {
	return e.pgbenchArgsDB(port, clients, threads, seconds, proto, script, "postgres")
}

// pgbenchArgsDB is pgbenchArgs for database db.
func (e *soEnv) pgbenchArgsDB(port, clients, threads, seconds int, proto, script, db string) []string {
	return []string{"-n", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(seconds),
		"-M", proto, "-f", script, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", db}
}

func (e *soEnv) startPgbench(ctx context.Context, args []string, seconds int) (func() pgbenchRun, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+2*time.Minute)
	cmd := clientCommand(ctx, e.o, e.pgbench, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	return func() pgbenchRun {
		defer cancel()
		err := cmd.Wait()
		r := parsePgbench(out.String(), err)
		if cmd.ProcessState != nil {
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				r.cpu = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
			}
		}
		if r.failure != "" {
			e.log.Warn("pgbench run failed", "args", strings.Join(args, " "), "output", lastLines(out.String(), 15))
		}
		return r
	}, nil
}

// placement describes -server-cpus and -client-cpus for a report ("" when
// neither is set).
func placement(o options) string {
	if o.serverCPUs == "" && o.clientCPUs == "" {
		return ""
	}
	return fmt.Sprintf("Placement: the PostgreSQL servers confined to CPU(s) %s (a cgroup v1 cpuset group), shardproxy and "+
		"pgbench pinned to CPU(s) %s (`taskset`), so that the servers' caches and wake-ups are their own, as on machines "+
		"of their own (`BENCH_SERVER_CPUS`, `BENCH_CLIENT_CPUS`).", orNone(o.serverCPUs), orNone(o.clientCPUs))
}

// clientCommand runs name with args, pinned to -client-cpus when set (taskset
// execs name, so the process keeps taskset's PID).
func clientCommand(ctx context.Context, o options, name string, args ...string) *exec.Cmd {
	if o.clientCPUs == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "taskset", append([]string{"-c", o.clientCPUs, name}, args...)...)
}

// parsePgbench reads tps, latency and processed transactions from pgbench
// output; failure is set when the run does not count.
func parsePgbench(s string, err error) pgbenchRun {
	var r pgbenchRun
	var failed int64
	if m := reTPS.FindStringSubmatch(s); m != nil {
		r.tps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reLatency.FindStringSubmatch(s); m != nil {
		r.latencyMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reProcessed.FindStringSubmatch(s); m != nil {
		r.processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reFailed.FindStringSubmatch(s); m != nil {
		failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	switch {
	case err != nil:
		r.failure = fmt.Sprintf("pgbench: %v: %s", err, firstError(s))
	case r.processed == 0:
		r.failure = "no transactions processed: " + firstError(s)
	case failed > 0:
		r.failure = fmt.Sprintf("%d failed transactions: %s", failed, firstError(s))
	}
	return r
}

func postgresCPU(postmasters []int) float64 {
	var s float64
	for _, pm := range postmasters {
		s += treeCPUSeconds(pm)
	}
	return s
}

func waitQuietAll(postmasters []int) {
	for _, pm := range postmasters {
		waitQuiet(pm, 10*time.Second)
	}
}

// runProxy drives the whole cluster through shardproxy with
// clientsPerShard × n clients. Round 0 is a warm-up.
func (e *soEnv) runProxy(ctx context.Context, rc soRunContext, targetName string, w soWorkload, proto string, round, seconds int) soResult {
	clients := e.o.clientsPerShard * rc.n
	r := soResult{shards: rc.n, round: round, workload: w.name, protocol: proto, target: targetName, clients: clients}
	proxy, admin := rc.proxy, rc.admin
	if targetName == "baseline" {
		proxy, admin = rc.baseline, rc.baselineAdmin
	}
	script, err := e.scriptFile(w, soTable, rc.total)
	if err != nil {
		r.failure = err.Error()
		return r
	}
	args := e.pgbenchArgs(proxy.port, clients, min(e.o.threads, clients), seconds, proto, script)
	waitQuietAll(rc.postmasters)
	proxy0, pg0 := cpuSeconds(proxy.cmd.Process.Pid), postgresCPU(rc.postmasters)
	wait, err := e.startPgbench(ctx, args, seconds)
	if err != nil {
		r.failure = err.Error()
		return r
	}
	var profiled <-chan struct{} = closedChan()
	if round > 0 {
		env := &env{o: e.o, log: e.log}
		profiled = env.startProfile(ctx, target{name: r.target, admin: admin},
			workload{name: fmt.Sprintf("scaleout-%dshards-%s-%s", rc.n, w.name, proto)}, round)
	}
	pr := wait()
	<-profiled
	waitQuietAll(rc.postmasters)
	r.proxyCPU = cpuSeconds(proxy.cmd.Process.Pid) - proxy0
	r.postgresCPU = postgresCPU(rc.postmasters) - pg0
	r.tps, r.latencyMs, r.processed, r.pgbenchCPU, r.failure = pr.tps, pr.latencyMs, pr.processed, pr.cpu, pr.failure
	return r
}

// runDirect drives every shard straight with clientsPerShard clients each
// (one pgbench per shard, all at once) on the per-shard baseline table; tps
// and transactions are summed, latency averaged.
func (e *soEnv) runDirect(ctx context.Context, rc soRunContext, w soWorkload, proto string, round, seconds int) soResult {
	return e.runEachShard(ctx, rc, "direct", w, proto, round, seconds)
}

// runEachShard is one pgbench per shard, all at once, on the per-shard
// baseline table: straight at the shard (target "direct") or through
// PgBouncer's database for it (target "pgbouncer", whose CPU is the run's
// proxy CPU).
func (e *soEnv) runEachShard(ctx context.Context, rc soRunContext, targetName string, w soWorkload, proto string, round, seconds int) soResult {
	r := soResult{shards: rc.n, round: round, workload: w.name, protocol: proto, target: targetName, clients: e.o.clientsPerShard * rc.n}
	waitQuietAll(rc.postmasters)
	pg0 := postgresCPU(rc.postmasters)
	var pooler *child // PgBouncer, whose CPU is the run's proxy CPU; nil for direct
	var pooler0 float64
	if targetName == "pgbouncer" {
		pooler, pooler0 = rc.bouncer, cpuSeconds(rc.bouncer.cmd.Process.Pid)
	}
	var waits []func() pgbenchRun
	for i, s := range rc.cluster.Shards {
		script, err := e.scriptFile(w, soDirectTable, rc.rows[i])
		if err == nil {
			port, db := s.Primary.Port, "postgres"
			if pooler != nil {
				port, db = pooler.port, bouncerDB(i)
			}
			args := e.pgbenchArgsDB(port, e.o.clientsPerShard, 1, seconds, proto, script, db)
			var wait func() pgbenchRun
			wait, err = e.startPgbench(ctx, args, seconds)
			if err == nil {
				waits = append(waits, wait)
			}
		}
		if err != nil && r.failure == "" {
			r.failure = err.Error()
		}
	}
	sum := sumRuns(waits)
	r.tps, r.latencyMs, r.processed, r.pgbenchCPU = sum.tps, sum.latencyMs, sum.processed, sum.cpu
	if r.failure == "" {
		r.failure = sum.failure
	}
	waitQuietAll(rc.postmasters)
	r.postgresCPU = postgresCPU(rc.postmasters) - pg0
	if pooler != nil {
		r.proxyCPU = cpuSeconds(pooler.cmd.Process.Pid) - pooler0
	}
	return r
}

// soListed reports whether name is named in the comma-separated list
// (an empty list names nothing).
func soListed(list, name string) bool {
	return list != "" && soSelected(list, name)
}

// startBouncer runs PgBouncer in session pooling with a database per
// shard, clients-per-shard server connections each.
func (e *soEnv) startBouncer(ctx context.Context, cluster *pgcluster.Cluster) (*child, error) {
	var primaries []*pgcluster.Instance
	for _, s := range cluster.Shards {
		primaries = append(primaries, s.Primary)
	}
	c, _, err := startServersBouncer(ctx, e.o, e.log, e.workDir, primaries, e.o.clientsPerShard, "session")
	return c, err
}

// sumRuns waits for pgbench processes that ran at once and sums them:
// tps, transactions and CPU added up, latency averaged, the first failure.
func sumRuns(waits []func() pgbenchRun) pgbenchRun {
	var sum pgbenchRun
	for _, wait := range waits {
		pr := wait()
		sum.tps += pr.tps
		sum.latencyMs += pr.latencyMs / float64(len(waits))
		sum.processed += pr.processed
		sum.cpu += pr.cpu
		if sum.failure == "" {
			sum.failure = pr.failure
		}
	}
	return sum
}

// queryOne returns the first column of the first row.
func queryOne(ctx context.Context, port int, sql string) (string, error) {
	conn, err := connect(ctx, port)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	rs, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(rs) == 0 || len(rs[0].Rows) == 0 {
		return "", errors.New("no rows")
	}
	return string(rs[0].Rows[0][0]), nil
}

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// vacuum vacuums both tables on every shard, so each run starts from the
// same table state whatever ran before it.
func (e *soEnv) vacuum(ctx context.Context, cluster *pgcluster.Cluster) error {
	errs := make([]error, len(cluster.Shards))
	var wg sync.WaitGroup
	for i, s := range cluster.Shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := connect(ctx, s.Primary.Port)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(context.Background())
			_, errs[i] = conn.Exec(ctx, "VACUUM "+soTable+", "+soDirectTable).ReadAll()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
