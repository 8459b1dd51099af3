package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// Read/write splitting over real streaming replicas: where each statement
// ran is read back with inet_server_port() (a read-only function the
// proxy lets go to replicas) and with the servers' own scan counters.

// replicaConfig turns on fast health checks; mutate adjusts further.
func replicaConfig(mutate func(*config.Replicas)) func(*config.Config) {
	return func(c *config.Config) {
		c.Replicas.CheckInterval = config.Duration(50 * time.Millisecond)
		c.Replicas.CheckTimeout = config.Duration(time.Second)
		c.Replicas.MaxBackoff = config.Duration(time.Second)
		if mutate != nil {
			mutate(&c.Replicas)
		}
	}
}

func noPrimaryReads(r *config.Replicas) { f := false; r.PrimaryReads = &f }

// execOn runs sql on one server directly.
func execOn(t testing.TB, ctx context.Context, in *pgcluster.Instance, sql string) {
	t.Helper()
	c, err := pgx.Connect(ctx, in.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect %s: %v", in.Name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("%s on %s: %v", sql, in.Name, err)
	}
}

// serverPort runs sql (whose first column is inet_server_port()) through c.
func serverPort(t testing.TB, ctx context.Context, c *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var port int
	if err := c.QueryRow(ctx, sql, args...).Scan(&port); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return port
}

// newSessionPort runs SELECT inet_server_port() in a new session through
// the proxy at dsn: under balance sticky each session keeps its server, so
// probing which servers take reads needs a session per probe.
func newSessionPort(t testing.TB, ctx context.Context, dsn string) int {
	t.Helper()
	c := connectPgx(t, ctx, dsn)
	defer c.Close(context.Background())
	return serverPort(t, ctx, c, "SELECT inet_server_port()")
}

// portsOf maps each instance's port to its name.
func portsOf(sh *pgcluster.Shard) map[int]string {
	m := map[int]string{sh.Primary.Port: "primary"}
	for _, r := range sh.Replicas {
		m[r.Port] = r.Name
	}
	return m
}

// waitReplicaReads waits until a read through c lands on a replica (the
// proxy's first health checks have passed).
func waitReplicaReads(t *testing.T, ctx context.Context, c *pgx.Conn, sh *pgcluster.Shard) {
	t.Helper()
	waitFor(t, 10*time.Second, "reads reaching a replica", func() bool {
		return serverPort(t, ctx, c, "SELECT inet_server_port()") != sh.Primary.Port
	})
}

