package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Drivers that pipeline (JDBC with autocommit off, pgx batches) send BEGIN
// in the same batch as the statements, and often COMMIT too, with one Sync
// at the end. Every shard the batch touches must join the transaction, and
// a COMMIT over several written shards must be atomic.
func TestShardedPipelinedTransactions(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 2*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	for _, stmt := range strings.Split(routingSchema, ";") {
		mustExec(t, ctx, app, stmt)
	}
	mustExec(t, ctx, app, "ALTER TABLE users ADD CONSTRAINT name_not_bad CHECK (name <> 'bad')")
	a, b := env.twoKeysOnDifferentShards(t, 100)
	for _, k := range []int64{a, b} {
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, 'orig')", k)
	}
	names := func() (string, string) {
		return env.nameOnShard(t, ctx, a), env.nameOnShard(t, ctx, b)
	}
	run := func(stmts ...string) error { return sendBatch(ctx, app, stmts...) }
	upd := func(k int64, name string) string {
		return "UPDATE users SET name = '" + name + "' WHERE id = " + itoa(k)
	}

	// BEGIN, writes on two shards and COMMIT in one batch: both commit,
	// with two-phase commit.
	if err := run("BEGIN", upd(a, "one"), upd(b, "one"), "COMMIT"); err != nil {
		t.Fatalf("batch with BEGIN … COMMIT over two shards: %v", err)
	}
	if x, y := names(); x != "one" || y != "one" {
		t.Fatalf("after the committed batch: %q %q, want one one", x, y)
	}
	var decisions int
	if err := env.direct[env.shardOf(t, a)].QueryRow(ctx, "SELECT count(*) FROM shardproxy.commit_decisions").Scan(&decisions); err != nil || decisions == 0 {
		t.Fatalf("no two-phase decision recorded on the first written shard (%d, %v)", decisions, err)
	}

	// The second shard's statement fails: the first shard's write, made
	// earlier in the same batch, is rolled back too.
	err := run("BEGIN", upd(a, "two"), upd(b, "bad"), "COMMIT")
	if sqlState(err) != "23514" {
		t.Fatalf("batch whose second write violates a CHECK: %v, want 23514", err)
	}
	if x, y := names(); x != "one" || y != "one" {
		t.Fatalf("after the failed batch: %q %q, want one one (nothing of it committed)", x, y)
	}
	// As on PostgreSQL, the COMMIT after the error was skipped: the
	// transaction is still open and aborted until ROLLBACK.
	if st := app.PgConn().TxStatus(); st != 'E' {
		t.Fatalf("transaction status after the failed batch: %q, want E", st)
	}
	if err := run("BEGIN", upd(a, "x")); sqlState(err) != "25P02" {
		t.Fatalf("batch in the aborted transaction: %v, want 25P02", err)
	}
	mustExec(t, ctx, app, "ROLLBACK")
	if x, y := names(); x != "one" || y != "one" {
		t.Fatalf("after ROLLBACK of the failed batch: %q %q, want one one", x, y)
	}

	// BEGIN and the writes in one batch, COMMIT later as its own
	// statement (JDBC with autocommit off).
	if err := run("BEGIN", upd(a, "three"), upd(b, "three")); err != nil {
		t.Fatal(err)
	}
	var inTx string
	if err := app.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", b).Scan(&inTx); err != nil || inTx != "three" {
		t.Fatalf("read in the open transaction: %q %v", inTx, err)
	}
	if x, y := names(); x != "one" || y != "one" {
		t.Fatalf("uncommitted writes visible on the shards: %q %q", x, y)
	}
	mustExec(t, ctx, app, "ROLLBACK")
	if x, y := names(); x != "one" || y != "one" {
		t.Fatalf("after ROLLBACK: %q %q, want one one", x, y)
	}

	// The same with the extended-protocol COMMIT in a batch of its own.
	if err := run("BEGIN", upd(a, "four"), upd(b, "four")); err != nil {
		t.Fatal(err)
	}
	if err := run("COMMIT"); err != nil {
		t.Fatalf("COMMIT in a batch: %v", err)
	}
	if x, y := names(); x != "four" || y != "four" {
		t.Fatalf("after the batched COMMIT: %q %q, want four four", x, y)
	}
	// A write over every shard inside a pipelined BEGIN … ROLLBACK is
	// the client's transaction's: rolled back with it.
	if err := run("BEGIN", "UPDATE users SET name = 'everywhere' WHERE id IN ("+itoa(a)+", "+itoa(b)+")", "ROLLBACK"); err != nil {
		t.Fatalf("batch with a multi-shard write rolled back: %v", err)
	}
	if x, y := names(); x != "four" || y != "four" {
		t.Fatalf("after the rolled-back multi-shard write: %q %q, want four four", x, y)
	}
	// Outside a transaction block, a multi-shard write and then writes on
	// single shards in one batch: all commit together.
	if err := run("UPDATE users SET name = 'five' WHERE id IN ("+itoa(a)+", "+itoa(b)+")", upd(a, "six")); err != nil {
		t.Fatalf("batch with a multi-shard write and another write: %v", err)
	}
	if x, y := names(); x != "six" || y != "five" {
		t.Fatalf("after the batch with a multi-shard write: %q %q, want six five", x, y)
	}
	for _, name := range env.names {
		var n int
		if err := env.direct[name].QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 0 {
			t.Fatalf("shard %s holds %d prepared transactions (%v)", name, n, err)
		}
	}
}
