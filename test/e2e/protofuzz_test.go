package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/test/wire"
)

// TestShardedExtendedProtocolDifferential runs the random extended-
// protocol batches of the pooler's differential test (proxy package)
// through a 4-shard proxy, where every Parse, Bind and Describe goes
// through the planner and routing, against one PostgreSQL database
// holding the same table, and requires identical transcripts. The table is
// not in the sharding configuration, so the proxy sends it to the default
// shard, as it does for any application table it was not told about.
//
// One difference is allowed: inside a transaction block that has already
// failed, which error a message gets (PostgreSQL checks some Bind
// messages' parameters before the failed state, the proxy answers 25P02
// for a statement it would route first) — either way the message fails
// and the block stays failed. With distributed-table texts among the
// batches (wire.RandomBatch's more), seeds 1-260 of 300 batches each
// (an exploration, not kept as a test: 4 differ) still find, inside
// failed blocks only: an Execute of a portal whose statement the proxy
// lost track of (a later Bind of its name failed after PostgreSQL had
// replaced it with an empty portal) gets 25P02 where PostgreSQL answers
// EmptyQueryResponse — the proxy does not run a portal it cannot tell
// from a COMMIT, which would commit its shard's part — and a Bind
// answered where PostgreSQL says 25P02. Outside failed blocks, a
// parameter value PostgreSQL rejects at Bind (a binary integer of the
// wrong width, "abc" for a statement without a key) in a statement the
// proxy runs over shards is answered BindComplete and fails at Execute,
// on the shards.
func TestShardedExtendedProtocolDifferential(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 3*time.Minute)
	refDSN := env.referenceDatabase(t, ctx, "fuzz_reference", "CREATE TABLE fz (id int PRIMARY KEY, v text)",
		"INSERT INTO fz SELECT g, 'v' || g FROM generate_series(1, 5) g",
		"CREATE TABLE users (id bigint PRIMARY KEY, name text)",
		"INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 40) g")
	// A Bind with the wrong number of parameters for a statement the
	// proxy runs over every shard itself (it answered BindComplete and
	// failed at Execute), and for one routed by key.
	t.Run("parameter count", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for _, q := range []string{"SELECT count(*) FROM users", "SELECT name FROM users WHERE id = $1"} {
			for _, params := range [][][]byte{nil, {[]byte("1")}, {[]byte("1"), []byte("2")}} {
				msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: q}, &pgproto3.Bind{Parameters: params},
					&pgproto3.Execute{}, &pgproto3.Sync{}}
				wire.Same(t, want, got, msgs, fmt.Sprintf("%s with %d parameters", q, len(params)))
			}
		}
	})
	// An Execute in a failed transaction block of a portal the proxy runs
	// over every shard, bound to a named portal before the block failed
	// (run to completion already, or not yet): 25P02 as on PostgreSQL.
	t.Run("cross-shard portal in a failed block", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		execute := []pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}}
		for _, run := range []bool{true, false} {
			bind := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT id FROM users ORDER BY id LIMIT 3"},
				&pgproto3.Bind{DestinationPortal: "p1"}}
			if run {
				bind = append(bind, &pgproto3.Execute{Portal: "p1"})
			}
			bind = append(bind, &pgproto3.Sync{})
			for _, msgs := range [][]pgproto3.FrontendMessage{{&pgproto3.Query{String: "BEGIN"}}, bind,
				{&pgproto3.Query{String: "SELECT 1/0"}}, execute, execute, {&pgproto3.Query{String: "ROLLBACK"}}} {
				wire.Same(t, want, got, msgs, fmt.Sprintf("portal run before: %v", run))
			}
		}
	})
	// A Bind of a statement the proxy runs over every shard, prepared
	// before the transaction block failed: PostgreSQL refuses it with 25P02
	// (the proxy answered BindComplete). And key parameters PostgreSQL
	// rejects at Bind, with its SQLSTATEs (the proxy said 22P02 for all):
	// 22003 out of range, 22021 a NUL byte in text, 08P01 a binary
	// integer too short, 22P03 too long.
	t.Run("bind errors", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for _, msgs := range [][]pgproto3.FrontendMessage{
			{&pgproto3.Query{String: "BEGIN"}},
			{&pgproto3.Parse{Name: "scatter", Query: "SELECT count(*) FROM users"}, &pgproto3.Sync{}},
			{&pgproto3.Query{String: "SELECT 1/0"}},
			{&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "scatter"}, &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "scatter"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Sync{}},
			{&pgproto3.Query{String: "ROLLBACK"}},
			{&pgproto3.Parse{Name: "point", Query: "SELECT name FROM users WHERE id = $1"},
				&pgproto3.Bind{PreparedStatement: "point", Parameters: [][]byte{[]byte("9223372036854775808")}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "point", Parameters: [][]byte{[]byte("abc")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "point", Parameters: [][]byte{{0, 0, 0, 3}}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "point", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{[]byte("7")}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "point", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{make([]byte, 9)}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "point", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 0, 0, 0, 0, 7}}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			// A cross-shard statement with a declared parameter it does not
			// use: the proxy answers its Bind, and checks the value as
			// PostgreSQL's Bind would.
			{&pgproto3.Parse{Name: "declared", Query: "SELECT id FROM users ORDER BY id LIMIT 3", ParameterOIDs: []uint32{23}},
				&pgproto3.Bind{PreparedStatement: "declared", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{[]byte("5")}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "declared", Parameters: [][]byte{{'5', 0}}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "declared", Parameters: [][]byte{[]byte("abc")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "declared", Parameters: [][]byte{[]byte("99999999999")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "declared", Parameters: [][]byte{[]byte(" +7 ")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "declared", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 5}}},
				&pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "point", Parameters: [][]byte{[]byte("7")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		} {
			wire.Same(t, want, got, msgs, "bind")
		}
	})
	// A portal the proxy runs over shards, bound inside a transaction
	// block, is gone when the block ends (by a simple or an extended
	// ROLLBACK or COMMIT), as PostgreSQL's portals are (the proxy answered
	// a later Execute of it "SELECT 0" or ran it again).
	t.Run("portal after its transaction", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for _, end := range [][]pgproto3.FrontendMessage{{&pgproto3.Query{String: "ROLLBACK"}}, {&pgproto3.Query{String: "COMMIT"}},
			{&pgproto3.Parse{Query: "ROLLBACK"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}} {
			for _, msgs := range [][]pgproto3.FrontendMessage{{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Parse{Name: "cnt", Query: "SELECT count(*) FROM users"}, &pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "cnt"},
					&pgproto3.Bind{PreparedStatement: "cnt"}, &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				end,
				{&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Execute{}, &pgproto3.Sync{}},
				{&pgproto3.Close{ObjectType: 'S', Name: "cnt"}, &pgproto3.Sync{}}} {
				wire.Same(t, want, got, msgs, wire.Describe(end))
			}
		}
	})
	// A duplicate Parse of a text whose table only the default shard has,
	// after statements that went to other shards: 42P05 as on PostgreSQL
	// (the proxy had the text parsed on the last shard used: 42P01).
	t.Run("duplicate parse after other shards", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		dup := []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "fzs", Query: "SELECT v FROM fz ORDER BY id"}, &pgproto3.Sync{}}
		want.Run(dup)
		got.Run(dup)
		for k := 1; k <= 8; k++ {
			point := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT name FROM users WHERE id = $1"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte(fmt.Sprint(k))}}, &pgproto3.Execute{}, &pgproto3.Sync{}}
			for _, msgs := range [][]pgproto3.FrontendMessage{point, dup} {
				wire.Same(t, want, got, msgs, fmt.Sprintf("after key %d", k))
			}
		}
	})
	// A portal the proxy runs over shards, executed twice in one batch:
	// PostgreSQL answers the second Execute of a read with no rows and
	// refuses to run a write again (the proxy ran both again: rows twice,
	// the UPDATE twice).
	t.Run("portal executed twice", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for _, q := range []string{"SELECT count(*) FROM users", "SELECT id FROM users ORDER BY id LIMIT 3",
			"UPDATE users SET name = name || 'x' WHERE id > 30", "SELECT name FROM users WHERE id > 38 ORDER BY id"} {
			msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: q}, &pgproto3.Bind{DestinationPortal: "p1"},
				&pgproto3.Execute{Portal: "p1"}, &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}}
			wire.Same(t, want, got, msgs, q)
		}
	})
	// The proxy runs the parts of a cross-shard statement in a portal of
	// its own on each shard: the client's unnamed portal in a transaction
	// block outlives the statement, as on PostgreSQL, and the client never
	// sees the proxy's (it ran them in the unnamed portal: a later Execute
	// of the client's answered "SELECT 0", and a Describe of an unnamed
	// portal the client never bound described the part's). Not covered: a
	// portal bound outside a transaction block, earlier in the batch, on a
	// shard the statement runs on — the part's Sync ends the shard's
	// implicit transaction and the portal with it (34000).
	t.Run("unnamed portal beside a cross-shard statement", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for k := 1; k <= 4; k++ {
			key := [][]byte{[]byte(fmt.Sprint(k))}
			for _, msgs := range [][]pgproto3.FrontendMessage{
				{&pgproto3.Parse{Name: "cnt", Query: "SELECT count(*) FROM users"}, &pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "cnt"},
					&pgproto3.Execute{Portal: "p1"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
				{&pgproto3.Close{ObjectType: 'S', Name: "cnt"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Parse{Query: "SELECT name FROM users WHERE id = $1"}, &pgproto3.Bind{Parameters: key}, &pgproto3.Sync{}},
				{&pgproto3.Parse{Query: "SELECT id FROM users ORDER BY id LIMIT 3"}, &pgproto3.Bind{DestinationPortal: "p1"}, &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "COMMIT"}},
			} {
				wire.Same(t, want, got, msgs, fmt.Sprintf("key %d", k))
			}
		}
	})
	// Portals bound on other shards before a transaction block failed:
	// an Execute or a Describe of one with rows gets 25P02, as on
	// PostgreSQL, and so does a Parse after an Execute that could not end
	// the block (the shard outside the failure ran, described or parsed
	// them).
	t.Run("portals in a failed block", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for k := 1; k <= 4; k++ {
			key := [][]byte{[]byte(fmt.Sprint(k))}
			for _, msgs := range [][]pgproto3.FrontendMessage{
				{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Parse{Name: "pt", Query: "SELECT name FROM users WHERE id = $1"}, &pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "pt", Parameters: key},
					&pgproto3.Parse{Name: "cnt", Query: "SELECT count(*) FROM users"}, &pgproto3.Bind{DestinationPortal: "p3", PreparedStatement: "cnt"},
					&pgproto3.Parse{Query: ""}, &pgproto3.Bind{}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "SELECT 1/0"}},
				{&pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{}},
				{&pgproto3.Describe{ObjectType: 'P', Name: "p2"}, &pgproto3.Sync{}},
				{&pgproto3.Describe{ObjectType: 'P', Name: "p3"}, &pgproto3.Sync{}},
				{&pgproto3.Execute{}, &pgproto3.Parse{Name: "pt2", Query: "SELECT name FROM users WHERE id = $1"}, &pgproto3.Sync{}},
				{&pgproto3.Execute{}, &pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "ROLLBACK"}},
				{&pgproto3.Close{ObjectType: 'S', Name: "pt"}, &pgproto3.Close{ObjectType: 'S', Name: "cnt"}, &pgproto3.Sync{}},
			} {
				wire.Same(t, want, got, msgs, fmt.Sprintf("key %d", k))
			}
		}
	})
	// FETCH, MOVE and CLOSE of a cross-shard cursor (which the proxy runs
	// itself) in a failed block get 25P02 as simple Queries too: the proxy
	// closed the cursor and answered CLOSE CURSOR.
	t.Run("cross-shard cursor in a failed block", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		for _, stmt := range []string{"CLOSE c", "FETCH 1 FROM c", "MOVE 1 IN c", "CLOSE ALL", "SELECT 1; CLOSE c"} {
			for _, sql := range []string{"BEGIN", "DECLARE c CURSOR FOR SELECT id, name FROM users ORDER BY id", "SELECT 1/0", stmt, "ROLLBACK"} {
				wire.Same(t, want, got, []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}, "after a failure: "+stmt)
			}
		}
	})
	// ROLLBACK TO SAVEPOINT drops the cursors declared after the
	// savepoint, as PostgreSQL does, and keeps those declared before (at
	// the position they reached); a cross-shard cursor the proxy runs
	// stayed, and a second DECLARE of its name failed with 42P03.
	t.Run("cross-shard cursor and ROLLBACK TO SAVEPOINT", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		declare := "DECLARE c CURSOR FOR SELECT id, name FROM users ORDER BY id"
		for _, seq := range [][]string{
			{"BEGIN", "SAVEPOINT s", declare, "FETCH 1 FROM c", "ROLLBACK TO SAVEPOINT s", "FETCH 1 FROM c", "ROLLBACK"},
			{"BEGIN", "SAVEPOINT s", declare, "ROLLBACK TO s", declare, "FETCH 2 FROM c", "ROLLBACK"},
			{"BEGIN", declare, "SAVEPOINT s", "FETCH 1 FROM c", "SELECT 1/0", "ROLLBACK TO SAVEPOINT s", "FETCH 1 FROM c", "ROLLBACK"},
			{"BEGIN", "SAVEPOINT a", declare, "SAVEPOINT b", "ROLLBACK TO b", "FETCH 1 FROM c", "ROLLBACK TO a", "FETCH 1 FROM c", "ROLLBACK"},
		} {
			for _, sql := range seq {
				wire.Same(t, want, got, []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}, strings.Join(seq, "; "))
			}
		}
	})
	// A cross-shard DECLARE right after a BEGIN in the same pipelined batch
	// runs in the block it opened (the proxy answered 25P01, no block yet);
	// in a batch without BEGIN it fails with 25P01, as on PostgreSQL.
	t.Run("cross-shard cursor after BEGIN in one batch", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		stmt := func(sql string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
		}
		declare := stmt("DECLARE c CURSOR FOR SELECT id, name FROM users ORDER BY id")
		for _, msgs := range [][]pgproto3.FrontendMessage{
			append(append(append(stmt("BEGIN"), declare...), stmt("FETCH 2 FROM c")...), &pgproto3.Sync{}),
			{&pgproto3.Query{String: "ROLLBACK"}},
			append(append(stmt("SELECT 1"), declare...), &pgproto3.Sync{}),
		} {
			wire.Same(t, want, got, msgs, "DECLARE in a batch")
		}
	})
	// A Close of a portal skipped after an error earlier in its batch
	// leaves the portal: the proxy forgot it, and answered a later Execute
	// of the portal (an empty query, which runs in a failed block) with
	// 25P02 where PostgreSQL answers EmptyQueryResponse.
	t.Run("portal close skipped after an error", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		failures := []string{"SELEC oops"} // raised by the proxy
		for k := 1; k <= 4; k++ {
			failures = append(failures, fmt.Sprintf("SELECT 1/0 FROM users WHERE id = %d", k)) // on some shard
		}
		for _, failure := range failures {
			for _, msgs := range [][]pgproto3.FrontendMessage{
				{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Parse{Query: ""}, &pgproto3.Bind{DestinationPortal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: failure}},
				{&pgproto3.Describe{ObjectType: 'P', Name: "nosuch"}, &pgproto3.Close{ObjectType: 'P', Name: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "ROLLBACK"}},
			} {
				wire.Same(t, want, got, msgs, "failure "+failure)
			}
		}
	})
	// A Bind to a named portal that is bound already fails with 42P03, as
	// on PostgreSQL, also when the two Binds go to different shards or
	// the first is one the proxy runs itself (it answered BindComplete);
	// after ROLLBACK TO SAVEPOINT dropped the portal, the name is free.
	t.Run("portal bound twice", func(t *testing.T) {
		want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
		point := func(k int) *pgproto3.Bind {
			return &pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "pt", Parameters: [][]byte{[]byte(fmt.Sprint(k))}}
		}
		prepare := []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "pt", Query: "SELECT name FROM users WHERE id = $1"},
			&pgproto3.Parse{Name: "cnt", Query: "SELECT count(*) FROM users"}, &pgproto3.Sync{}}
		wire.Same(t, want, got, prepare, "prepare")
		for k := 2; k <= 5; k++ {
			for _, msgs := range [][]pgproto3.FrontendMessage{
				{point(1), point(k), &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "cnt"}, point(k), &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{point(k), &pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "cnt"}, &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{point(1), &pgproto3.Execute{Portal: "p1"}, &pgproto3.Close{ObjectType: 'P', Name: "p1"}, point(k), &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{&pgproto3.Query{String: "BEGIN"}},
				{&pgproto3.Query{String: "SAVEPOINT s"}},
				{point(1), &pgproto3.Sync{}},
				{&pgproto3.Query{String: "ROLLBACK TO SAVEPOINT s"}},
				{point(k), &pgproto3.Execute{Portal: "p1"}, &pgproto3.Sync{}},
				{point(1), &pgproto3.Sync{}},
				{&pgproto3.Query{String: "COMMIT"}},
			} {
				wire.Same(t, want, got, msgs, fmt.Sprintf("key %d", k))
			}
		}
	})
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			want, got := wire.Open(t, ctx, refDSN), wire.Open(t, ctx, env.proxy.dsn("postgres"))
			failed := false // the transaction block failed in an earlier batch
			for i := 0; i < 300; i++ {
				msgs := wire.RandomBatch(rng)
				w, g := want.Run(msgs), got.Run(msgs)
				w, _ = inFailedBlock(w, failed)
				g, failed = inFailedBlock(g, failed)
				if strings.Join(g, "\n") != strings.Join(w, "\n") {
					t.Fatalf("batch %d differs\nmessages:\n%s\nPostgreSQL:\n%s\nthrough the proxy:\n%s",
						i, wire.Describe(msgs), strings.Join(w, "\n"), strings.Join(g, "\n"))
				}
			}
		})
	}
}

// referenceDatabase creates the database name on the first shard's
// primary, for the plain PostgreSQL side of a differential test, runs setup
// there and through the proxy, and returns its DSN.
func (e *shardedEnv) referenceDatabase(t *testing.T, ctx context.Context, name string, setup ...string) string {
	mustExec(t, ctx, e.direct[e.names[0]], "CREATE DATABASE "+name)
	dsn := e.cluster.Shards[0].Primary.DSN(name)
	app := connectPgx(t, ctx, e.proxy.dsn("postgres"))
	ref := connectPgx(t, ctx, dsn)
	for _, sql := range setup {
		mustExec(t, ctx, app, sql)
		mustExec(t, ctx, ref, sql)
	}
	return dsn
}

// inFailedBlock replaces the SQLSTATE of errors raised inside an already
// failed transaction block (failed says the block had failed before these
// lines; then after a "ready E", until the next "ready") with one
// placeholder, and reports whether the block is failed at the end.
func inFailedBlock(lines []string, failed bool) ([]string, bool) {
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "ready "):
			failed = l == "ready E"
		case failed && strings.HasPrefix(l, "error "):
			lines[i] = "error (in a failed transaction block)"
		}
	}
	return lines, failed
}