func TestReplicaReadWriteSplit(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl := pgcluster.StartT(t, pgcluster.Options{Replicas: 2})
	sh := cl.Shards[0]
	execOn(t, ctx, sh.Primary, `CREATE TABLE items (id int PRIMARY KEY, v text); CREATE SEQUENCE seq;
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g`)
	if err := cl.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, cl, replicaConfig(func(r *config.Replicas) {
		noPrimaryReads(r)
		r.Balance = config.BalanceRoundRobin
	}))
	c := connectPgx(t, ctx, p.dsn("postgres"))
	waitReplicaReads(t, ctx, c, sh)
	ports := portsOf(sh)
	outer := t

	t.Run("balance sticky: each session keeps one replica, sessions spread", func(t *testing.T) {
		sp := startProxy(t, cl, replicaConfig(noPrimaryReads)) // the default balance
		first := connectPgx(t, ctx, sp.dsn("postgres"))
		waitReplicaReads(t, ctx, first, sh)
		perReplica := map[string]int{}
		for s := range 6 {
			sc := connectPgx(t, ctx, sp.dsn("postgres"))
			got := map[string]int{}
			for i := range 10 {
				mode := pgx.QueryExecModeCacheStatement
				if i%2 == 1 {
					mode = pgx.QueryExecModeSimpleProtocol
				}
				got[ports[serverPort(t, ctx, sc, "SELECT inet_server_port() FROM items WHERE id = $1", mode, i+1)]]++
			}
			if len(got) != 1 || got["primary"] != 0 {
				t.Errorf("session %d read from %v: want all 10 reads on one replica", s, got)
			}
			for name := range got {
				perReplica[name]++
			}
		}
		if perReplica[sh.Replicas[0].Name] != 3 || perReplica[sh.Replicas[1].Name] != 3 {
			t.Errorf("sessions per replica %v: want 3 and 3", perReplica)
		}
	})

	t.Run("balance round_robin: reads spread over the replicas", func(t *testing.T) {
		scansBefore := replicaScans(t, ctx, sh)
		got := map[string]int{}
		for i := range 60 {
			// Alternate the extended protocol (pgx default) and the simple one.
			var port int
			var n int
			var err error
			if i%2 == 0 {
				err = c.QueryRow(ctx, "SELECT inet_server_port(), count(*) FROM items WHERE v <> $1", "x").Scan(&port, &n)
			} else {
				err = c.QueryRow(ctx, "SELECT inet_server_port(), count(*) FROM items", pgx.QueryExecModeSimpleProtocol).Scan(&port, &n)
			}
			if err != nil || n != 100 {
				for _, in := range append([]*pgcluster.Instance{sh.Primary}, sh.Replicas...) {
					dc, _ := pgx.Connect(ctx, in.DSN("postgres"))
					var info string
					err := dc.QueryRow(ctx, "SELECT concat_ws(' ', to_regclass('items')::text, pg_last_wal_replay_lsn()::text, pg_current_wal_lsn()::text, (SELECT status || sender_port FROM pg_stat_wal_receiver))").Scan(&info)
					t.Logf("%s port %d: %s %v", in.Name, in.Port, info, err)
					dc.Close(ctx)
				}
				t.Fatalf("read %d: n=%d err=%v", i, n, err)
			}
			got[ports[port]]++
		}
		t.Logf("reads per server: %v", got)
		if got["primary"] != 0 || got[sh.Replicas[0].Name] < 20 || got[sh.Replicas[1].Name] < 20 {
			t.Errorf("reads per server %v: want every read on a replica, spread round robin", got)
		}
		// The servers' own counters agree: both replicas scanned items.
		// (A backend reports its statistics when it exits at the latest:
		// stopping the proxy closes its server connections.)
		outer.Cleanup(func() {
			p.stop(t, 10*time.Second)
			waitFor(t, 10*time.Second, "seq_scan counters on both replicas", func() bool {
				after := replicaScans(t, ctx, sh)
				return after[0]-scansBefore[0] >= 20 && after[1]-scansBefore[1] >= 20
			})
		})
	})

	t.Run("writes, locking reads and nextval go to the primary", func(t *testing.T) {
		for _, q := range []string{
			"SELECT inet_server_port() FROM items WHERE id = 1 FOR UPDATE",
			"SELECT inet_server_port() FROM items WHERE id = 1 FOR SHARE",
			"SELECT inet_server_port() FROM (SELECT nextval('seq')) s",
			"SELECT inet_server_port() FROM (SELECT setval('seq', 10)) s",
			"WITH w AS (UPDATE items SET v = v WHERE id = 2 RETURNING id) SELECT inet_server_port() FROM w",
			"INSERT INTO items VALUES (1000 + (random() * 1000000)::int, 'w') RETURNING inet_server_port()",
		} {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
				if port := serverPort(t, ctx, c, q, mode); port != sh.Primary.Port {
					t.Errorf("%s (%v) ran on %s, want the primary", q, mode, ports[port])
				}
			}
		}
		// A pipelined batch that reads and then writes: the write reaches the primary.
		b := &pgx.Batch{}
		b.Queue("SELECT inet_server_port()")
		b.Queue("INSERT INTO items VALUES (5000, 'batch') RETURNING inet_server_port()")
		br := c.SendBatch(ctx, b)
		var p1, p2 int
		if err := br.QueryRow().Scan(&p1); err != nil {
			t.Fatal(err)
		}
		if err := br.QueryRow().Scan(&p2); err != nil {
			t.Fatalf("write after a replica read in one batch: %v", err)
		}
		br.Close()
		if p2 != sh.Primary.Port {
			t.Errorf("batched write ran on %s", ports[p2])
		}
		// Unknown functions count as writes.
		if _, err := c.Exec(ctx, "CREATE FUNCTION touch() RETURNS int LANGUAGE sql AS 'SELECT 1'"); err != nil {
			t.Fatal(err)
		}
		if port := serverPort(t, ctx, c, "SELECT inet_server_port() FROM (SELECT touch()) s"); port != sh.Primary.Port {
			t.Errorf("unknown function ran on %s", ports[port])
		}
	})

	t.Run("BEGIN READ ONLY goes to a replica, other transactions to the primary", func(t *testing.T) {
		waitReplicaReads(t, ctx, c, sh) // the writes above are replayed (read-your-writes)
		tx, err := c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		if port := serverPort(t, ctx, tx.Conn(), "SELECT inet_server_port()"); port == sh.Primary.Port {
			t.Errorf("READ ONLY transaction on the primary")
		}
		tx.Commit(ctx)
		tx, err = c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if port := serverPort(t, ctx, tx.Conn(), "SELECT inet_server_port()"); port != sh.Primary.Port {
			t.Errorf("read-write transaction on %s", ports[port])
		}
		tx.Commit(ctx)
		// Transactions that default to READ ONLY for the session count as
		// READ ONLY; an explicit READ WRITE does not.
		for _, set := range []string{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET default_transaction_read_only = on"} {
			mustExec(t, ctx, c, set, pgx.QueryExecModeSimpleProtocol)
			waitReplicaReads(t, ctx, c, sh) // the SET ran on the primary (read-your-writes)
			for _, begin := range []string{"BEGIN", "BEGIN READ WRITE"} {
				mustExec(t, ctx, c, begin, pgx.QueryExecModeSimpleProtocol)
				port := serverPort(t, ctx, c, "SELECT inet_server_port()")
				mustExec(t, ctx, c, "COMMIT", pgx.QueryExecModeSimpleProtocol)
				if onPrimary := port == sh.Primary.Port; onPrimary != (begin == "BEGIN READ WRITE") {
					t.Errorf("after %s, %s ran its read on %s", set, begin, ports[port])
				}
			}
			mustExec(t, ctx, c, "RESET ALL", pgx.QueryExecModeSimpleProtocol)
		}
	})

	t.Run("SET shardproxy.target_role", func(t *testing.T) {
		mustExec(t, ctx, c, "SET shardproxy.target_role = primary", pgx.QueryExecModeSimpleProtocol)
		var role string
		if err := c.QueryRow(ctx, "SHOW shardproxy.target_role", pgx.QueryExecModeSimpleProtocol).Scan(&role); err != nil || role != "primary" {
			t.Fatalf("SHOW: %q %v", role, err)
		}
		for range 5 {
			if port := serverPort(t, ctx, c, "SELECT inet_server_port()"); port != sh.Primary.Port {
				t.Fatalf("target_role=primary read on %s", ports[port])
			}
		}
		mustExec(t, ctx, c, "SET shardproxy.target_role = replica", pgx.QueryExecModeSimpleProtocol)
		if port := serverPort(t, ctx, c, "SELECT inet_server_port()"); port == sh.Primary.Port {
			t.Errorf("target_role=replica read on the primary")
		}
		_, err := c.Exec(ctx, "SET shardproxy.target_role = nowhere")
		if sqlState(err) != "22023" {
			t.Errorf("bad role: %v, want 22023", err)
		}
		mustExec(t, ctx, c, "RESET shardproxy.target_role", pgx.QueryExecModeSimpleProtocol)
	})
}

