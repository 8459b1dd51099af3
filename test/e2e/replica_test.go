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
	p := startProxy(t, cl, replicaConfig(noPrimaryReads))
	c := connectPgx(t, ctx, p.dsn("postgres"))
	waitReplicaReads(t, ctx, c, sh)
	ports := portsOf(sh)
	outer := t

	t.Run("reads spread over the replicas", func(t *testing.T) {
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
