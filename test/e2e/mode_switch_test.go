package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/topology"
)

// TestTopologyShardCountCrossesOne: a one-shard topology is served by the
// proxy's pooler path and a sharded one by the planner. Clients in the
// middle of prepared statements, pipelined batches and open transactions
// keep working, with the right answers, when a second shard is added (and
// removed again, and added again) under them.
func TestTopologyShardCountCrossesOne(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 2})
	store, p, _ := startMoveProxy(t, c, 1, 1)
	second := c.Shards[1]
	// A reference table, created on the second shard beforehand too, so
	// that its writes (broadcast to every shard) run through the changes.
	if _, err := store.Apply(ctx, topology.ReferenceTable{Table: "tags"}); err != nil {
		t.Fatal(err)
	}
	const tagsDDL = `CREATE TABLE tags (label text PRIMARY KEY, hits int NOT NULL DEFAULT 0)`
	mustExec(t, ctx, connectPgx(t, ctx, p.dsn("postgres")), tagsDDL)
	mustExec(t, ctx, connectPgx(t, ctx, second.Primary.DSN("postgres")), tagsDDL)

	const workers = 4
	var loops [workers]atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		if failures.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.dsn("postgres"))
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close(context.Background())
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := int64(w)*1_000_000 + i
				if err := modeSwitchRound(ctx, conn, id); err != nil {
					fail(fmt.Errorf("worker %d round %d: %w (SQLSTATE %s)", w, i, err, sqlState(err)))
				}
				loops[w].Add(1)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// progress waits until every worker has done n more rounds.
	progress := func(what string, n int64) {
		t.Helper()
		var start [workers]int64
		for w := range loops {
			start[w] = loops[w].Load()
		}
		if !wait.For(30*time.Second, func() bool {
			for w := range loops {
				if loops[w].Load() < start[w]+n {
					return false
				}
			}
			return true
		}) {
			for _, sh := range c.Shards {
				conn := connectPgx(t, context.Background(), sh.Primary.DSN("postgres"))
				rows, _ := conn.Query(context.Background(), `SELECT pid, state, wait_event_type || ':' || wait_event, left(query, 80) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
				for rows.Next() {
					var pid int
					var state, wait, query *string
					rows.Scan(&pid, &state, &wait, &query)
					t.Logf("%s: pid %d %v %v %v", sh.Name, pid, deref(state), deref(wait), deref(query))
				}
				var prepared int
				conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_prepared_xacts`).Scan(&prepared)
				t.Logf("%s: %d prepared transactions", sh.Name, prepared)
			}
			t.Fatalf("%s: the workers stopped making progress", what)
		}
	}
	apply := func(cmd topology.Command) {
		t.Helper()
		if _, err := store.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}

	progress("one shard", 20)
	for round := 0; round < 3; round++ {
		apply(topology.AddShard{Shard: topology.Shard{Name: second.Name, Primary: second.Primary.Addr()}})
		progress("two shards", 20)
		apply(topology.RemoveShard{Name: second.Name})
		progress("one shard again", 20)
	}
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d rounds failed while the shard count crossed one, first: %v", n, firstErr.Load())
	}
}

// modeSwitchRound is one round of a worker: a prepared INSERT and read
// back, a transaction that updates and reads its own write, and a
// pipelined batch; every answer is checked.
func modeSwitchRound(ctx context.Context, conn *pgx.Conn, id int64) error {
	name := fmt.Sprintf("user %d", id)
	if _, err := conn.Exec(ctx, `INSERT INTO users (id, name) VALUES ($1, $2)`, id, name); err != nil {
		return err
	}
	var got string
	if err := conn.QueryRow(ctx, `SELECT name FROM users WHERE id = $1`, id).Scan(&got); err != nil {
		return err
	}
	if got != name {
		return fmt.Errorf("read %q back for user %d", got, id)
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET balance = balance + 5 WHERE id = $1`, id); err != nil {
			return err
		}
		var balance int
		if err := tx.QueryRow(ctx, `SELECT balance FROM users WHERE id = $1`, id).Scan(&balance); err != nil {
			return err
		}
		if balance != 5 {
			return fmt.Errorf("user %d: balance %d inside the transaction, want 5", id, balance)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO tags (label) VALUES ($1)`, name); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE users SET balance = balance * 2 WHERE id = $1`, id)
	b.Queue(`SELECT balance, name FROM users WHERE id = $1`, id)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return err
	}
	var balance int
	if err := br.QueryRow().Scan(&balance, &got); err != nil {
		br.Close()
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	if balance != 10 || got != name {
		return fmt.Errorf("user %d: batch read balance %d name %q, want 10 %q", id, balance, got, name)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