// replicaScans returns the sequential scans of items each replica counted.
func replicaScans(t testing.TB, ctx context.Context, sh *pgcluster.Shard) []int64 {
	out := make([]int64, len(sh.Replicas))
	for i, r := range sh.Replicas {
		c, err := pgx.Connect(ctx, r.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables WHERE relname = 'items'").Scan(&out[i]); err != nil {
			t.Fatal(fmt.Errorf("%s: %w", r.Name, err))
		}
		c.Close(ctx)
	}
	return out
}

func TestReplicaLagAndReadYourWrites(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl := pgcluster.StartT(t, pgcluster.Options{Replicas: 2})
	sh := cl.Shards[0]
	execOn(t, ctx, sh.Primary, `CREATE TABLE notes (id int PRIMARY KEY, body text)`)
	if err := cl.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	ports := portsOf(sh)
	lagging, healthy := sh.Replicas[0], sh.Replicas[1]

	t.Run("a replica with replay paused gets no reads once it lags", func(t *testing.T) {
		p := startProxy(t, cl, replicaConfig(func(r *config.Replicas) {
			noPrimaryReads(r)
			r.MaxLagBytes = 64 << 10
		}))
		c := connectPgx(t, ctx, p.dsn("postgres"))
		waitReplicaReads(t, ctx, c, sh)
		execOn(t, ctx, lagging, "SELECT pg_wal_replay_pause()")
		defer execOn(t, ctx, lagging, "SELECT pg_wal_replay_resume()")
		execOn(t, ctx, sh.Primary, "INSERT INTO notes SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g")
		// A new session per read: each would stay on its server otherwise.
		dsn := p.dsn("postgres")
		streak := 0
		waitFor(t, 10*time.Second, "40 reads in a row away from the paused replica", func() bool {
			if newSessionPort(t, ctx, dsn) == lagging.Port {
				streak = 0
			} else {
				streak++
			}
			return streak >= 40
		})
		for range 20 {
			if port := newSessionPort(t, ctx, dsn); port != healthy.Port {
				t.Fatalf("read on %s, want %s", ports[port], healthy.Name)
			}
		}
		execOn(t, ctx, lagging, "SELECT pg_wal_replay_resume()")
		waitFor(t, 10*time.Second, "reads back on the caught-up replica", func() bool {
			return newSessionPort(t, ctx, dsn) == lagging.Port
		})
	})

	t.Run("read-your-writes holds while replay is paused on every replica", func(t *testing.T) {
		p := startProxy(t, cl, replicaConfig(func(r *config.Replicas) {
			noPrimaryReads(r)
			r.MaxLagBytes, r.MaxLag = -1, config.Duration(-time.Second) // lag alone never excludes
		}))
		writer := connectPgx(t, ctx, p.dsn("postgres"))
		other := connectPgx(t, ctx, p.dsn("postgres"))
		waitReplicaReads(t, ctx, writer, sh)
		for _, r := range sh.Replicas {
			execOn(t, ctx, r, "SELECT pg_wal_replay_pause()")
			defer execOn(t, ctx, r, "SELECT pg_wal_replay_resume()")
		}
		for k := 10000; k < 10040; k++ {
			mode := pgx.QueryExecModeCacheStatement
			if k%2 == 1 {
				mode = pgx.QueryExecModeSimpleProtocol
			}
			if _, err := writer.Exec(ctx, "INSERT INTO notes VALUES ($1, 'mine')", mode, k); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := writer.QueryRow(ctx, "SELECT count(*) FROM notes WHERE id = $1", mode, k).Scan(&n); err != nil || n != 1 {
				t.Fatalf("read after write of %d: count %d, err %v: the session did not read its own write", k, n, err)
			}
		}
		// A session that did not write still reads from the (stale) replicas.
		var n, port int
		if err := other.QueryRow(ctx, "SELECT count(*), inet_server_port() FROM notes WHERE id >= 10000").Scan(&n, &port); err != nil {
			t.Fatal(err)
		}
		if port == sh.Primary.Port || n != 0 {
			t.Errorf("other session: %d rows from %s, want 0 rows from a paused replica", n, ports[port])
		}
	})
}

