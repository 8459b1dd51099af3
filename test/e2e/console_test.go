package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// The admin console (psql … -d shardproxy) and /metrics of a real
// shardproxy process (single-node Raft) over two shards with a replica
// each, after real client traffic.

// consoleConfig is the proxy's config file; poolSize changes for RELOAD.
func consoleConfig(pg *pgcluster.Cluster, listen, adminPort, poolSize int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
admin_token: console-secret-token
node_id: 7
shutdown_timeout: 2s
auth: {trust_loopback: true}
admin_users: [admin]
pool: {size: %d}
shards:
`, listen, adminPort, poolSize)
	for _, s := range pg.Shards {
		fmt.Fprintf(&b, "  - name: %s\n    primary: {host: %s, port: %d}\n    replicas:\n", s.Name, s.Primary.Host, s.Primary.Port)
		for _, r := range s.Replicas {
			fmt.Fprintf(&b, "      - {host: %s, port: %d}\n", r.Host, r.Port)
		}
	}
	b.WriteString(`sharding:
  distributions:
    - {name: users, vnodes: 8}
  tables:
    - {name: console_users, key: id, distribution: users}
`)
	return b.String()
}

// consoleRows runs a console command (simple protocol) and returns its rows
// as column → text value.
func consoleRows(t *testing.T, ctx context.Context, c *pgx.Conn, cmd string) []map[string]string {
	t.Helper()
	rows, err := c.Query(ctx, cmd, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		m := make(map[string]string)
		for i, fd := range rows.FieldDescriptions() {
			m[fd.Name] = string(rows.RawValues()[i])
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

func findRow(rows []map[string]string, match map[string]string) map[string]string {
	for _, r := range rows {
		ok := true
		for k, v := range match {
			if r[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return r
		}
	}
	return nil
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not an integer: %q", s)
	}
	return n
}

// scrape reads /metrics into "name{k="v",...}" → value, with labels in the
// order the proxy writes them (sorted by name).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestAdminConsoleAndMetrics(t *testing.T) {
	pg := pgcluster.StartT(t, pgcluster.Options{Shards: 2, Replicas: 1})
	dir := t.TempDir()
	bin := filepath.Join(dir, "shardproxy")
	if out, err := exec.Command("go", "build", "-buildvcs=false", "-ldflags", "-X main.version=console-e2e", "-o", bin, "../../cmd/shardproxy").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	listen, adminPort, raftPort := ctlPort(t), ctlPort(t), ctlPort(t)
	p := &ctlProxy{name: "console", bin: bin, config: filepath.Join(dir, "proxy.yaml"),
		listen: fmt.Sprintf("127.0.0.1:%d", listen), adminURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		args: []string{"--raft-dir", filepath.Join(dir, "raft"), "--raft-bind", fmt.Sprintf("127.0.0.1:%d", raftPort)}}
	if err := os.WriteFile(p.config, []byte(consoleConfig(pg, listen, adminPort, 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("proxy output:\n%s", p.out.String())
		}
	})
	ctlWait(t, 30*time.Second, "proxy ready", func() bool {
		resp, err := http.Get(p.adminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	ctx := testCtx(t, 3*time.Minute)
	appDSN := p.dsn()
	consoleDSN := fmt.Sprintf("postgres://admin@%s/shardproxy?sslmode=disable", p.listen)

	// Traffic: DDL (broadcast), single-shard writes and reads, a scatter
	// read (multi), an error of class 42.
	app := connectPgx(t, ctx, appDSN)
	mustExec(t, ctx, app, "CREATE TABLE console_users (id bigint PRIMARY KEY, name text)")
	for i := 1; i <= 20; i++ {
		mustExec(t, ctx, app, "INSERT INTO console_users VALUES ($1, $2)", i, fmt.Sprintf("user%d", i))
	}
	for i := 1; i <= 20; i++ {
		var name string
		if err := app.QueryRow(ctx, "SELECT name FROM console_users WHERE id = $1", i).Scan(&name); err != nil || name != fmt.Sprintf("user%d", i) {
			t.Fatalf("read %d: %q %v", i, name, err)
		}
	}
	// The same text five times over the simple protocol: parsed once, then
	// answered from the planner's cache (pgx's prepared statements above
	// are analysed once per Parse).
	for range 5 {
		var name string
		if err := app.QueryRow(ctx, "SELECT name FROM console_users WHERE id = 5", pgx.QueryExecModeSimpleProtocol).Scan(&name); err != nil || name != "user5" {
			t.Fatalf("simple read: %q %v", name, err)
		}
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM console_users").Scan(&n); err != nil || n != 20 {
		t.Fatalf("count: %d %v", n, err)
	}
	if _, err := app.Exec(ctx, "SELECT * FROM console_no_such_table"); sqlState(err) != "42P01" {
		t.Fatalf("missing table: %v", err)
	}

	// Only admin_users may open the console.
	if _, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/shardproxy?sslmode=disable", p.listen)); sqlState(err) != "28000" {
		t.Fatalf("non-admin console login: want 28000, got %v", err)
	}

	var notices []string
	var noticeMu sync.Mutex
	ccfg, err := pgx.ParseConfig(consoleDSN)
	if err != nil {
		t.Fatal(err)
	}
	ccfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		noticeMu.Lock()
		notices = append(notices, n.Message)
		noticeMu.Unlock()
	}
	con, err := pgx.ConnectConfig(ctx, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close(ctx)

	t.Run("psql", func(t *testing.T) {
		out, err := exec.Command("psql", "-X", "-A", "-F", "|", "-h", "127.0.0.1", "-p", strconv.Itoa(listen),
			"-U", "admin", "-d", "shardproxy", "-c", "SHOW POOLS").CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !strings.HasPrefix(lines[0], "database|user|shard|role|addr|cl_active|cl_waiting|sv_active|sv_idle") {
			t.Fatalf("SHOW POOLS header: %q", lines[0])
		}
		for _, sh := range pg.Shards {
			if !strings.Contains(string(out), "postgres|postgres|"+sh.Name+"|primary|"+sh.Primary.Addr()+"|") {
				t.Errorf("no pool row for %s:\n%s", sh.Name, out)
			}
		}
	})

	t.Run("show", func(t *testing.T) {
		pools := consoleRows(t, ctx, con, "SHOW POOLS")
		for _, sh := range pg.Shards {
			r := findRow(pools, map[string]string{"user": "postgres", "database": "postgres", "shard": sh.Name, "role": "primary"})
			if r == nil || atoi(t, r["sv_idle"])+atoi(t, r["sv_active"]) < 1 || r["pool_mode"] != "transaction" || r["pool_size"] != "20" {
				t.Fatalf("SHOW POOLS row for %s: %v (all: %v)", sh.Name, r, pools)
			}
		}

		shards := consoleRows(t, ctx, con, "show shards;")
		if len(shards) != 4 {
			t.Fatalf("SHOW SHARDS: %v", shards)
		}
		if r := findRow(shards, map[string]string{"shard": "shard1", "role": "replica", "addr": pg.Shards[1].Replicas[0].Addr()}); r == nil || r["default"] != "no" {
			t.Fatalf("SHOW SHARDS replica row: %v", shards)
		}
		if r := findRow(shards, map[string]string{"shard": "shard0", "role": "primary"}); r == nil || r["default"] != "yes" {
			t.Fatalf("SHOW SHARDS default shard: %v", shards)
		}

		// Every server connection listed is a live backend of its shard.
		servers := consoleRows(t, ctx, con, "SHOW SERVERS")
		for _, sh := range pg.Shards {
			r := findRow(servers, map[string]string{"shard": sh.Name, "role": "primary", "user": "postgres"})
			if r == nil {
				t.Fatalf("SHOW SERVERS has no connection to %s: %v", sh.Name, servers)
			}
			direct := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
			var found bool
			if err := direct.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", atoi(t, r["remote_pid"])).Scan(&found); err != nil || !found {
				t.Fatalf("server pid %s not on %s: %v", r["remote_pid"], sh.Name, err)
			}
			direct.Close(ctx)
		}

		clients := consoleRows(t, ctx, con, "SHOW CLIENTS")
		if r := findRow(clients, map[string]string{"user": "postgres", "database": "postgres", "state": "idle"}); r == nil {
			t.Fatalf("SHOW CLIENTS: app client missing: %v", clients)
		}
		if r := findRow(clients, map[string]string{"user": "admin", "database": "shardproxy", "state": "active"}); r == nil {
			t.Fatalf("SHOW CLIENTS: console client missing: %v", clients)
		}

		stats := consoleRows(t, ctx, con, "SHOW STATS")
		for _, want := range []map[string]string{
			{"database": "postgres", "route": "single", "shard": "shard0"},
			{"database": "postgres", "route": "single", "shard": "shard1"},
			{"database": "postgres", "route": "multi", "shard": "*"},
			{"database": "postgres", "route": "broadcast", "shard": "*"},
		} {
			if r := findRow(stats, want); r == nil || atoi(t, r["total_query_count"]) < 1 {
				t.Fatalf("SHOW STATS: no %v in %v", want, stats)
			}
		}
		var single int64
		for _, r := range stats {
			if r["route"] == "single" {
				single += atoi(t, r["total_query_count"])
			}
		}
		if single < 45 { // 20 inserts + 25 reads by key
			t.Fatalf("SHOW STATS single-shard requests = %d, want >= 45: %v", single, stats)
		}

		cfg := consoleRows(t, ctx, con, "SHOW CONFIG")
		if r := findRow(cfg, map[string]string{"key": "pool.size"}); r == nil || r["value"] != "20" || r["changeable"] != "yes" {
			t.Fatalf("SHOW CONFIG pool.size: %v", r)
		}
		if r := findRow(cfg, map[string]string{"key": "admin_token"}); r == nil || r["value"] != "********" {
			t.Fatalf("SHOW CONFIG must mask admin_token: %v", r)
		}
		if r := findRow(cfg, map[string]string{"key": "listen"}); r == nil || r["changeable"] != "no" {
			t.Fatalf("SHOW CONFIG listen: %v", r)
		}

		if v := consoleRows(t, ctx, con, "SHOW VERSION"); len(v) != 1 || v[0]["version"] != "shardproxy console-e2e" {
			t.Fatalf("SHOW VERSION: %v", v)
		}
		consoleRows(t, ctx, con, "SHOW HELP")
		noticeMu.Lock()
		help := strings.Join(notices, "\n")
		noticeMu.Unlock()
		if !strings.Contains(help, "SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|SHARDS|CONFIG|VERSION") || !strings.Contains(help, "PAUSE") {
			t.Fatalf("SHOW HELP notice: %q", help)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for cmd, code := range map[string]string{"SELECT 1": "42601", "SHOW TABLES": "42601", "RESUME": "55000"} {
			if _, err := con.Exec(ctx, cmd, pgx.QueryExecModeSimpleProtocol); sqlState(err) != code {
				t.Errorf("%s: want %s, got %v", cmd, code, err)
			}
		}
		// The extended protocol is refused with 0A000; the console stays usable.
		if _, err := con.PgConn().ExecParams(ctx, "SHOW POOLS", nil, nil, nil, nil).Close(); sqlState(err) != "0A000" {
			t.Errorf("extended protocol: want 0A000, got %v", err)
		}
		if v := consoleRows(t, ctx, con, "SHOW VERSION"); len(v) != 1 {
			t.Fatalf("console unusable after refusals: %v", v)
		}
	})

	t.Run("pause_resume", func(t *testing.T) {
		// A transaction is open when PAUSE arrives: PAUSE waits for it.
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE console_users SET name = 'paused' WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		pauser, err := pgx.Connect(ctx, consoleDSN)
		if err != nil {
			t.Fatal(err)
		}
		defer pauser.Close(ctx)
		paused := make(chan error, 1)
		go func() {
			_, err := pauser.Exec(ctx, "PAUSE", pgx.QueryExecModeSimpleProtocol)
			paused <- err
		}()
		state := func() string {
			r := findRow(consoleRows(t, ctx, con, "SHOW STATE"), map[string]string{"key": "paused"})
			return r["value"]
		}
		ctlWait(t, 10*time.Second, "PAUSE requested", func() bool { return state() == "pausing" })
		select {
		case err := <-paused:
			t.Fatalf("PAUSE returned while a transaction was open: %v", err)
		default:
		}

		// A new client's query is held.
		other := connectPgx(t, ctx, appDSN)
		defer other.Close(ctx)
		held := make(chan error, 1)
		go func() {
			var name string
			held <- other.QueryRow(ctx, "SELECT name FROM console_users WHERE id = 2").Scan(&name)
		}()
		ctlWait(t, 10*time.Second, "a client waiting in SHOW CLIENTS", func() bool {
			return findRow(consoleRows(t, ctx, con, "SHOW CLIENTS"), map[string]string{"user": "postgres", "state": "waiting"}) != nil
		})

		// The open transaction ends: PAUSE completes; the held query stays held.
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-paused:
			if err != nil {
				t.Fatalf("PAUSE: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("PAUSE did not return after the transaction ended")
		}
		if s := state(); s != "yes" {
			t.Fatalf("state after PAUSE: %q", s)
		}
		if m := scrape(t, p.adminURL); m["shardproxy_paused"] != 1 {
			t.Fatalf("shardproxy_paused = %v", m["shardproxy_paused"])
		}
		select {
		case err := <-held:
			t.Fatalf("query ran while paused: %v", err)
		default:
		}
		if _, err := con.Exec(ctx, "RESUME", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-held:
			if err != nil {
				t.Fatalf("held query after RESUME: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("held query did not run after RESUME")
		}
		if s := state(); s != "no" {
			t.Fatalf("state after RESUME: %q", s)
		}
	})

	t.Run("reload", func(t *testing.T) {
		if err := os.WriteFile(p.config, []byte(consoleConfig(pg, listen, adminPort, 7)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := con.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if r := findRow(consoleRows(t, ctx, con, "SHOW CONFIG"), map[string]string{"key": "pool.size"}); r["value"] != "7" {
			t.Fatalf("pool.size after RELOAD: %v", r)
		}
		if r := findRow(consoleRows(t, ctx, con, "SHOW POOLS"), map[string]string{"user": "postgres", "shard": "shard0"}); r["pool_size"] != "7" {
			t.Fatalf("pool_size after RELOAD: %v", r)
		}
		// A broken file is refused and the running configuration kept.
		if err := os.WriteFile(p.config, []byte("pool: {size: -3}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := con.Exec(ctx, "RELOAD", pgx.QueryExecModeSimpleProtocol); sqlState(err) != "F0000" {
			t.Fatalf("RELOAD of a broken file: want F0000, got %v", err)
		}
		if err := app.Ping(ctx); err != nil {
			t.Fatalf("app after refused reload: %v", err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// psql, the refused login and the PAUSE test's clients are gone:
		// the app and the console remain.
		var m map[string]float64
		waitFor(t, 10*time.Second, "shardproxy_clients_active == 2", func() bool {
			m = scrape(t, p.adminURL)
			return m["shardproxy_clients_active"] == 2
		})
		checks := []struct {
			series string
			min    float64
		}{
			{`shardproxy_query_duration_seconds_count{kind="single",shard="shard0"}`, 1},
			{`shardproxy_query_duration_seconds_count{kind="single",shard="shard1"}`, 1},
			{`shardproxy_query_duration_seconds_count{kind="multi",shard="*"}`, 1},
			{`shardproxy_query_duration_seconds_count{kind="broadcast",shard="*"}`, 1},
			{`shardproxy_errors_total{class="42"}`, 1},
			{`shardproxy_errors_total{class="28"}`, 1},
			{`shardproxy_errors_total{class="0A"}`, 1},
			{`shardproxy_pool_wait_seconds_count{role="primary",shard="shard0"}`, 1},
			{`shardproxy_pool_wait_seconds_count{role="primary",shard="shard1"}`, 1},
			{`shardproxy_parse_cache_hits_total`, 4},
			{`shardproxy_parse_cache_misses_total`, 3},
			{`shardproxy_raft_leader`, 1},
			{`shardproxy_raft_term`, 1},
			{`shardproxy_raft_commit_index`, 1},
			{`shardproxy_topology_version`, 1},
		}
		for _, c := range checks {
			if v, ok := m[c.series]; !ok || v < c.min {
				t.Errorf("%s = %v (present %v), want >= %v", c.series, v, ok, c.min)
			}
		}
		idle0 := m[`shardproxy_server_connections{role="primary",shard="shard0",state="idle"}`] +
			m[`shardproxy_server_connections{role="primary",shard="shard0",state="active"}`]
		if idle0 < 1 {
			t.Errorf("no server connections reported for shard0's primary: %v", idle0)
		}
		if v, ok := m[`shardproxy_server_connections{role="replica",shard="shard1",state="idle"}`]; !ok || v != 0 {
			t.Errorf("replica series (no replica pools yet) = %v present %v, want 0", v, ok)
		}
		// The health monitor reaches both replicas; their lag is exported.
		waitFor(t, 10*time.Second, "both replicas up with a lag in bytes", func() bool {
			m = scrape(t, p.adminURL)
			for _, sh := range pg.Shards {
				labels := fmt.Sprintf(`{replica="%s",shard="%s"}`, sh.Replicas[0].Addr(), sh.Name)
				if _, ok := m["shardproxy_replica_lag_bytes"+labels]; !ok || m["shardproxy_replica_up"+labels] != 1 {
					return false
				}
				if _, ok := m["shardproxy_replica_lag_seconds"+labels]; !ok {
					return false
				}
			}
			return true
		})
		if m["shardproxy_clients_waiting"] != 0 || m["shardproxy_paused"] != 0 {
			t.Errorf("clients_waiting %v, paused %v, want 0", m["shardproxy_clients_waiting"], m["shardproxy_paused"])
		}
		// Two requests of "single" kind more → the count grows by two.
		before := m[`shardproxy_query_duration_seconds_count{kind="single",shard="shard0"}`] + m[`shardproxy_query_duration_seconds_count{kind="single",shard="shard1"}`]
		for _, id := range []int{3, 4} {
			var name string
			if err := app.QueryRow(ctx, "SELECT name FROM console_users WHERE id = $1", id).Scan(&name); err != nil {
				t.Fatal(err)
			}
		}
		m = scrape(t, p.adminURL)
		after := m[`shardproxy_query_duration_seconds_count{kind="single",shard="shard0"}`] + m[`shardproxy_query_duration_seconds_count{kind="single",shard="shard1"}`]
		if after-before != 2 {
			t.Errorf("single-shard request count grew by %v, want 2", after-before)
		}
		for k := range m {
			if strings.Contains(k, "console_users") || strings.Contains(k, "127.0.0.1:") && strings.HasPrefix(k, "shardproxy_") && !strings.HasPrefix(k, "shardproxy_replica_") {
				t.Errorf("unbounded label value in %s", k)
			}
		}
	})
}
