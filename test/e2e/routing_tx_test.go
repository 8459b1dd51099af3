package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/test/wire"
)

// twoKeysOnDifferentShards returns user keys a < b that hash to different
// shards.
func (e *shardedEnv) twoKeysOnDifferentShards(t *testing.T, start int64) (int64, int64) {
	a, b := start, start+1
	for e.shardOf(t, b) == e.shardOf(t, a) {
		b++
	}
	return a, b
}

func (e *shardedEnv) nameOnShard(t *testing.T, ctx context.Context, k int64) string {
	t.Helper()
	var name string
	if err := e.direct[e.shardOf(t, k)].QueryRow(ctx, "SELECT name FROM users WHERE id = $1", k).Scan(&name); err != nil {
		t.Fatalf("user %d on its shard: %v", k, err)
	}
	return name
}

func TestShardedTransactions(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 2*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	for _, stmt := range strings.Split(routingSchema, ";") {
		mustExec(t, ctx, app, stmt)
	}
	for k := int64(1); k <= 40; k++ {
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, 'orig')", k)
	}

	t.Run("savepoints span the shards a transaction touches", func(t *testing.T) {
		a, b := env.twoKeysOnDifferentShards(t, 1)
		mustExec(t, ctx, app, "BEGIN")
		mustExec(t, ctx, app, "UPDATE users SET name = 'before-sp' WHERE id = $1", a)
		mustExec(t, ctx, app, "SAVEPOINT sp1")
		mustExec(t, ctx, app, "UPDATE users SET name = 'after-sp' WHERE id = $1", a)
		// A shard joins after the savepoint: ROLLBACK TO must work there too.
		var n string
		if err := app.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", b).Scan(&n); err != nil {
			t.Fatal(err)
		}
		mustExec(t, ctx, app, "ROLLBACK TO SAVEPOINT sp1")
		mustExec(t, ctx, app, "RELEASE SAVEPOINT sp1")
		mustExec(t, ctx, app, "COMMIT")
		if got := env.nameOnShard(t, ctx, a); got != "before-sp" {
			t.Errorf("after ROLLBACK TO and COMMIT: %q, want before-sp", got)
		}
	})

	t.Run("a server error aborts the transaction; ROLLBACK recovers", func(t *testing.T) {
		a, b := env.twoKeysOnDifferentShards(t, 3)
		mustExec(t, ctx, app, "BEGIN")
		mustExec(t, ctx, app, "UPDATE users SET name = 'lost' WHERE id = $1", a)
		if _, err := app.Exec(ctx, "SELECT 1/0 FROM users WHERE id = $1", b); sqlState(err) != "22012" {
			t.Fatalf("division by zero: %v", err)
		}
		if _, err := app.Exec(ctx, "SELECT name FROM users WHERE id = $1", a); sqlState(err) != "25P02" {
			t.Errorf("statement on another shard after the error: %v, want 25P02", err)
		}
		mustExec(t, ctx, app, "ROLLBACK")
		if got := env.nameOnShard(t, ctx, a); got != "orig" {
			t.Errorf("rolled-back update is visible: %q", got)
		}
		var n int
		if err := app.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", a).Scan(&n); err != nil || n != 1 {
			t.Errorf("session after ROLLBACK: %d, %v", n, err)
		}
	})

	// JDBC and Npgsql send COMMIT as Parse/Bind/Execute. In a failed
	// transaction PostgreSQL rolls back and answers ROLLBACK; the proxy
	// bound the COMMIT on one shard, which committed its part when the
	// failure was elsewhere (on another shard, or an error the proxy
	// raised itself).
	t.Run("an extended COMMIT of a failed transaction rolls back every shard", func(t *testing.T) {
		c := wire.Open(t, ctx, env.proxy.dsn("postgres"))
		commit := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COMMIT"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		// The COMMIT bound before the failure, executed after it.
		boundEarly := []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "commit_early", Query: "COMMIT"},
			&pgproto3.Bind{DestinationPortal: "pc", PreparedStatement: "commit_early"}, &pgproto3.Sync{}}
		executeEarly := []pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "pc"}, &pgproto3.Sync{}}
		for i, failure := range []func(b int64) []pgproto3.FrontendMessage{
			func(b int64) []pgproto3.FrontendMessage { // on the other shard
				return []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1/0 FROM users WHERE id = " + strconv.FormatInt(b, 10)}}
			},
			func(int64) []pgproto3.FrontendMessage { // raised by the proxy
				return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELEC oops"}, &pgproto3.Sync{}}
			},
		} {
			for _, both := range []bool{false, true} {
				a, b := env.twoKeysOnDifferentShards(t, int64(11+4*i))
				steps := [][]pgproto3.FrontendMessage{{&pgproto3.Query{String: "BEGIN"}},
					{&pgproto3.Query{String: "UPDATE users SET name = 'lost' WHERE id = " + strconv.FormatInt(a, 10)}}}
				if both {
					steps = append(steps, []pgproto3.FrontendMessage{&pgproto3.Query{String: "UPDATE users SET name = 'lost' WHERE id = " + strconv.FormatInt(b, 10)}})
				}
				for _, early := range []bool{false, true} {
					run := append([][]pgproto3.FrontendMessage{}, steps...)
					end, want := commit, "*pgproto3.ParseComplete *pgproto3.BindComplete tag ROLLBACK ready I"
					if early {
						run = append(run, boundEarly)
						end, want = executeEarly, "tag ROLLBACK ready I"
					}
					for _, msgs := range append(run, failure(b)) {
						c.Run(msgs)
					}
					got := strings.Join(c.Run(end), " ")
					if got != want {
						t.Errorf("failure %d, both shards written %v, bound before the failure %v: COMMIT answered %q, want %q", i, both, early, got, want)
					}
					for _, k := range []int64{a, b} {
						if name := env.nameOnShard(t, ctx, k); name != "orig" {
							t.Errorf("failure %d, both shards written %v, bound before the failure %v: user %d is %q after the COMMIT of a failed transaction, want orig", i, both, early, k, name)
						}
					}
					c.Run([]pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'S', Name: "commit_early"}, &pgproto3.Sync{}})
				}
			}
		}
	})

	// Outside a transaction block a pipelined batch is one implicit
	// transaction: an error anywhere in it rolls back every write before
	// it. The proxy synced the other shards' connections (an error on
	// another shard, or one the proxy raised, left their writes
	// committed), and a cross-shard read between ran its parts with Sync
	// on the written shard, committing the write there.
	t.Run("a failed pipelined batch rolls back its writes on every shard", func(t *testing.T) {
		c := wire.Open(t, ctx, env.proxy.dsn("postgres"))
		stmt := func(sql string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
		}
		for i, failure := range []func(b int64) string{
			func(b int64) string { return "SELECT 1/0 FROM users WHERE id = " + strconv.FormatInt(b, 10) },
			func(int64) string { return "SELEC oops" },
		} {
			for _, scatter := range []bool{false, true} {
				a, b := env.twoKeysOnDifferentShards(t, int64(31+4*i))
				batch := stmt("UPDATE users SET name = 'lost' WHERE id = " + strconv.FormatInt(a, 10))
				if scatter {
					batch = append(batch, stmt("SELECT count(*) FROM users")...)
				}
				batch = append(append(batch, stmt(failure(b))...), &pgproto3.Sync{})
				got := c.Run(batch)
				if last := got[len(got)-2:]; !strings.HasPrefix(last[0], "error ") || last[1] != "ready I" {
					t.Errorf("failure %d, cross-shard read %v: batch ended %q, want an error and ready I", i, scatter, last)
				}
				if name := env.nameOnShard(t, ctx, a); name != "orig" {
					t.Errorf("failure %d, cross-shard read %v: user %d is %q after the failed batch, want orig", i, scatter, a, name)
				}
			}
		}
	})

	// After a statement failed on one shard, a message answered by
	// another shard's connection (ready T there) left the client's
	// transaction healthy in the proxy's eyes, and a COMMIT then committed
	// the other shard's writes.
	t.Run("a failed transaction stays failed on the next shard", func(t *testing.T) {
		c := wire.Open(t, ctx, env.proxy.dsn("postgres"))
		a, b := env.twoKeysOnDifferentShards(t, 51)
		for _, k := range []int64{a, b} {
			mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, 'orig')", k)
		}
		for _, next := range [][]pgproto3.FrontendMessage{
			{&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}}, // an empty portal runs in a failed block
			{&pgproto3.Close{ObjectType: 'P', Name: "p1"}, &pgproto3.Sync{}},
			{&pgproto3.Describe{ObjectType: 'P', Name: "p1"}, &pgproto3.Sync{}},
		} {
			for _, msgs := range [][]pgproto3.FrontendMessage{
				{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Query{String: fmt.Sprintf("UPDATE users SET name = 'lost' WHERE id = %d", a)}},
				{&pgproto3.Parse{Query: ""}, &pgproto3.Bind{DestinationPortal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: fmt.Sprintf("SELECT 1/0 FROM users WHERE id = %d", b)}},
			} {
				c.Run(msgs)
			}
			if got := c.Run(next); got[len(got)-1] != "ready E" {
				t.Errorf("%s after the failure: %q, want ready E", wire.Describe(next), got)
			}
			if got := strings.Join(c.Run([]pgproto3.FrontendMessage{&pgproto3.Query{String: "COMMIT"}}), " "); got != "tag ROLLBACK ready I" {
				t.Errorf("COMMIT after %s: %q, want ROLLBACK", wire.Describe(next), got)
			}
			if name := env.nameOnShard(t, ctx, a); name != "orig" {
				t.Errorf("after %s and COMMIT: user %d is %q, want orig", wire.Describe(next), a, name)
			}
		}
	})

	// PostgreSQL's BEGIN, COMMIT and ROLLBACK act on the batch's implicit
	// transaction where they stand: the proxy did so on one shard's
	// connection only.
	t.Run("transaction control in the middle of a pipelined batch", func(t *testing.T) {
		c := wire.Open(t, ctx, env.proxy.dsn("postgres"))
		stmt := func(sql string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
		}
		upd := func(k int64, name string) []pgproto3.FrontendMessage {
			return stmt("UPDATE users SET name = '" + name + "' WHERE id = " + strconv.FormatInt(k, 10))
		}
		batch := func(parts ...[]pgproto3.FrontendMessage) []string {
			var msgs []pgproto3.FrontendMessage
			for _, p := range parts {
				msgs = append(msgs, p...)
			}
			return c.Run(append(msgs, &pgproto3.Sync{}))
		}
		a, b := env.twoKeysOnDifferentShards(t, 41)
		names := func(what string, want ...string) {
			t.Helper()
			for i, k := range []int64{a, b} {
				if got := env.nameOnShard(t, ctx, k); got != want[i] {
					t.Errorf("%s: user %d is %q, want %q", what, k, got, want[i])
				}
			}
		}
		for _, k := range []int64{a, b} {
			mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, 'orig')", k)
		}
		// BEGIN takes the writes before it into the block it opens.
		if got := batch(upd(a, "x"), upd(b, "x"), stmt("BEGIN")); got[len(got)-1] != "ready T" {
			t.Errorf("BEGIN after writes on two shards: %q, want ready T", got)
		}
		c.Run([]pgproto3.FrontendMessage{&pgproto3.Query{String: "ROLLBACK"}})
		names("writes before a BEGIN, then ROLLBACK", "orig", "orig")
		// ROLLBACK rolls back what came before it; what follows commits.
		if got := strings.Join(batch(upd(a, "x"), upd(b, "x"), stmt("ROLLBACK"), upd(a, "after")), " "); !strings.HasSuffix(got, "tag ROLLBACK *pgproto3.ParseComplete *pgproto3.BindComplete tag UPDATE 1 ready I") {
			t.Errorf("ROLLBACK in the middle: %q", got)
		}
		names("ROLLBACK in the middle of a batch", "after", "orig")
		// A COMMIT that ends a block: what follows is a new implicit
		// transaction, rolled back by its own error only.
		c.Run([]pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN"}})
		got := strings.Join(batch(upd(a, "committed"), stmt("COMMIT"), upd(b, "lost"), stmt("SELECT 1/0 FROM users WHERE id = "+strconv.FormatInt(a, 10))), " ")
		if got != "*pgproto3.ParseComplete *pgproto3.BindComplete tag UPDATE 1 *pgproto3.ParseComplete *pgproto3.BindComplete tag COMMIT *pgproto3.ParseComplete *pgproto3.BindComplete tag UPDATE 1 *pgproto3.ParseComplete error 22012 ready I" {
			t.Errorf("COMMIT, then a failing implicit transaction: %q", got)
		}
		names("COMMIT in the middle of a batch, then an error", "committed", "orig")
		c.Run([]pgproto3.FrontendMessage{&pgproto3.Query{String: "BEGIN"}})
		if got := batch(upd(a, "again"), stmt("COMMIT"), upd(b, "kept")); got[len(got)-1] != "ready I" {
			t.Errorf("COMMIT, then a write on another shard: %q, want ready I", got)
		}
		names("COMMIT in the middle of a batch, then a write on another shard", "again", "kept")
		// Transaction modes after writes on several shards: refused, and
		// the batch's writes roll back as after any error in it.
		got = strings.Join(batch(upd(a, "lost"), upd(b, "lost"), stmt("BEGIN ISOLATION LEVEL SERIALIZABLE")), " ")
		if !strings.HasSuffix(got, "tag UPDATE 1 *pgproto3.ParseComplete *pgproto3.BindComplete error 0A000 ready I") {
			t.Errorf("BEGIN with transaction modes after writes on two shards: %q, want 0A000", got)
		}
		names("a refused BEGIN after writes on two shards", "again", "kept")
		// The same in a multi-statement simple Query.
		query := func(sql string) string {
			return strings.Join(c.Run([]pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}), " ")
		}
		two := fmt.Sprintf("UPDATE users SET name = 'q' WHERE id = %d; UPDATE users SET name = 'q' WHERE id = %d; ", a, b)
		if got := query(two + "BEGIN"); got != "tag UPDATE 1 tag UPDATE 1 tag BEGIN ready T" {
			t.Errorf("a query string with BEGIN after writes on two shards: %q", got)
		}
		query("ROLLBACK")
		names("a query string's writes before its BEGIN, then ROLLBACK", "again", "kept")
		if got := query(two + "BEGIN ISOLATION LEVEL SERIALIZABLE"); got != "tag UPDATE 1 tag UPDATE 1 error 0A000 ready I" {
			t.Errorf("a query string with BEGIN ISOLATION LEVEL after writes on two shards: %q, want 0A000", got)
		}
		names("a refused BEGIN in a query string", "again", "kept")
	})

	t.Run("a batch writing two shards commits both or neither", func(t *testing.T) {
		// psycopg 3's executemany and pgx batches outside a transaction
		// block: one implicit transaction, made atomic with two-phase
		// commit at the Sync.
		a, b := env.twoKeysOnDifferentShards(t, 5)
		runBatch := func(stmts ...string) error { return sendBatch(ctx, app, stmts...) }
		upd := func(k int64, name string) string {
			return "UPDATE users SET name = '" + name + "' WHERE id = " + itoa(k)
		}
		check := func(what, want string) {
			t.Helper()
			for _, k := range []int64{a, b} {
				if got := env.nameOnShard(t, ctx, k); got != want {
					t.Fatalf("%s: user %d is %q, want %q", what, k, got, want)
				}
			}
			if st := app.PgConn().TxStatus(); st != 'I' {
				t.Fatalf("%s: transaction status %q, want I", what, st)
			}
			// A server connection the proxy closed rather than rolled back
			// ends its transaction when its backend sees the close: allow
			// for that, nothing longer.
			for shard, conn := range env.direct {
				var open, prepared int
				var err error
				if !wait.For(5*time.Second, func() bool {
					err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()),
					(SELECT count(*) FROM pg_prepared_xacts)`).Scan(&open, &prepared)
					return err == nil && open == 0 && prepared == 0
				}) {
					t.Fatalf("%s: shard %s has %d open and %d prepared transactions (%v)", what, shard, open, prepared, err)
				}
			}
		}
		if err := runBatch(upd(a, "batched"), upd(b, "batched"), "SELECT 1"); err != nil {
			t.Fatalf("batch over two shards: %v", err)
		}
		check("committed batch", "batched")
		var decisions int
		if err := env.direct[env.shardOf(t, a)].QueryRow(ctx, "SELECT count(*) FROM shardproxy.commit_decisions").Scan(&decisions); err != nil || decisions == 0 {
			t.Fatalf("no two-phase decision recorded on the first written shard (%d, %v)", decisions, err)
		}
		// A statement after both writes fails: neither commits.
		if err := runBatch(upd(a, "lost"), upd(b, "lost"), "SELECT 1/0"); sqlState(err) != "22012" {
			t.Fatalf("batch failing after its writes: %v, want 22012", err)
		}
		check("batch failing after its writes", "batched")
		// The second shard's own write fails.
		if err := runBatch(upd(a, "lost"), "UPDATE users SET name = (1/0)::text WHERE id = "+itoa(b)); sqlState(err) != "22012" {
			t.Fatalf("batch whose second write fails: %v, want 22012", err)
		}
		check("batch whose second write fails", "batched")
		// Back and forth between the shards, with reads in between.
		if err := runBatch(upd(a, "x1"), upd(b, "x1"), "SELECT count(*) FROM users", upd(a, "x2"), upd(b, "x2")); err != nil {
			t.Fatalf("batch alternating shards: %v", err)
		}
		check("batch alternating shards", "x2")
		mustExec(t, ctx, app, "UPDATE users SET name = 'orig' WHERE id = ANY($1)", []int64{a, b})
	})

	t.Run("a batch of reads over several shards works", func(t *testing.T) {
		batch := &pgx.Batch{}
		for k := int64(1); k <= 12; k++ {
			batch.Queue("SELECT id FROM users WHERE id = $1", k)
		}
		br := app.SendBatch(ctx, batch)
		for k := int64(1); k <= 12; k++ {
			var id int64
			if err := br.QueryRow().Scan(&id); err != nil || id != k {
				t.Errorf("batched read %d: %d, %v", k, id, err)
			}
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a query string runs as written on one shard, statement by statement over several", func(t *testing.T) {
		a := int64(9)
		shard := env.shardOf(t, a)
		b := int64(10)
		for env.shardOf(t, b) != shard {
			b++
		}
		_, err := app.PgConn().Exec(ctx, "BEGIN; UPDATE users SET name = 'multi' WHERE id = "+itoa(a)+"; UPDATE users SET name = 'multi' WHERE id = "+itoa(b)+"; COMMIT").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if env.nameOnShard(t, ctx, a) != "multi" || env.nameOnShard(t, ctx, b) != "multi" {
			t.Errorf("multi-statement string did not apply")
		}
		// Over two shards the proxy runs the statements one at a time in
		// one transaction, committed on both with two-phase commit.
		c, d := env.twoKeysOnDifferentShards(t, 20)
		_, err = app.PgConn().Exec(ctx, "UPDATE users SET name = 'x' WHERE id = "+itoa(c)+"; UPDATE users SET name = 'x' WHERE id = "+itoa(d)).ReadAll()
		if err != nil {
			t.Fatalf("string over two shards: %v", err)
		}
		if env.nameOnShard(t, ctx, c) != "x" || env.nameOnShard(t, ctx, d) != "x" {
			t.Errorf("string over two shards did not apply on both")
		}
		// A failing statement rolls the string back on every shard.
		_, err = app.PgConn().Exec(ctx, "UPDATE users SET name = 'lost' WHERE id = "+itoa(c)+"; UPDATE users SET name = 'lost' WHERE id = "+itoa(d)+"; SELECT 1/0").ReadAll()
		if sqlState(err) != "22012" {
			t.Errorf("failing string over two shards: %v, want 22012", err)
		}
		if env.nameOnShard(t, ctx, c) != "x" || env.nameOnShard(t, ctx, d) != "x" {
			t.Errorf("failing string over two shards left changes")
		}
	})

	t.Run("multi-shard writes inside a transaction block are atomic", func(t *testing.T) {
		mustExec(t, ctx, app, "BEGIN")
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES (501, 'a'), (502, 'b'), (503, 'c'), (504, 'd')")
		mustExec(t, ctx, app, "ROLLBACK")
		for k := int64(501); k <= 504; k++ {
			var c int
			env.direct[env.shardOf(t, k)].QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", k).Scan(&c)
			if c != 0 {
				t.Errorf("user %d present after ROLLBACK", k)
			}
		}
		mustExec(t, ctx, app, "BEGIN")
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES (501, 'a'), (502, 'b'), (503, 'c'), (504, 'd')")
		mustExec(t, ctx, app, "INSERT INTO countries VALUES ('it', 'Italy')")
		mustExec(t, ctx, app, "COMMIT")
		for k := int64(501); k <= 504; k++ {
			var c int
			env.direct[env.shardOf(t, k)].QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", k).Scan(&c)
			if c != 1 {
				t.Errorf("user %d missing after COMMIT", k)
			}
		}
		for s, d := range env.direct {
			var c int
			d.QueryRow(ctx, "SELECT count(*) FROM countries WHERE code = 'it'").Scan(&c)
			if c != 1 {
				t.Errorf("reference row missing on %s after COMMIT", s)
			}
		}
		// Outside a transaction the same INSERT is atomic over the shards:
		// a duplicate on one shard fails it everywhere.
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES (601, 'x')")
		_, err := app.Exec(ctx, "INSERT INTO users (id, name) VALUES (602, 'a'), (603, 'b'), (604, 'c'), (605, 'd'), (601, 'dup')")
		if sqlState(err) != "23505" {
			t.Fatalf("split INSERT with a duplicate: %v, want 23505", err)
		}
		for k := int64(602); k <= 605; k++ {
			var c int
			env.direct[env.shardOf(t, k)].QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", k).Scan(&c)
			if c != 0 {
				t.Errorf("user %d committed although the split INSERT failed", k)
			}
		}
		for s, d := range env.direct {
			var n int
			if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 0 {
				t.Errorf("shard %s: %d prepared transactions left (%v)", s, n, err)
			}
		}
	})

	t.Run("cursors stay on their shard", func(t *testing.T) {
		mustExec(t, ctx, app, "BEGIN")
		mustExec(t, ctx, app, "DECLARE c1 CURSOR FOR SELECT id FROM users WHERE id = 7")
		var id int64
		if err := app.QueryRow(ctx, "FETCH NEXT FROM c1").Scan(&id); err != nil || id != 7 {
			t.Errorf("FETCH: %d, %v", id, err)
		}
		mustExec(t, ctx, app, "CLOSE c1")
		mustExec(t, ctx, app, "COMMIT")
	})
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestCodeBlocksOnShardedTables: a DO block or a pg_temp function whose
// statements touch distributed tables would run on one shard only, so the
// proxy refuses it (0A000) through both protocols and nothing changes;
// code that touches no listed table runs.
func TestCodeBlocksOnShardedTables(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	for _, stmt := range strings.Split(routingSchema, ";") {
		mustExec(t, ctx, app, stmt)
	}
	mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES (1, 'one'), (2, 'two')")
	for _, sql := range []string{
		"DO $$ BEGIN UPDATE users SET name = 'changed'; END $$",
		"CREATE FUNCTION pg_temp.f() RETURNS void AS $$ DELETE FROM users $$ LANGUAGE sql",
	} {
		// Simple protocol, then extended (Parse, Bind, Execute).
		if _, err := app.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); sqlState(err) != "0A000" {
			t.Errorf("%s (simple): %v, want 0A000", sql, err)
		}
		if err := app.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err; sqlState(err) != "0A000" {
			t.Errorf("%s (extended): %v, want 0A000", sql, err)
		}
	}
	var names string
	if err := app.QueryRow(ctx, "SELECT string_agg(name, ',' ORDER BY id) FROM users").Scan(&names); err != nil || names != "one,two" {
		t.Fatalf("users after the refused blocks: %q, %v", names, err)
	}
	if _, err := app.Exec(ctx, "DO $$ BEGIN PERFORM 1; END $$"); err != nil {
		t.Errorf("a DO block on no listed table: %v", err)
	}
}