func TestReplicaKilledUnderReadLoad(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl := pgcluster.StartT(t, pgcluster.Options{Replicas: 2})
	sh := cl.Shards[0]
	execOn(t, ctx, sh.Primary, `CREATE TABLE kv (k int PRIMARY KEY, v int); INSERT INTO kv SELECT g, g FROM generate_series(1, 1000) g`)
	if err := cl.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, cl, replicaConfig(noPrimaryReads))
	c := connectPgx(t, ctx, p.dsn("postgres"))
	waitReplicaReads(t, ctx, c, sh)
	victim := sh.Replicas[0]

	const clients = 6
	var ok, failed [clients]int
	var afterKill [clients]int
	killed := make(chan struct{})
	stop := make(chan struct{})
	done := make(chan struct{}, clients)
	for i := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			conn, err := pgx.Connect(ctx, p.dsn("postgres"))
			if err != nil {
				failed[i]++
				return
			}
			defer conn.Close(context.Background())
			for k := 1; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				var v int
				err := conn.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k%1000+1).Scan(&v)
				switch {
				case err != nil:
					failed[i]++
				default:
					ok[i]++
					select {
					case <-killed:
						afterKill[i]++
					default:
					}
				}
			}
		}()
	}
	waitFor(t, 10*time.Second, "read load running", func() bool { return ok[0] > 20 })
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	close(killed)
	waitFor(t, 20*time.Second, "200 more reads per client after the kill", func() bool {
		for i := range clients {
			if afterKill[i] < 200 {
				return false
			}
		}
		return true
	})
	close(stop)
	for range clients {
		<-done
	}
	totalFailed := 0
	for i := range clients {
		totalFailed += failed[i]
	}
	t.Logf("reads ok per client %v, failed %v", ok, failed)
	if totalFailed > clients {
		t.Errorf("%d failed reads; at most one in flight per client (%d) may fail when a replica dies", totalFailed, clients)
	}
	// Restarted, the replica is put back into rotation.
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "reads on the restarted replica", func() bool {
		return newSessionPort(t, ctx, p.dsn("postgres")) == victim.Port
	})
}
