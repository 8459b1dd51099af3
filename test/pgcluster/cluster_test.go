package pgcluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func connect(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// eventually polls cond every 20ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by deadline
	}
}

func queryString(ctx context.Context, dsn, sql string) (string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var s string
	err = conn.QueryRow(ctx, sql).Scan(&s)
	return s, err
}

// allPIDs returns every live server process of the cluster.
func allPIDs(c *Cluster) []int {
	var pids []int
	for _, in := range c.Instances() {
		pids = append(pids, processesIn(in.DataDir)...)
	}
	return pids
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestBinDir(t *testing.T) {
	d, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"initdb", "postgres", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			t.Errorf("%s missing in %s: %v", b, d, err)
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	for _, o := range []Options{
		{Settings: map[string]string{"port": "5432"}},
		{Shards: -1},
		{Replicas: 9},
		{CPUQuota: -1},
	} {
		if c, err := Start(ctx, o); err == nil {
			c.Stop()
			t.Errorf("Start(%+v) succeeded", o)
		}
	}
}

func TestShardsWithReplicas(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	c := StartT(t, Options{Shards: 2, Replicas: 1, Settings: map[string]string{"application_name": "pgcluster test"}})
	if len(c.Shards) != 2 || len(c.Instances()) != 4 {
		t.Fatalf("got %d shards, %d instances", len(c.Shards), len(c.Instances()))
	}
	seen := map[int]bool{}
	for _, in := range c.Instances() {
		if seen[in.Port] || in.Port < firstAutoPort {
			t.Errorf("%s: bad or duplicate port %d", in.Name, in.Port)
		}
		seen[in.Port] = true
		if in.PID() == 0 {
			t.Errorf("%s: no PID", in.Name)
		}
	}
	if got := c.Shards[1].Replicas[0].Name; got != "shard1-replica1" {
		t.Errorf("replica name = %q", got)
	}

	for n, s := range c.Shards {
		if !s.Primary.Primary || s.Replicas[0].Primary {
			t.Errorf("%s: Primary flags wrong", s.Name)
		}
		p := connect(t, ctx, s.Primary.DSN("postgres"))
		for setting, want := range map[string]string{
			"wal_level": "logical", "max_prepared_transactions": "100", "max_connections": "600",
			"application_name": "pgcluster test", "fsync": "off", "server_version_num": "",
		} {
			var got string
			if err := p.QueryRow(ctx, "SHOW "+setting).Scan(&got); err != nil {
				t.Fatalf("SHOW %s: %v", setting, err)
			}
			if want != "" && got != want {
				t.Errorf("%s: %s = %q, want %q", s.Name, setting, got, want)
			}
		}
		if _, err := p.Exec(ctx, "CREATE TABLE t (id int primary key, shard text)"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Exec(ctx, "INSERT INTO t VALUES ($1, $2)", n, s.Name); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, s.Name+" row on replica", func() error {
			got, err := queryString(ctx, s.Replicas[0].DSN("postgres"), "SELECT shard FROM t WHERE id = "+strconv.Itoa(n))
			if err != nil {
				return err
			}
			if got != s.Name {
				return fmt.Errorf("got %q", got)
			}
			return nil
		})
		r := connect(t, ctx, s.Replicas[0].DSN("postgres"))
		var inRecovery bool
		if err := r.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
			t.Errorf("%s: pg_is_in_recovery = %v, %v", s.Replicas[0].Name, inRecovery, err)
		}
		if _, err := r.Exec(ctx, "INSERT INTO t VALUES (100, 'x')"); err == nil {
			t.Errorf("write on replica succeeded")
		}
	}

	// Many asynchronous commits, then WaitReplicasCaughtUp: all visible.
	for _, s := range c.Shards {
		p := connect(t, ctx, s.Primary.DSN("postgres"))
		for k := 10; k < 60; k++ {
			if _, err := p.Exec(ctx, "INSERT INTO t VALUES ($1, 'bulk')", k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Shards {
		got, err := queryString(ctx, s.Replicas[0].DSN("postgres"), "SELECT count(*)::text FROM t WHERE shard = 'bulk'")
		if err != nil || got != "50" {
			t.Errorf("%s replica after catch-up: count = %q, %v", s.Name, got, err)
		}
	}

	// The unix socket works too.
	sock := c.Shards[0].Primary.DataDir
	if _, err := queryString(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", sock, c.Shards[0].Primary.Port), "SELECT 'ok'"); err != nil {
		t.Errorf("unix socket: %v", err)
	}

	pids := allPIDs(c)
	if len(pids) < 8 {
		t.Fatalf("expected many server processes, found %v", pids)
	}
	root := c.root
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d still alive after Stop", pid)
		}
	}
	for _, in := range c.Instances() {
		if in.PID() != 0 || in.Running() {
			t.Errorf("%s still reports running", in.Name)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("temp data dir %s not removed: %v", root, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestPersistentRestart(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 90*time.Second)
	dir := filepath.Join(t.TempDir(), "data")
	// The first start takes two ports away from where parallel tests pick
	// theirs (61000 up), so none of them takes one while the cluster is
	// stopped; the restart must find them recorded.
	opts := Options{DataDir: dir, Replicas: 1, BasePort: quietPortPair(t)}

	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.BasePort = 0
	p := c.Shards[0].Primary
	if p.DataDir != filepath.Join(c.root, "shard0", "primary") {
		t.Errorf("primary DataDir = %s", p.DataDir)
	}
	if v, err := queryString(ctx, p.DSN("postgres"), "SHOW fsync"); err != nil || v != "on" {
		t.Errorf("persistent fsync = %q, %v; want on", v, err)
	}
	conn := connect(t, ctx, p.DSN("postgres"))
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	ports := []int{p.Port, c.Shards[0].Replicas[0].Port}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster.json")); err != nil {
		t.Fatal(err)
	}

	// Same ports, same data.
	c2, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Stop() })
	if got := []int{c2.Shards[0].Primary.Port, c2.Shards[0].Replicas[0].Port}; got[0] != ports[0] || got[1] != ports[1] {
		t.Errorf("ports after restart %v, want %v", got, ports)
	}
	for _, in := range c2.Instances() {
		if v, err := queryString(ctx, in.DSN("postgres"), "SELECT v FROM kept"); err != nil || v != "hello" {
			t.Errorf("%s after restart: %q, %v", in.Name, v, err)
		}
	}
	// One cluster per directory at a time.
	if c, err := Start(ctx, opts); err == nil || !strings.Contains(err.Error(), "in use") {
		if c != nil {
			c.Stop()
		}
		t.Errorf("second cluster on the same DataDir: %v", err)
	}
	if err := c2.Stop(); err != nil {
		t.Fatal(err)
	}

	// The recorded primary port is taken: a new port, and the replica follows it.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
	if err != nil {
		t.Fatalf("occupy port: %v", err)
	}
	defer l.Close()
	c3 := StartT(t, opts)
	p3 := c3.Shards[0].Primary
	if p3.Port == ports[0] {
		t.Fatalf("primary reused the occupied port %d", p3.Port)
	}
	if _, err := queryString(ctx, p3.DSN("postgres"), "INSERT INTO kept VALUES ('after move') RETURNING v"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "replica follows the moved primary", func() error {
		v, err := queryString(ctx, c3.Shards[0].Replicas[0].DSN("postgres"), "SELECT count(*)::text FROM kept")
		if err == nil && v != "2" {
			err = fmt.Errorf("count = %s", v)
		}
		return err
	})
}

func TestKillAndStartWithPassword(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	c := StartT(t, Options{Replicas: 1, Password: `s3cr'et\ pw@:/`})
	p := c.Shards[0].Primary
	r := c.Shards[0].Replicas[0]

	if cfg, err := pgconn.ParseConfig(p.DSN("db")); err != nil || cfg.Password != `s3cr'et\ pw@:/` ||
		cfg.User != "postgres" || cfg.Database != "db" || cfg.Port != uint16(p.Port) || cfg.TLSConfig != nil {
		t.Errorf("DSN %s parses to %+v, %v", p.DSN("db"), cfg, err)
	}
	noPw := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", p.Addr())
	if _, err := queryString(ctx, noPw, "SELECT 1"); err == nil {
		t.Errorf("connected without a password")
	}

	conn := connect(t, ctx, p.DSN("postgres"))
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on; CREATE TABLE k (v int); INSERT INTO k VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	pids := processesIn(p.DataDir)
	oldPID := p.PID()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("process %d survived Kill: %s cwd=%s %v cmd=%q", pid, st, cwd, err, cmd)
		}
	}
	if p.PID() != 0 || p.Running() {
		t.Errorf("killed instance still reports running")
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if p.PID() == oldPID || p.PID() == 0 {
		t.Errorf("PID after restart = %d (old %d)", p.PID(), oldPID)
	}
	if v, err := queryString(ctx, p.DSN("postgres"), "SELECT count(*)::text FROM k"); err != nil || v != "1" {
		t.Errorf("after crash: %q, %v", v, err)
	}
	// The replica reconnects to the restarted primary.
	if _, err := queryString(ctx, p.DSN("postgres"), "INSERT INTO k VALUES (2) RETURNING v::text"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := queryString(ctx, r.DSN("postgres"), "SELECT count(*)::text FROM k"); err != nil || v != "2" {
		t.Errorf("replica after primary crash: %q, %v", v, err)
	}

	// Restart the replica.
	if err := r.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := queryString(ctx, r.DSN("postgres"), "SELECT count(*)::text FROM k"); err != nil || v != "2" {
		t.Errorf("replica after restart: %q, %v", v, err)
	}
}

func TestPromote(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	c := StartT(t, Options{Replicas: 1})
	p, r := c.Shards[0].Primary, c.Shards[0].Replicas[0]
	if err := p.Promote(ctx); err == nil {
		t.Errorf("promoting a primary succeeded")
	}
	if _, err := connect(t, ctx, p.DSN("postgres")).Exec(ctx, "CREATE TABLE f (v int)"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := queryString(ctx, r.DSN("postgres"), "INSERT INTO f VALUES (7) RETURNING v::text"); err != nil || v != "7" {
		t.Errorf("write on promoted replica: %q, %v", v, err)
	}
}

func TestCPUQuota(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	c := StartT(t, Options{CPUQuota: 0.25})
	p := c.Shards[0].Primary
	cg := filepath.Join(c.cgroupDir, p.Name)
	if !strings.HasPrefix(cg, cgroupCPURoot+"/shardproxy-") {
		t.Fatalf("cgroup dir %s", cg)
	}
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(cg, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if q := read("cpu.cfs_quota_us"); q != "25000" {
		t.Errorf("quota = %s", q)
	}
	if q := read("cpu.cfs_period_us"); q != "100000" {
		t.Errorf("period = %s", q)
	}
	// The postmaster and every server process (the ones forked before it
	// joined, and backends forked after) are in the group.
	if _, err := queryString(ctx, p.DSN("postgres"), "SELECT 1::text"); err != nil {
		t.Fatal(err)
	}
	procs := strings.Fields(read("cgroup.procs"))
	in := map[string]bool{}
	for _, s := range procs {
		in[s] = true
	}
	if !in[strconv.Itoa(p.PID())] {
		t.Errorf("postmaster %d not in %v", p.PID(), procs)
	}
	for _, pid := range processesIn(p.DataDir) {
		if !in[strconv.Itoa(pid)] {
			t.Errorf("server process %d not in cgroup %v", pid, procs)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.cgroupDir); !os.IsNotExist(err) {
		t.Errorf("cgroup %s not removed: %v", c.cgroupDir, err)
	}
}

func TestCPUs(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	c := StartT(t, Options{Replicas: 1, CPUs: "0"})
	if !strings.HasPrefix(c.cpusetDir, cgroupCpusetRoot+"/shardproxy-") {
		t.Fatalf("cpuset dir %s", c.cpusetDir)
	}
	// Every server process (forked before or after its postmaster joined,
	// a backend included) may run on CPU 0 only.
	for _, in := range []*Instance{c.Shards[0].Primary, c.Shards[0].Replicas[0]} {
		if _, err := queryString(ctx, in.DSN("postgres"), "SELECT 1::text"); err != nil {
			t.Fatal(err)
		}
		pids := processesIn(in.DataDir)
		if len(pids) < 2 {
			t.Fatalf("%s: processes %v", in.Name, pids)
		}
		for _, pid := range pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				continue // exited meanwhile
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok && strings.TrimSpace(v) != "0" {
					t.Errorf("%s: process %d may run on CPUs %s", in.Name, pid, strings.TrimSpace(v))
				}
			}
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.cpusetDir); !os.IsNotExist(err) {
		t.Errorf("cpuset group %s not removed: %v", c.cpusetDir, err)
	}
}

func TestBasePort(t *testing.T) {
	t.Parallel()
	// Two consecutive free ports away from where automatic picks start.
	base := 0
	for p := 64500; p < 65000 && base == 0; p += 2 {
		a, _ := tryPort("127.0.0.1", p)
		b, _ := tryPort("127.0.0.1", p+1)
		if a != nil && b != nil {
			base = p
		}
		a.release()
		b.release()
	}
	if base == 0 {
		t.Fatal("no two free consecutive ports")
	}
	c := StartT(t, Options{Replicas: 1, BasePort: base})
	if c.Shards[0].Primary.Port != base || c.Shards[0].Replicas[0].Port != base+1 {
		t.Errorf("ports %d, %d; want %d, %d", c.Shards[0].Primary.Port, c.Shards[0].Replicas[0].Port, base, base+1)
	}
	// BasePort taken: a clear error.
	_, err := Start(ctxT(t, 30*time.Second), Options{BasePort: base})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(base)) {
		t.Errorf("Start on a taken BasePort: %v", err)
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	c, err := Start(ctx, Options{Shards: 2, Settings: map[string]string{"wal_level": "bogus"}})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with an invalid setting")
	}
	msg := err.Error()
	if !strings.Contains(msg, "wal_level") {
		t.Errorf("error does not carry the server log: %v", err)
	}
	i := strings.Index(msg, os.TempDir()+"/pgcluster-")
	if i < 0 {
		t.Fatalf("error does not name the data dir: %v", err)
	}
	root := strings.SplitN(msg[i:], "/shard", 2)[0]
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", root, err)
	}
}

// TestHelperProcess is not a test: TestParentDeath runs the test binary
// with PGCLUSTER_HELPER=1 so that it starts a cluster and waits to be killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("PGCLUSTER_HELPER") != "1" {
		return
	}
	ctx := ctxT(t, 60*time.Second)
	c, err := Start(ctx, Options{Replicas: 1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("root", c.DataDir())
	for _, in := range c.Instances() {
		fmt.Println("dir", in.DataDir)
	}
	fmt.Println("ready")
	<-ctx.Done() // the parent kills us long before
	os.Exit(1)
}

func TestParentDeath(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "PGCLUSTER_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var root string
	var dirs []string
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(60 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("helper exited before it was ready")
			}
			f := strings.SplitN(l, " ", 2)
			switch f[0] {
			case "root":
				root = f[1]
			case "dir":
				dirs = append(dirs, f[1])
			case "ready":
				break wait
			default:
				t.Logf("helper: %s", l)
			}
		case <-timeout:
			t.Fatal("helper did not become ready")
		}
	}
	defer os.RemoveAll(root)
	if len(dirs) != 2 {
		t.Fatalf("dirs %v", dirs)
	}
	var pids []int
	for _, d := range dirs {
		pids = append(pids, processesIn(d)...)
	}
	if len(pids) < 6 {
		t.Fatalf("expected server processes, found %v", pids)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eventually(t, 20*time.Second, "servers exit after their parent died", func() error {
		for _, p := range pids {
			if alive(p) {
				return fmt.Errorf("process %d alive", p)
			}
		}
		return nil
	})
	// The next Start's sweep removes the dead process's temp root.
	removeStaleTempRoots()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("stale root %s not removed: %v", root, err)
	}
}

