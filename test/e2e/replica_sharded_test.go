package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// Reads to replicas over several shards: prepared statements (pgx's
// default extended protocol) and reads the proxy runs itself (scatter,
// merged aggregates) follow the same rules as over one shard. Where a
// statement ran is read back with inet_server_port() and the replicas'
// own scan counters.

func TestReplicaShardedReads(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	e := startShardedReplicas(t, ctx)
	cl, p, shardOf, byName, keyOn, role := e.cl, e.p, e.shardOf, e.byName, e.keyOn, e.role
	c := connectPgx(t, ctx, p.dsn("postgres"))
	pointRead := "SELECT inet_server_port() FROM users WHERE id = $1"
	e.waitReplicaPointReads(t, ctx, c)
	scansBefore := map[string]int64{}
	for _, sh := range cl.Shards {
		scansBefore[sh.Name] = userScans(t, ctx, sh.Replicas[0])
	}

	t.Run("prepared point reads go to their shard's replica", func(t *testing.T) {
		got := map[string]int{}
		for k := int64(1); k <= 60; k++ {
			port := serverPort(t, ctx, c, pointRead, k)
			if want := byName[shardOf(k)].Replicas[0].Port; port != want {
				t.Errorf("key %d read on %s, want %s", k, role[port], role[want])
			}
			got[role[port]]++
		}
		t.Logf("point reads per server: %v", got)
	})

	t.Run("scatter reads and merged aggregates read the replicas", func(t *testing.T) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			rows, err := c.Query(ctx, "SELECT inet_server_port() FROM users", mode)
			if err != nil {
				t.Fatal(err)
			}
			ports, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err != nil || len(ports) != 100 {
				t.Fatalf("%v: %d rows, %v", mode, len(ports), err)
			}
			seen := map[string]int{}
			for _, port := range ports {
				seen[role[int(port)]]++
			}
			if len(seen) != 2 || seen["replica "+cl.Shards[0].Name] == 0 || seen["replica "+cl.Shards[1].Name] == 0 {
				t.Errorf("%v: scatter read rows per server %v, want both replicas only", mode, seen)
			}
		}
	})

	t.Run("target_role primary keeps every read on the primaries", func(t *testing.T) {
		mustExec(t, ctx, c, "SET shardproxy.target_role = 'primary'", pgx.QueryExecModeSimpleProtocol) // PRIMARY is a reserved word
		defer mustExec(t, ctx, c, "RESET shardproxy.target_role", pgx.QueryExecModeSimpleProtocol)
		for s, k := range keyOn {
			if port := serverPort(t, ctx, c, pointRead, k); port != byName[s].Primary.Port {
				t.Errorf("point read of %d on %s", k, role[port])
			}
		}
		rows, err := c.Query(ctx, "SELECT inet_server_port() FROM users")
		if err != nil {
			t.Fatal(err)
		}
		ports, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range ports {
			if role[int(port)][:7] != "primary" {
				t.Fatalf("scatter read row from %s", role[int(port)])
			}
		}
	})

	// From here on replay is paused on both replicas: only a replica read
	// can return data older than the session's own writes.
	for _, sh := range cl.Shards {
		execOn(t, ctx, sh.Replicas[0], "SELECT pg_wal_replay_pause()")
		defer execOn(t, ctx, sh.Replicas[0], "SELECT pg_wal_replay_resume()")
	}

	t.Run("a batch that reads then writes a shard writes on its primary", func(t *testing.T) {
		sA, sB := cl.Shards[0].Name, cl.Shards[1].Name
		kA, kB := keyOn[sA], keyOn[sB]
		// Fresh sessions (no read-your-writes marks): the reads go to the
		// paused replicas. The second batch reads shard B after A, so A's
		// replica connection is held, not active, when the write arrives.
		for i, reads := range [][]int64{{kA}, {kA, kB}} {
			bc := connectPgx(t, ctx, p.dsn("postgres"))
			b := &pgx.Batch{}
			for _, k := range reads {
				b.Queue(pointRead, k)
			}
			b.Queue("UPDATE users SET name = $2 WHERE id = $1 RETURNING inet_server_port()", kA, "batch")
			br := bc.SendBatch(ctx, b)
			for j, k := range reads {
				var port int
				if err := br.QueryRow().Scan(&port); err != nil {
					t.Fatalf("batch %d read %d: %v", i, j, err)
				}
				if want := byName[shardOf(k)].Replicas[0].Port; port != want {
					t.Errorf("batch %d: read of %d on %s, want %s", i, k, role[port], role[want])
				}
			}
			var port int
			if err := br.QueryRow().Scan(&port); err != nil {
				t.Fatalf("batch %d: write after a replica read: %v", i, err)
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
			if port != byName[sA].Primary.Port {
				t.Errorf("batch %d: write ran on %s", i, role[port])
			}
			var name string
			if err := bc.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", kA).Scan(&name); err != nil || name != "batch" {
				t.Fatalf("batch %d: read after the batch: %q %v, want the batch's write", i, name, err)
			}
			mustExec(t, ctx, bc, "UPDATE users SET name = 'x' WHERE id = $1", kA)
		}
		// A write on A, a replica read of B, then a write on B: the batch
		// becomes the proxy's transaction (two-phase commit at the Sync)
		// while B's replica connection is the active one; it is given
		// back, the writes run on the primaries and both commit.
		bc := connectPgx(t, ctx, p.dsn("postgres"))
		b := &pgx.Batch{}
		b.Queue("UPDATE users SET name = $2 WHERE id = $1 RETURNING inet_server_port()", kA, "both")
		b.Queue(pointRead, kB)
		b.Queue("UPDATE users SET name = $2 WHERE id = $1 RETURNING inet_server_port()", kB, "both")
		b.Queue(pointRead, kA)
		br := bc.SendBatch(ctx, b)
		var ports [4]int
		for i := range ports {
			if err := br.QueryRow().Scan(&ports[i]); err != nil {
				t.Fatalf("batch over two shards, statement %d: %v", i, err)
			}
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		if ports[0] != byName[sA].Primary.Port || ports[2] != byName[sB].Primary.Port {
			t.Errorf("writes of the two-shard batch ran on %s and %s", role[ports[0]], role[ports[2]])
		}
		if ports[1] != byName[sB].Replicas[0].Port || ports[3] != byName[sA].Primary.Port {
			t.Errorf("reads of the two-shard batch ran on %s (before the transaction) and %s (inside it)", role[ports[1]], role[ports[3]])
		}
		for _, k := range []int64{kA, kB} {
			var name string
			if err := bc.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", k).Scan(&name); err != nil || name != "both" {
				t.Fatalf("user %d after the two-shard batch: %q %v", k, name, err)
			}
		}
		// B's replica connection went back to the pool outside any
		// transaction block.
		rc := connectPgx(t, ctx, byName[sB].Replicas[0].DSN("postgres"))
		var open int
		if err := rc.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'").Scan(&open); err != nil || open != 0 {
			t.Fatalf("replica of %s has %d connections idle in a transaction after the batch (%v)", sB, open, err)
		}
	})

	t.Run("an UPDATE's subquery run first reads the primaries", func(t *testing.T) {
		// Written by another session: the paused replicas lack it.
		writer := connectPgx(t, ctx, p.dsn("postgres"))
		mustExec(t, ctx, writer, "INSERT INTO users VALUES (901, 'flagged')")
		fresh := connectPgx(t, ctx, p.dsn("postgres"))
		var n int
		if err := fresh.QueryRow(ctx, "SELECT count(*) FROM users WHERE name = 'flagged'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("fresh session's scatter read: %d, %v; want 0 from the paused replicas", n, err)
		}
		// max() over every shard is merged by the proxy: the subquery is
		// pulled out and must not read the stale replicas.
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			tag, err := fresh.Exec(ctx, "UPDATE users SET name = name || '!' WHERE id = (SELECT max(id) FROM users WHERE name LIKE 'flagged%')", mode)
			if err != nil || tag.String() != "UPDATE 1" {
				t.Errorf("%v: UPDATE with a pulled-out subquery: %q, %v; want UPDATE 1 (the subquery on the primaries)", mode, tag, err)
			}
		}
		var name string
		if err := writer.QueryRow(ctx, "SELECT name FROM users WHERE id = 901").Scan(&name); err != nil || name != "flagged!!" {
			t.Errorf("user 901: %q, %v; want flagged!!", name, err)
		}
	})

	t.Run("read-your-writes per shard with replay paused", func(t *testing.T) {
		for k := int64(1000); k < 1020; k++ {
			mode := pgx.QueryExecModeCacheStatement
			if k%2 == 1 {
				mode = pgx.QueryExecModeSimpleProtocol
			}
			mustExec(t, ctx, c, "INSERT INTO users VALUES ($1, 'mine')", mode, k)
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", mode, k).Scan(&n); err != nil || n != 1 {
				t.Fatalf("point read after write of %d: %d, %v", k, n, err)
			}
			if err := c.QueryRow(ctx, "SELECT count(*) FROM users WHERE id >= 1000", mode).Scan(&n); err != nil || n != int(k-999) {
				t.Fatalf("scatter count after write of %d: %d, %v, want %d", k, n, err, k-999)
			}
		}
		// Another session still reads the paused replicas: its scatter
		// count(*) does not see the new rows.
		other := connectPgx(t, ctx, p.dsn("postgres"))
		var n int
		if err := other.QueryRow(ctx, "SELECT count(*) FROM users WHERE id >= 1000").Scan(&n); err != nil || n != 0 {
			t.Errorf("other session's scatter count: %d, %v; want 0 from the paused replicas", n, err)
		}
	})

	// The replicas' own counters agree (a backend reports its statistics
	// when it exits at the latest: stopping the proxy closes its server
	// connections).
	p.stop(t, 10*time.Second)
	waitFor(t, 10*time.Second, "scan counters on both replicas", func() bool {
		for _, sh := range cl.Shards {
			if userScans(t, ctx, sh.Replicas[0])-scansBefore[sh.Name] < 20 {
				return false
			}
		}
		return true
	})
}

// userScans returns the scans (sequential and index) of users on in.
func userScans(t testing.TB, ctx context.Context, in *pgcluster.Instance) int64 {
	c, err := pgx.Connect(ctx, in.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(ctx, "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables WHERE relname = 'users'").Scan(&n); err != nil {
		t.Fatalf("%s: %v", in.Name, err)
	}
	return n
}
