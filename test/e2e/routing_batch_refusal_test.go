package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/wait"
)

// TestShardedPipelinedTransactionProxyRefusal: a statement the proxy
// itself refuses (0A000) in the middle of a pipelined BEGIN … COMMIT
// behaves like a server error there: the COMMIT behind it is skipped, the
// transaction is aborted until ROLLBACK, the write made earlier in the
// batch never commits, and no shard is left with an open transaction once
// the client rolled back.
func TestShardedPipelinedTransactionProxyRefusal(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 2*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	for _, stmt := range strings.Split(routingSchema, ";") {
		mustExec(t, ctx, app, stmt)
	}
	a, b := env.twoKeysOnDifferentShards(t, 100)
	for _, k := range []int64{a, b} {
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, 'orig')", k)
	}
	run := func(stmts ...string) error { return sendBatch(ctx, app, stmts...) }
	const refused = "SELECT id, sum(id) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) FROM users" // a frame reaching past the row: not computed across shards
	for _, mode := range []string{"write then refusal", "writes on both shards then refusal"} {
		stmts := []string{"BEGIN", "UPDATE users SET name = 'changed' WHERE id = " + itoa(a)}
		if strings.HasPrefix(mode, "writes on both") {
			stmts = append(stmts, "UPDATE users SET name = 'changed' WHERE id = "+itoa(b))
		}
		stmts = append(stmts, refused, "COMMIT")
		if err := run(stmts...); sqlState(err) != "0A000" {
			t.Fatalf("%s: %v, want 0A000", mode, err)
		}
		if st := app.PgConn().TxStatus(); st != 'E' {
			t.Fatalf("%s: transaction status %q after the refusal, want E (the COMMIT was skipped)", mode, st)
		}
		mustExec(t, ctx, app, "ROLLBACK")
		if x, y := env.nameOnShard(t, ctx, a), env.nameOnShard(t, ctx, b); x != "orig" || y != "orig" {
			t.Fatalf("%s: names %q %q after ROLLBACK, want orig orig", mode, x, y)
		}
		for shard, conn := range env.direct {
			if !wait.For(10*time.Second, func() bool {
				var open int
				err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`).Scan(&open)
				return err == nil && open == 0
			}) {
				t.Fatalf("%s: shard %s still has a transaction open after the client's ROLLBACK", mode, shard)
			}
		}
	}
	// One simple-protocol query string is planned whole: a statement the
	// proxy refuses fails the string before any of it runs (PostgreSQL
	// would have run the BEGIN and the UPDATE first and then left the
	// transaction aborted; here nothing of it ran and no transaction is
	// open — documented in docs/routing.md).
	_, err := app.Exec(ctx, "BEGIN; UPDATE users SET name = 'changed' WHERE id = "+itoa(a)+"; "+refused+"; COMMIT", pgx.QueryExecModeSimpleProtocol)
	if sqlState(err) != "0A000" {
		t.Fatalf("query string with a refusal inside BEGIN … COMMIT: %v, want 0A000", err)
	}
	if st := app.PgConn().TxStatus(); st != 'I' {
		t.Fatalf("query string: transaction status %q after the refusal, want I (nothing of the string ran)", st)
	}
	if x := env.nameOnShard(t, ctx, a); x != "orig" {
		t.Fatalf("query string: name %q after the refused string, want orig", x)
	}

	// The session goes on normally.
	mustExec(t, ctx, app, "UPDATE users SET name = 'after' WHERE id = $1", a)
	if x := env.nameOnShard(t, ctx, a); x != "after" {
		t.Fatalf("write after the refused batches: %q", x)
	}
}