// TestWaitReplicasCaughtUpAsyncCommits: after each asynchronous commit
// (temporary clusters run with synchronous_commit=off), WaitReplicasCaughtUp
// returns only once the replica shows the row — at once, every round.
func TestWaitReplicasCaughtUpAsyncCommits(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 2*time.Minute)
	c := StartT(t, Options{Replicas: 1})
	p := connect(t, ctx, c.Shards[0].Primary.DSN("postgres"))
	r := connect(t, ctx, c.Shards[0].Replicas[0].DSN("postgres"))
	if _, err := p.Exec(ctx, "CREATE TABLE async_rows (n int)"); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 40; n++ {
		if _, err := p.Exec(ctx, "INSERT INTO async_rows VALUES ($1)", n); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitReplicasCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		var got int
		if err := r.QueryRow(ctx, "SELECT count(*) FROM async_rows").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Fatalf("round %d: the replica has %d rows right after WaitReplicasCaughtUp", n, got)
		}
	}
}

// quietPortPair returns the first of two free consecutive ports from 62000
// up, where the automatic choice (from 61000 up) does not reach in practice.
func quietPortPair(t *testing.T) int {
	t.Helper()
	for port := 62000; port < 63000; port += 2 {
		a, err := tryPort("127.0.0.1", port)
		if err != nil {
			t.Fatal(err)
		}
		if a == nil {
			continue
		}
		b, err := tryPort("127.0.0.1", port+1)
		a.f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if b != nil {
			b.f.Close()
			return port
		}
	}
	t.Fatal("no two free ports from 62000 up")
	return 0
}
