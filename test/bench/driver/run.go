package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// workload is one pgbench configuration.
type workload struct {
	name  string // for -only and the raw table
	label string // for the report
	args  []string
}

var workloads = []workload{
	{"select-simple", "`-S` `-M simple`", []string{"-S", "-M", "simple"}},
	{"select-extended", "`-S` `-M extended`", []string{"-S", "-M", "extended"}},
	{"select-prepared", "`-S` `-M prepared`", []string{"-S", "-M", "prepared"}},
	{"tpcb-simple", "TPC-B `-M simple`", []string{"-M", "simple"}},
	{"tpcb-extended", "TPC-B `-M extended`", []string{"-M", "extended"}},
	{"tpcb-prepared", "TPC-B `-M prepared`", []string{"-M", "prepared"}},
	{"connect", "`-S -C` `-M simple`", []string{"-S", "-C", "-M", "simple"}},
}

// target is one place pgbench connects to.
type target struct {
	name   string
	port   int
	host   string // what pgbench's -h names: 127.0.0.1, or the pooler's socket directory with -client-socket unix
	pooler int    // PID of the pooler process; 0 for direct
	admin  string // shardproxy's admin address when profiling, else ""
}

// env is everything started for the run.
type env struct {
	o                        options
	log                      *slog.Logger
	pgbench                  string
	pgHost                   string
	pgPort                   int
	postmaster               int
	targets                  []target
	workDir                  string
	postgresUID, postgresGID uint32
	pgVersion                string
	bouncerVer               string
	revision                 string // git HEAD when the run started
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if o.seconds < 1 || o.rounds < 1 || o.clients < 1 {
		return errors.New("-seconds, -rounds and -clients must be positive")
	}
	e := &env{o: o, log: log}
	e.revision = strings.TrimSpace(cmdOut("git", "rev-parse", "--short", "HEAD"))
	var err error
	if e.pgbench, err = findPgbench(); err != nil {
		return err
	}
	if err := e.findPgBouncer(); err != nil {
		return err
	}
	o.pgbouncer = e.o.pgbouncer
	if _, err := os.Stat(o.shardproxy); err != nil && strings.Contains(o.targets, "shardproxy") {
		return fmt.Errorf("shardproxy binary: %v (run make build)", err)
	}
	if _, err := os.Stat(o.baseline); err != nil && strings.Contains(o.targets, "baseline") {
		return fmt.Errorf("-baseline binary %q: %v", o.baseline, err)
	}
	if err := e.lookupPostgresUser(); err != nil {
		return err
	}
	if e.workDir, err = os.MkdirTemp("", "shardproxy-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.workDir)
	if err := os.Chmod(e.workDir, 0o755); err != nil {
		return err
	}

	log.Info("starting PostgreSQL")
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		Shards: 1,
		Logger: log,
		// Scale 10 is ~160 MB: keep it in shared buffers so every target is CPU-bound.
		Settings: map[string]string{"shared_buffers": "256MB"},
	})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer cluster.Stop()
	primary := cluster.Shards[0].Primary
	e.pgHost, e.pgPort = primary.Host, primary.Port
	if err := e.inspectServer(ctx); err != nil {
		return err
	}

	log.Info("pgbench -i", "scale", o.scale)
	if out, err := exec.CommandContext(ctx, e.pgbench, "-i", "-q", "-s", strconv.Itoa(o.scale),
		"-h", e.pgHost, "-p", strconv.Itoa(e.pgPort), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	want := map[string]bool{}
	for _, n := range strings.Split(o.targets, ",") {
		switch n = strings.TrimSpace(n); n {
		case "direct", "pgbouncer", "shardproxy", "baseline":
			want[n] = true
		default:
			return fmt.Errorf("-targets: unknown target %q (direct, pgbouncer, shardproxy, baseline)", n)
		}
	}
	var children []*child
	if want["direct"] {
		e.targets = append(e.targets, target{name: "direct", port: e.pgPort})
	}
	if want["pgbouncer"] {
		bouncer, err := e.startPgBouncer(ctx)
		if err != nil {
			return err
		}
		defer bouncer.stop()
		children = append(children, bouncer)
		e.targets = append(e.targets, target{name: "pgbouncer", port: bouncer.port, host: e.socketDir(), pooler: bouncer.cmd.Process.Pid})
	}
	// "baseline" is a second shardproxy binary (-baseline), e.g. the last
	// commit, measured in the same run to compare two builds side by side.
	for _, sp := range []struct{ name, binary string }{{"baseline", o.baseline}, {"shardproxy", o.shardproxy}} {
		if !want[sp.name] {
			continue
		}
		proxy, err := e.startShardproxy(ctx, sp.name, sp.binary)
		if err != nil {
			return err
		}
		defer proxy.stop()
		children = append(children, proxy)
		e.targets = append(e.targets, target{name: sp.name, port: proxy.port, host: e.socketDir(), pooler: proxy.cmd.Process.Pid, admin: proxy.admin})
	}
	for _, t := range e.targets {
		if err := waitReady(ctx, t.port, 30*time.Second); err != nil {
			return fmt.Errorf("%s not ready: %w\n%s", t.name, err, tail(children...))
		}
	}

	selected := workloads
	if o.only != "" {
		selected = nil
		for _, w := range workloads {
			for _, n := range strings.Split(o.only, ",") {
				if strings.TrimSpace(n) == w.name {
					selected = append(selected, w)
				}
			}
		}
		if len(selected) == 0 {
			return fmt.Errorf("-only %q matches no workload", o.only)
		}
	}

	var results []result
	for round := 1; round <= o.rounds; round++ {
		for _, w := range selected {
			for _, t := range e.targets {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := e.runPgbench(ctx, w, t, round)
				log.Info("run", "round", round, "workload", w.name, "target", t.name,
					"tps", fmt.Sprintf("%.0f", r.tps), "lat_ms", fmt.Sprintf("%.2f", r.latencyMs),
					"pooler_cpu_s", fmt.Sprintf("%.2f", r.poolerCPU), "postgres_cpu_s", fmt.Sprintf("%.2f", r.postgresCPU),
					"pooler_us_per_tx", fmt.Sprintf("%.1f", perTxMicros(r.poolerCPU, r.processed)),
					"failed", r.failure)
				results = append(results, r)
			}
		}
	}

	var mem []memResult
	if o.idle > 0 {
		for _, t := range e.targets {
			if t.pooler == 0 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			m := e.idleMemory(ctx, t, o.idle)
			log.Info("idle memory", "target", t.name, "clients", m.clients, "per_client_bytes", m.perClient, "err", m.err)
			mem = append(mem, m)
		}
	}

	report := e.report(selected, results, mem)
	if o.out != "" {
		report = keepScaleout(keepNotes(report, o.out), o.out)
	}
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		log.Info("wrote report", "file", o.out)
	}
	return nil
}

