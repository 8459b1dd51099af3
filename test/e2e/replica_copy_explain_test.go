package e2e

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// COPY … TO STDOUT, EXPLAIN and cursors follow the read/write splitting
// rules of other reads (docs/replicas.md). Where each ran is told by what
// it returns: replay is paused on the replicas and the primaries get rows
// (and a view, a column) the replicas never see, so an answer without
// them came from a replica and one with them from a primary.

// replicaUnlimitedLag lets paused replicas keep their reads.
func replicaUnlimitedLag(r *config.Replicas) {
	noPrimaryReads(r)
	r.MaxLagBytes, r.MaxLag = -1, config.Duration(-time.Second)
}

// copyOut runs COPY … TO STDOUT through c and returns its lines.
func copyOut(t *testing.T, ctx context.Context, c *pgx.Conn, sql string) []string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &buf, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// queryText runs sql through c and returns its rows' first columns, one
// line each.
func queryText(t *testing.T, ctx context.Context, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.Join(lines, "\n")
}

var actualRows = regexp.MustCompile(`actual rows=(\d+)`)

// countLines counts the lines containing s.
func countLines(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func pauseReplay(t *testing.T, ctx context.Context, replicas ...*pgcluster.Instance) {
	t.Helper()
	for _, r := range replicas {
		execOn(t, ctx, r, "SELECT pg_wal_replay_pause()")
		t.Cleanup(func() { execOn(t, context.Background(), r, "SELECT pg_wal_replay_resume()") })
	}
}

func TestReplicaCopyExplain(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl := pgcluster.StartT(t, pgcluster.Options{Replicas: 1})
	sh := cl.Shards[0]
	rep := sh.Replicas[0]
	execOn(t, ctx, sh.Primary, `CREATE TABLE items (id int PRIMARY KEY, v text); CREATE SEQUENCE seq;
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 10) g;
		CREATE VIEW marker AS SELECT 'before'::text AS m`)
	if err := cl.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, cl, replicaConfig(replicaUnlimitedLag))
	c := connectPgx(t, ctx, p.dsn("postgres"))
	waitReplicaReads(t, ctx, c, sh)
	pauseReplay(t, ctx, rep)
	execOn(t, ctx, sh.Primary, `INSERT INTO items SELECT g, 'late' FROM generate_series(11, 15) g;
		CREATE OR REPLACE VIEW marker AS SELECT 'after'::text AS m`)

	// Reads: on the replica.
	if got := copyOut(t, ctx, c, "COPY items TO STDOUT"); len(got) != 10 {
		t.Errorf("COPY items TO STDOUT: %d rows, want the replica's 10", len(got))
	}
	if got := copyOut(t, ctx, c, "COPY (SELECT inet_server_port()) TO STDOUT"); got[0] != fmt.Sprint(rep.Port) {
		t.Errorf("COPY (SELECT inet_server_port()) ran on port %s, want the replica's %d", got[0], rep.Port)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		if got := queryText(t, ctx, c, "EXPLAIN (VERBOSE, COSTS OFF) SELECT m FROM marker", mode); !strings.Contains(got, "before") {
			t.Errorf("EXPLAIN (mode %v) did not run on the replica:\n%s", mode, got)
		}
	}
	if got := queryText(t, ctx, c, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM items"); actualRows.FindStringSubmatch(got)[1] != "10" {
		t.Errorf("EXPLAIN ANALYZE of a read did not run on the replica:\n%s", got)
	}
	// EXPLAIN of a write without ANALYZE only plans it: a replica can.
	if got := queryText(t, ctx, c, "EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO items SELECT 100, m FROM marker"); !strings.Contains(got, "before") {
		t.Errorf("EXPLAIN INSERT did not run on the replica:\n%s", got)
	}

	// Writes: on the primary.
	other := connectPgx(t, ctx, p.dsn("postgres"))
	if got := queryText(t, ctx, other, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) INSERT INTO items VALUES (100, 'explained')"); !strings.Contains(got, "Insert on items") {
		t.Errorf("EXPLAIN ANALYZE INSERT:\n%s", got)
	}
	if got := copyOut(t, ctx, other, "COPY (SELECT nextval('seq')) TO STDOUT"); got[0] != "1" {
		t.Errorf("COPY (SELECT nextval('seq')): %q", got)
	}
	if _, err := other.PgConn().CopyFrom(ctx, strings.NewReader("200\tcopied\n"), "COPY items FROM STDIN"); err != nil {
		t.Fatalf("COPY FROM STDIN: %v", err)
	}
	// Read-your-writes: the session that wrote reads from the primary
	// (the paused replica never replays its writes), others still from
	// the replica.
	got := copyOut(t, ctx, other, "COPY items TO STDOUT")
	if len(got) != 17 || countLines(got, "explained") != 1 || countLines(got, "copied") != 1 {
		t.Errorf("COPY after writes in the same session: %d rows %q, want the primary's 17 with its own writes", len(got), got)
	}
	if got := copyOut(t, ctx, c, "COPY items TO STDOUT"); len(got) != 10 {
		t.Errorf("COPY in a session that did not write: %d rows, want the replica's 10", len(got))
	}
	// target_role = primary.
	mustExec(t, ctx, c, "SET shardproxy.target_role = primary", pgx.QueryExecModeSimpleProtocol)
	if got := copyOut(t, ctx, c, "COPY items TO STDOUT"); len(got) != 17 {
		t.Errorf("COPY with target_role = primary: %d rows, want the primary's 17", len(got))
	}
	if got := queryText(t, ctx, c, "EXPLAIN (VERBOSE, COSTS OFF) SELECT m FROM marker"); !strings.Contains(got, "after") {
		t.Errorf("EXPLAIN with target_role = primary did not run on the primary:\n%s", got)
	}
	// A READ ONLY transaction: on the replica (in a new session: the
	// one above used the primary, so read-your-writes keeps it there).
	c = connectPgx(t, ctx, p.dsn("postgres"))
	tx, err := c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	if got := copyOut(t, ctx, c, "COPY (SELECT v FROM items) TO STDOUT"); len(got) != 10 {
		t.Errorf("COPY in a READ ONLY transaction: %d rows, want the replica's 10", len(got))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// shardedReplicas is two shards with a replica each behind a proxy
// (paused replicas keep their reads: replicaUnlimitedLag), with users
// 1..100 written through the proxy and replicated.
type shardedReplicas struct {
	cl      *pgcluster.Cluster
	p       *runningProxy
	shardOf func(int64) string
	byName  map[string]*pgcluster.Shard
	keyOn   map[string]int64 // a key on each shard
	role    map[int]string   // port → "primary s1" / "replica s1"
}

func startShardedReplicas(t *testing.T, ctx context.Context) *shardedReplicas {
	t.Helper()
	cl := pgcluster.StartT(t, pgcluster.Options{Shards: 2, Replicas: 1})
	for _, sh := range cl.Shards {
		execOn(t, ctx, sh.Primary, `CREATE TABLE users (id bigint PRIMARY KEY, name text)`)
	}
	var cfg config.Config
	p := startProxy(t, cl, func(c *config.Config) {
		c.Sharding = shardedSpec
		replicaConfig(replicaUnlimitedLag)(c)
		cfg = *c
	})
	snap, err := cfg.Topology()
	if err != nil {
		t.Fatal(err)
	}
	e := &shardedReplicas{cl: cl, p: p, byName: map[string]*pgcluster.Shard{}, keyOn: map[string]int64{}, role: map[int]string{}}
	e.shardOf = func(k int64) string {
		s, err := router.For(snap).ShardForKey("users", router.IntKey(k))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, sh := range cl.Shards {
		e.byName[sh.Name] = sh
		e.role[sh.Primary.Port] = "primary " + sh.Name
		e.role[sh.Replicas[0].Port] = "replica " + sh.Name
	}
	for k := int64(1); len(e.keyOn) < 2; k++ {
		if _, ok := e.keyOn[e.shardOf(k)]; !ok {
			e.keyOn[e.shardOf(k)] = k
		}
	}
	seedUsersReplicated(t, ctx, cl, p, 100)
	return e
}

// seedUsersReplicated inserts users 1..n (named u1…) through p and waits
// until every replica of cl has replayed them.
func seedUsersReplicated(t *testing.T, ctx context.Context, cl *pgcluster.Cluster, p *runningProxy, n int) {
	t.Helper()
	values := make([]string, n)
	for i := range values {
		values[i] = fmt.Sprintf("(%d, 'u%d')", i+1, i+1)
	}
	mustExec(t, ctx, connectPgx(t, ctx, p.dsn("postgres")), "INSERT INTO users VALUES "+strings.Join(values, ", "), pgx.QueryExecModeSimpleProtocol)
	if err := cl.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitReplicaPointReads waits until point reads through c reach the
// replica of every shard (the proxy's first health checks passed).
func (e *shardedReplicas) waitReplicaPointReads(t *testing.T, ctx context.Context, c *pgx.Conn) {
	t.Helper()
	waitFor(t, 15*time.Second, "prepared point reads reaching the replicas of both shards", func() bool {
		for s, k := range e.keyOn {
			if serverPort(t, ctx, c, "SELECT inet_server_port() FROM users WHERE id = $1", k) != e.byName[s].Replicas[0].Port {
				return false
			}
		}
		return true
	})
}

func TestReplicaShardedCopyExplainCursor(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	e := startShardedReplicas(t, ctx)
	cl, p, byName, keyOn := e.cl, e.p, e.byName, e.keyOn
	c := connectPgx(t, ctx, p.dsn("postgres"))
	e.waitReplicaPointReads(t, ctx, c)
	// What only the primaries have: a 'late' row each (written there
	// directly, so no proxy session has it to read back) and a column.
	var replicas []*pgcluster.Instance
	for _, sh := range cl.Shards {
		replicas = append(replicas, sh.Replicas[0])
	}
	pauseReplay(t, ctx, replicas...)
	lateID := map[string]int64{}
	for i, sh := range cl.Shards {
		lateID[sh.Name] = int64(100001 + i)
		execOn(t, ctx, sh.Primary, fmt.Sprintf("INSERT INTO users VALUES (%d, 'late'); ALTER TABLE users ADD COLUMN added int", lateID[sh.Name]))
	}

	t.Run("COPY", func(t *testing.T) {
		if got := copyOut(t, ctx, c, "COPY users TO STDOUT"); len(got) != 100 || countLines(got, "late") != 0 {
			t.Errorf("COPY users TO STDOUT over both shards: %d rows (%d late), want the replicas' 100", len(got), countLines(got, "late"))
		}
		if got := copyOut(t, ctx, c, "COPY (SELECT id, name FROM users) TO STDOUT WITH (FORMAT csv)"); len(got) != 100 {
			t.Errorf("COPY (SELECT …) over both shards: %d rows, want the replicas' 100", len(got))
		}
		for s, k := range keyOn {
			got := copyOut(t, ctx, c, fmt.Sprintf("COPY (SELECT inet_server_port() FROM users WHERE id = %d) TO STDOUT", k))
			if got[0] != fmt.Sprint(byName[s].Replicas[0].Port) {
				t.Errorf("COPY of key %d on shard %s ran on port %s, want its replica's %d", k, s, got[0], byName[s].Replicas[0].Port)
			}
		}
	})

	t.Run("EXPLAIN", func(t *testing.T) {
		got := queryText(t, ctx, c, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM users WHERE name = 'late'")
		counts := actualRows.FindAllStringSubmatch(got, -1)
		if len(counts) < 2 {
			t.Fatalf("EXPLAIN ANALYZE over both shards:\n%s", got)
		}
		for _, m := range counts {
			if m[1] != "0" {
				t.Errorf("EXPLAIN ANALYZE found a late row (ran on a primary):\n%s", got)
				break
			}
		}
		got = queryText(t, ctx, c, "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM users", pgx.QueryExecModeSimpleProtocol)
		if strings.Count(got, "Output: id, name") < 2 || strings.Contains(got, "added") {
			t.Errorf("EXPLAIN over both shards did not run on the replicas:\n%s", got)
		}
	})

	t.Run("cursors", func(t *testing.T) {
		fetchAll := func(c *pgx.Conn, begin string) []string {
			mustExec(t, ctx, c, begin)
			mustExec(t, ctx, c, "DECLARE cur CURSOR FOR SELECT id, name FROM users ORDER BY id")
			var names []string
			for _, fetch := range []string{"FETCH 30 FROM cur", "FETCH ALL FROM cur"} {
				rows, err := c.Query(ctx, fetch)
				if err != nil {
					t.Fatalf("%s: %v", fetch, err)
				}
				for rows.Next() {
					var id int64
					var name string
					if err := rows.Scan(&id, &name); err != nil {
						t.Fatal(err)
					}
					names = append(names, fmt.Sprintf("%d %s", id, name))
				}
				if err := rows.Err(); err != nil {
					t.Fatalf("%s: %v", fetch, err)
				}
			}
			mustExec(t, ctx, c, "COMMIT")
			return names
		}
		if got := fetchAll(c, "BEGIN READ ONLY"); len(got) != 100 || countLines(got, "late") != 0 {
			t.Errorf("cross-shard cursor in a READ ONLY transaction: %d rows (%d late), want the replicas' 100", len(got), countLines(got, "late"))
		}
		// (A read-write transaction uses the primaries, and then
		// read-your-writes keeps the session's reads there: new sessions
		// for it and for the next cases.)
		if got := fetchAll(connectPgx(t, ctx, p.dsn("postgres")), "BEGIN"); len(got) != 102 || countLines(got, "late") != 2 {
			t.Errorf("cross-shard cursor in a read-write transaction: %d rows (%d late), want the primaries' 102", len(got), countLines(got, "late"))
		}
		// A cursor on one shard in a READ ONLY transaction.
		for s, k := range keyOn {
			mustExec(t, ctx, c, "BEGIN READ ONLY")
			mustExec(t, ctx, c, fmt.Sprintf("DECLARE one CURSOR FOR SELECT inet_server_port() FROM users WHERE id = %d", k))
			if port := serverPort(t, ctx, c, "FETCH 1 FROM one"); port != byName[s].Replicas[0].Port {
				t.Errorf("cursor on shard %s ran on port %d, want its replica's %d", s, port, byName[s].Replicas[0].Port)
			}
			mustExec(t, ctx, c, "COMMIT")
		}
		// Read-your-writes: after a write on shard A, the cursor reads A
		// from its primary (with A's late row and the write) and the
		// other shard from its replica.
		var a, b string
		for s := range keyOn {
			if a == "" {
				a = s
			} else {
				b = s
			}
		}
		var mine int64
		for k := int64(1000); mine == 0; k++ {
			if e.shardOf(k) == a {
				mine = k
			}
		}
		mustExec(t, ctx, c, "INSERT INTO users (id, name) VALUES ($1, 'mine')", mine)
		got := fetchAll(c, "BEGIN READ ONLY")
		wantLate := fmt.Sprintf("%d late", lateID[a])
		if len(got) != 102 || countLines(got, "mine") != 1 || countLines(got, wantLate) != 1 || countLines(got, fmt.Sprintf("%d late", lateID[b])) != 0 {
			t.Errorf("cursor after a write on shard %s: %d rows %v; want 102: the replica of %s and the primary of %s (with %q and the write)",
				a, len(got), got[max(0, len(got)-4):], b, a, wantLate)
		}
	})
}
