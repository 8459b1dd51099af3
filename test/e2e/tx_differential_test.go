package e2e

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/test/wire"
)

// TestShardedTransactionDifferential runs random transactions through a
// 4-shard proxy and against one PostgreSQL database holding the same
// distributed table, and requires the same answers, step by step, and the
// same rows at the end of each sequence: BEGIN, COMMIT and ROLLBACK,
// savepoints, single-shard and all-shard writes, reads, and failures — a
// server error on one shard, a syntax error the proxy raises itself, a
// duplicate key — sent as simple Queries (also several statements in one)
// or as Parse/Bind/Execute/Sync (also pipelined batches). It found an extended COMMIT of a failed
// transaction committing the shard it was bound on, and a RELEASE or
// ROLLBACK TO of a savepoint that did not exist answered by the proxy
// (ending a failed block) while no shard was in the transaction yet, and
// failed pipelined batches leaving the writes of their other shards
// committed, and BEGIN, COMMIT or ROLLBACK in the middle of a batch acting
// on one shard's connection only (a BEGIN after writes on several shards
// left them committed, statements after a COMMIT failed with 25P02 or left
// the client in a failed block), and the same over multi-statement
// Queries (which the proxy refused with 0A000 when their transaction
// control was not a leading BEGIN and a final COMMIT or ROLLBACK; a string
// with a savepoint relayed whole to one shard left the savepoint unknown
// to shards joining later, 3B001 at ROLLBACK TO).
//
// Savepoint statements go as simple Queries only: over the extended
// protocol the proxy runs one on the transaction's other shards at Bind,
// so a failing one errs at Bind where PostgreSQL errs at Execute (same
// error, same failed block).
func TestShardedTransactionDifferential(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 3*time.Minute)
	refDSN := env.referenceDatabase(t, ctx, "tx_reference", "CREATE TABLE users (id bigint PRIMARY KEY, name text)",
		"INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 40) g")
	rows := []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT id, name FROM users ORDER BY id"}}
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
			failed := false
			for i := 0; i < 40; i++ {
				msgs := randomTxStep(rng)
				w, g := want.Run(msgs), got.Run(msgs)
				w, _ = inFailedBlock(w, failed)
				g, failed = inFailedBlock(g, failed)
				if strings.Join(g, "\n") != strings.Join(w, "\n") {
					t.Fatalf("step %d differs\n%s\nPostgreSQL: %q\nthrough the proxy: %q", i, wire.Describe(msgs), w, g)
				}
			}
			end := []pgproto3.FrontendMessage{&pgproto3.Query{String: "ROLLBACK"}}
			want.Run(end)
			got.Run(end)
			if w, g := want.Run(rows), got.Run(rows); strings.Join(w, ",") != strings.Join(g, ",") {
				t.Fatalf("the tables differ after the sequence\nPostgreSQL: %q\nthrough the proxy: %q", w, g)
			}
		})
	}
}

// randomTxStep returns one step of TestShardedTransactionDifferential: one
// to four statements as one simple Query (transaction control and
// savepoints anywhere in it), or one to five statements as one pipelined
// batch (Parse/Bind/Execute each, one Sync), BEGIN, COMMIT and ROLLBACK
// anywhere in it. Savepoint statements go as simple Queries only.
func randomTxStep(rng *rand.Rand) []pgproto3.FrontendMessage {
	sql, control := randomTxStatement(rng)
	if control == txSavepoint || rng.IntN(3) == 0 {
		for n := rng.IntN(4); n > 0; n-- {
			more, _ := randomTxStatement(rng)
			sql += "; " + more
		}
		return []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}
	}
	msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
	for n := rng.IntN(5); n > 0; n-- {
		if sql, c := randomTxStatement(rng); c != txSavepoint {
			msgs = append(msgs, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{})
		}
	}
	return append(msgs, &pgproto3.Sync{})
}

// Transaction control in randomTxStatement's statements.
const (
	txNone      = iota
	txBlock     // BEGIN, COMMIT, ROLLBACK
	txSavepoint // SAVEPOINT, ROLLBACK TO, RELEASE
)

// randomTxStatement returns one statement of TestShardedTransactionDifferential's
// mix on users (id 1..40 at the start; keys up to 60), and its kind of
// transaction control.
func randomTxStatement(rng *rand.Rand) (string, int) {
	key := func() string { return strconv.Itoa(1 + rng.IntN(60)) }
	switch rng.IntN(16) {
	case 0, 1:
		return "BEGIN", txBlock
	case 2:
		return "COMMIT", txBlock
	case 3:
		return "ROLLBACK", txBlock
	case 4:
		return "SAVEPOINT s", txSavepoint
	case 5:
		return "ROLLBACK TO SAVEPOINT s", txSavepoint
	case 6:
		return "RELEASE SAVEPOINT s", txSavepoint
	case 7, 8:
		return "UPDATE users SET name = name || 'x' WHERE id = " + key(), txNone
	case 9:
		return "INSERT INTO users VALUES (" + key() + ", 'n')", txNone
	case 10:
		return "DELETE FROM users WHERE id = " + key(), txNone
	case 11:
		return "SELECT 1/0 FROM users WHERE id = " + key(), txNone // a server error on that key's shard
	case 12:
		return "SELEC broken", txNone // a syntax error the proxy raises
	case 13:
		return "UPDATE users SET name = name || 'y' WHERE id % 7 = " + strconv.Itoa(rng.IntN(7)), txNone // every shard
	case 14:
		return "SELECT count(*) FROM users", txNone
	}
	return "SELECT name FROM users WHERE id = " + key(), txNone
}