// inspectServer finds the postmaster PID (the parent of a backend) and the
// server version.
func (e *env) inspectServer(ctx context.Context) error {
	conn, err := connect(ctx, e.pgPort)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Exec(ctx, "SELECT pg_backend_pid(), current_setting('server_version'), current_setting('max_connections')").ReadAll()
	if err != nil {
		return err
	}
	row := rows[0].Rows[0]
	backend, _ := strconv.Atoi(string(row[0]))
	e.pgVersion = string(row[1])
	if maxConn, _ := strconv.Atoi(string(row[2])); maxConn < e.o.clients+2*e.o.pool+5 {
		return fmt.Errorf("max_connections=%d is too low for %d clients + 2 pools of %d", maxConn, e.o.clients, e.o.pool)
	}
	st, err := readStat(backend)
	if err != nil {
		return fmt.Errorf("read backend %d: %w", backend, err)
	}
	e.postmaster = st.ppid
	return nil
}

func connect(ctx context.Context, port int) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port))
}

// waitReady polls until SELECT 1 works on port.
func waitReady(ctx context.Context, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := connect(ctx, port)
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// child is a pooler process we started.
type child struct {
	name  string
	cmd   *exec.Cmd
	port  int
	log   string // file with its output
	done  chan struct{}
	admin string // admin listener (shardproxy with -cpuprofile)
}

func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (e *env) startChild(name string, cmd *exec.Cmd, port int) (*child, error) {
	logPath := filepath.Join(e.workDir, name+".out")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, port: port, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

func tail(cs ...*child) string {
	var b strings.Builder
	for _, c := range cs {
		if c == nil {
			continue
		}
		out, _ := os.ReadFile(c.log)
		if len(out) > 2000 {
			out = out[len(out)-2000:]
		}
		fmt.Fprintf(&b, "--- %s output:\n%s\n", c.name, out)
	}
	return b.String()
}

// findPgBouncer sets -pgbouncer when empty (PATH, else /usr/sbin) and
// checks the binary exists.
func (e *env) findPgBouncer() error {
	if e.o.pgbouncer == "" {
		var err error
		if e.o.pgbouncer, err = exec.LookPath("pgbouncer"); err != nil {
			e.o.pgbouncer = "/usr/sbin/pgbouncer"
		}
	}
	if _, err := os.Stat(e.o.pgbouncer); err != nil {
		return fmt.Errorf("pgbouncer not found (%v); install the Debian package pgbouncer", err)
	}
	return nil
}

// lookupPostgresUser finds the postgres OS user PgBouncer runs as when the
// benchmark runs as root (PgBouncer refuses root).
func (e *env) lookupPostgresUser() error {
	u, err := user.Lookup("postgres")
	if err != nil {
		if os.Geteuid() == 0 {
			return fmt.Errorf("running as root needs the postgres OS user for PgBouncer: %v", err)
		}
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	e.postgresUID, e.postgresGID = uint32(uid), uint32(gid)
	return nil
}

// startPgBouncer runs PgBouncer in front of the one server of -mode compare:
// every database name goes there, -pool server connections each.
func (e *env) startPgBouncer(ctx context.Context) (*child, error) {
	return e.startPgBouncerWith(ctx, fmt.Sprintf("* = host=%s port=%d", e.pgHost, e.pgPort), e.o.pool, "transaction")
}

// startServersBouncer runs PgBouncer in front of several servers, a
// database per server (bouncerDB(i) for servers[i], plus "postgres" for
// the first, which waitReady uses), pool server connections per database,
// and waits until it answers. It returns PgBouncer's version line too.
func startServersBouncer(ctx context.Context, o options, log *slog.Logger, workDir string, servers []*pgcluster.Instance,
	pool int, mode string) (*child, string, error) {
	pe := &env{o: o, log: log, workDir: workDir}
	if err := pe.findPgBouncer(); err != nil {
		return nil, "", err
	}
	if err := pe.lookupPostgresUser(); err != nil {
		return nil, "", err
	}
	// PgBouncer runs as the postgres OS user under root: it must reach its
	// directory inside the (0700) work directory.
	if err := os.Chmod(workDir, 0o755); err != nil {
		return nil, "", err
	}
	dbs := []string{fmt.Sprintf("postgres = host=%s port=%d", servers[0].Host, servers[0].Port)}
	for i, s := range servers {
		dbs = append(dbs, fmt.Sprintf("%s = host=%s port=%d dbname=postgres", bouncerDB(i), s.Host, s.Port))
	}
	c, err := pe.startPgBouncerWith(ctx, strings.Join(dbs, "\n"), pool, mode)
	if err != nil {
		return nil, "", err
	}
	if err := waitReady(ctx, c.port, 30*time.Second); err != nil {
		c.stop()
		return nil, "", fmt.Errorf("pgbouncer not ready: %w\n%s", err, tail(c))
	}
	return c, pe.bouncerVer, nil
}

// bouncerDB is startServersBouncer's database name for server i.
func bouncerDB(i int) string { return fmt.Sprintf("server%d", i) }

// startPgBouncerWith runs PgBouncer (trust) with the given [databases]
// section, default_pool_size pool and pool_mode mode.
func (e *env) startPgBouncerWith(ctx context.Context, databases string, pool int, mode string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.workDir, "pgbouncer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir = %s
auth_type = trust
auth_file = %s/userlist.txt
pool_mode = %s
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = %d
max_db_connections = 0
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
pidfile = %s/pgbouncer.pid
`, databases, port, e.socketDir(), dir, mode, pool, e.o.idle+1000, dir)
	files := map[string]string{"pgbouncer.ini": ini, "userlist.txt": "\"postgres\" \"\"\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command(e.o.pgbouncer, "--version").Output(); err == nil {
		e.bouncerVer = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	cmd := exec.CommandContext(ctx, e.o.pgbouncer, filepath.Join(dir, "pgbouncer.ini"))
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root.
		for _, p := range []string{dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "userlist.txt")} {
			if err := os.Chown(p, int(e.postgresUID), int(e.postgresGID)); err != nil {
				return nil, err
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: e.postgresUID, Gid: e.postgresGID}}
	}
	return e.startChild("pgbouncer", cmd, port)
}

// profileAdmin is the admin listen address a shardproxy needs for its CPU
// profile to be fetched (-cpuprofile; the directory is created), "" when
// not profiling.
func profileAdmin(o options) (string, error) {
	if o.profileDir == "" {
		return "", nil
	}
	if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
		return "", err
	}
	ap, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", ap), nil
}

func (e *env) startShardproxy(ctx context.Context, name, binary string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := profileAdmin(e.o)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
unix_socket_dir: "%s"
admin_listen: "%s"
log_level: warn
auth:
  trust_loopback: true
pool:
  mode: transaction
  size: %d
  max_client_conn: %d
shards:
  - name: shard0
    primary: {host: %s, port: %d}
`, port, e.socketDir(), admin, e.o.pool, e.o.idle+1000, e.pgHost, e.pgPort)
	path := filepath.Join(e.workDir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	c, err := e.startChild(name, exec.CommandContext(ctx, binary, "--config", path), port)
	if c != nil {
		c.admin = admin
	}
	return c, err
}

// socketDir is the directory of the poolers' Unix-domain sockets with
// -client-socket unix (created on first use, writable by PgBouncer's OS
// user), else "" (no socket).
func (e *env) socketDir() string {
	if e.o.clientSocket != "unix" {
		return ""
	}
	dir := filepath.Join(e.workDir, "sockets")
	if err := os.MkdirAll(dir, 0o777); err == nil {
		os.Chmod(dir, 0o777)
	}
	return dir
}

// freePort returns a loopback port in 61000-65000 that is free now.
func freePort() (int, error) {
	start := 61000 + int(time.Now().UnixNano()%4000)
	for i := range 4000 {
		port := 61000 + (start-61000+i)%4000
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port in 61000-65000")
}

// findPgbench prefers the newest server installation's pgbench.
func findPgbench() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) > 0 {
		sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
		return matches[0], nil
	}
	return exec.LookPath("pgbench")
}

func pgMajor(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// perTxMicros is CPU seconds spread over n transactions, in µs (0 when none).
func perTxMicros(cpuSeconds float64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return cpuSeconds * 1e6 / float64(n)
}
