package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestInsertSelect: INSERT … SELECT into a distributed table over 4
// shards. A colocated SELECT (the target key is the source's key) is pushed
// down to the shards; any other goes through the proxy in batches of 1,000
// rows. Either way every row lands on the shard its key hashes to (checked
// on each shard directly), the tag counts all rows, RETURNING and Bind
// parameters work, a unique violation in a late batch leaves no row of the
// statement anywhere, and inside a transaction the statement sees and
// joins the transaction's own writes.
func TestInsertSelect(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 3*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	mustExec(t, ctx, app, "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, country text)")
	mustExec(t, ctx, app, "CREATE TABLE posts (author_id bigint NOT NULL, id bigserial NOT NULL, body text, PRIMARY KEY (author_id, id))")
	mustExec(t, ctx, app, "CREATE TABLE countries (code text PRIMARY KEY, name text)")
	var values []string
	for id := 1; id <= 200; id++ {
		values = append(values, fmt.Sprintf("(%d, 'user-%d', '%s')", id, id, []string{"de", "fr", "it", "nl"}[id%4]))
	}
	mustExec(t, ctx, app, "INSERT INTO users (id, name, country) VALUES "+strings.Join(values, ", "))

	// postsOnShards counts posts with id = postID on each shard, failing
	// the test for a row on a shard its author_id does not hash to.
	postsOnShards := func(t *testing.T, postID int) int {
		t.Helper()
		total := 0
		for _, s := range env.names {
			rows, err := env.direct[s].Query(ctx, "SELECT author_id FROM posts WHERE id = $1", postID)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if want := env.shardOf(t, k); want != s {
					t.Errorf("post (%d, %d) is on shard %s, its key belongs on %s", k, postID, s, want)
				}
			}
			total += len(keys)
		}
		return total
	}
	explain := func(t *testing.T, sql string) string {
		t.Helper()
		lines, err := rowsText(ctx, app, "EXPLAIN "+sql, true)
		if err != nil {
			t.Fatalf("EXPLAIN %s: %v", sql, err)
		}
		return strings.Join(lines, "\n")
	}

	t.Run("colocated pushdown", func(t *testing.T) {
		sql := "INSERT INTO posts (author_id, id, body) SELECT id, 1, name FROM users"
		if got := explain(t, sql); !strings.Contains(got, "Scatter") || !strings.Contains(got, "pushed down") {
			t.Errorf("EXPLAIN of a colocated INSERT … SELECT:\n%s\nwant a pushed-down Scatter", got)
		}
		tag := mustExec(t, ctx, app, sql)
		if tag.String() != "INSERT 0 200" {
			t.Errorf("tag %q, want INSERT 0 200", tag)
		}
		if n := postsOnShards(t, 1); n != 200 {
			t.Errorf("%d posts with id 1 on the shards, want 200", n)
		}
	})

	t.Run("via the proxy in batches", func(t *testing.T) {
		// 3,000 rows (3 batches), keys from an expression.
		sql := "INSERT INTO posts (author_id, id, body) SELECT u.id * 100 + g, 2, u.name FROM users u, generate_series(1, 15) g"
		if got := explain(t, sql); !strings.Contains(got, "insert_select via proxy") || !strings.Contains(got, "select:") || !strings.Contains(got, "Seq Scan on users") {
			t.Errorf("EXPLAIN:\n%s\nwant insert_select via proxy and the shards' plans of the SELECT", got)
		}
		if _, err := rowsText(ctx, app, "EXPLAIN ANALYZE "+sql, true); sqlState(err) != "0A000" {
			t.Errorf("EXPLAIN ANALYZE of an INSERT … SELECT via the proxy: %v, want 0A000", err)
		}
		tag := mustExec(t, ctx, app, sql)
		if tag.String() != "INSERT 0 3000" {
			t.Errorf("tag %q, want INSERT 0 3000", tag)
		}
		if n := postsOnShards(t, 2); n != 3000 {
			t.Errorf("%d posts with id 2 on the shards, want 3000", n)
		}
	})

	t.Run("extended protocol with parameters and RETURNING", func(t *testing.T) {
		sql := "INSERT INTO posts (author_id, id, body) SELECT id + $1, 3, name FROM users WHERE id <= $2 ORDER BY id RETURNING author_id, body"
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			base := int64(5000)
			if mode == pgx.QueryExecModeSimpleProtocol {
				base = 6000
			}
			got := queryStrings(t, ctx, app, sql, mode, base, 10)
			if len(got) != 10 || !strings.Contains(strings.Join(got, ","), fmt.Sprintf("%d user-10", base+10)) {
				t.Errorf("RETURNING (mode %v): %v, want 10 rows up to %d user-10", mode, got, base+10)
			}
		}
		if n := postsOnShards(t, 3); n != 20 {
			t.Errorf("%d posts with id 3, want 20", n)
		}
		got := queryStrings(t, ctx, app, "INSERT INTO posts (author_id, id, body) SELECT id + 1, 3, name FROM users WHERE id < 0 RETURNING author_id", pgx.QueryExecModeSimpleProtocol)
		if len(got) != 0 {
			t.Errorf("RETURNING of no row: %v", got)
		}
	})

	t.Run("a failure in a late batch leaves no row", func(t *testing.T) {
		// The last row (ordered) conflicts with a row already there.
		mustExec(t, ctx, app, "INSERT INTO posts (author_id, id, body) VALUES (720015, 5, 'first')")
		sql := "INSERT INTO posts (author_id, id, body) SELECT 700000 + u.id * 100 + g, 5, u.name FROM users u, generate_series(1, 15) g ORDER BY 1"
		_, err := app.Exec(ctx, sql)
		if sqlState(err) != "23505" {
			t.Fatalf("INSERT … SELECT with a duplicate key in its last batch: %v, want 23505", err)
		}
		if n := postsOnShards(t, 5); n != 1 {
			t.Errorf("%d posts with id 5 on the shards after the failed statement, want only the first one", n)
		}
		// Inside a transaction: the failure aborts it, nothing commits.
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, sql); sqlState(err) != "23505" {
			t.Fatalf("in a transaction: %v, want 23505", err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); sqlState(err) != "25P02" {
			t.Errorf("after the failure in the transaction: %v, want 25P02", err)
		}
		tx.Rollback(ctx)
		if n := postsOnShards(t, 5); n != 1 {
			t.Errorf("%d posts with id 5 after the rolled-back transaction, want 1", n)
		}
	})

	t.Run("inside a transaction", func(t *testing.T) {
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "INSERT INTO users (id, name) VALUES (9001, 'new')"); err != nil {
			t.Fatal(err)
		}
		// Pushed down, and through the proxy: both see user 9001.
		if tag, err := tx.Exec(ctx, "INSERT INTO posts (author_id, id, body) SELECT id, 6, name FROM users WHERE id >= 9001"); err != nil || tag.String() != "INSERT 0 1" {
			t.Fatalf("pushed down in the transaction: %v %v", tag, err)
		}
		if tag, err := tx.Exec(ctx, "INSERT INTO posts (author_id, id, body) SELECT id + g, 6, name FROM users, generate_series(1, 3) g WHERE id >= 9001"); err != nil || tag.String() != "INSERT 0 3" {
			t.Fatalf("through the proxy in the transaction: %v %v", tag, err)
		}
		got := queryStrings(t, ctx, tx, "SELECT author_id FROM posts WHERE id = 6 ORDER BY author_id")
		if fmt.Sprint(got) != "[9001 9002 9003 9004]" {
			t.Errorf("posts of the transaction: %v", got)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if n := postsOnShards(t, 6); n != 0 {
			t.Errorf("%d posts with id 6 after ROLLBACK, want 0", n)
		}
	})

	t.Run("omitted generated columns come from the allocator", func(t *testing.T) {
		// users.id (the key) and posts.id are bigserial: without them the
		// statement goes through the proxy, which allocates cluster-wide.
		// Past the explicit ids of the other subtests (the allocator draws
		// from the default shard's sequence).
		mustExec(t, ctx, app, "SELECT setval('posts_id_seq', 1000000)")
		mustExec(t, ctx, app, "SELECT setval('users_id_seq', 1000000)")
		sql := "INSERT INTO posts (author_id, body) SELECT id, 'generated' FROM users WHERE id <= 30"
		if got := explain(t, sql); !strings.Contains(got, "insert_select via proxy") {
			t.Errorf("EXPLAIN with posts.id omitted:\n%s\nwant insert_select via proxy", got)
		}
		mustExec(t, ctx, app, sql)
		ids := map[string]bool{}
		for _, s := range env.names {
			for _, id := range queryStrings(t, ctx, env.direct[s], "SELECT id FROM posts WHERE body = 'generated'") {
				if ids[id] {
					t.Errorf("posts.id %s allocated twice", id)
				}
				ids[id] = true
			}
		}
		if len(ids) != 30 {
			t.Errorf("%d distinct generated posts.id, want 30", len(ids))
		}
		got := queryStrings(t, ctx, app, "INSERT INTO users (name) SELECT 'copy of ' || name FROM users WHERE id <= 5 RETURNING id")
		if len(got) != 5 {
			t.Fatalf("RETURNING of 5 users with allocated keys: %v", got)
		}
		for _, id := range got {
			var k int64
			fmt.Sscan(id, &k)
			if n := queryStrings(t, ctx, env.direct[env.shardOf(t, k)], "SELECT count(*) FROM users WHERE id = $1", k); fmt.Sprint(n) != "[1]" {
				t.Errorf("user %d is not on its shard %s", k, env.shardOf(t, k))
			}
		}
	})

	t.Run("pipelined batch", func(t *testing.T) {
		// BEGIN in the same pipeline: the statement joins the client's
		// transaction, which the batch's COMMIT ends.
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue("INSERT INTO users (id, name) VALUES (9101, 'piped')")
		b.Queue("INSERT INTO posts (author_id, id, body) SELECT id + g, 8, name FROM users, generate_series(1, 4) g WHERE id = 9101")
		b.Queue("COMMIT")
		if err := app.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("batch with BEGIN: %v", err)
		}
		if n := postsOnShards(t, 8); n != 4 {
			t.Errorf("%d posts with id 8 after the pipelined transaction, want 4", n)
		}
		// A refusal inside the pipelined transaction fails it: nothing of
		// it commits, and the session is usable afterwards.
		b = &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue("INSERT INTO users (id, name) VALUES (9102, 'piped')")
		b.Queue("INSERT INTO posts (author_id, id, body) SELECT u.id * 100 + g, 9, name FROM users u, generate_series(1, 10) g ON CONFLICT (author_id, id) DO UPDATE SET body = excluded.body")
		b.Queue("COMMIT")
		if err := app.SendBatch(ctx, b).Close(); sqlState(err) != "0A000" {
			t.Errorf("batch with a DO UPDATE of 2,000 rows: %v, want 0A000", err)
		}
		app.Exec(ctx, "ROLLBACK")
		if got := queryStrings(t, ctx, app, "SELECT count(*) FROM users WHERE id = 9102"); fmt.Sprint(got) != "[0]" {
			t.Errorf("user of the failed pipelined transaction: %v, want none", got)
		}
		if n := postsOnShards(t, 9); n != 0 {
			t.Errorf("%d posts with id 9 after the refused statement, want 0", n)
		}
		// Alone in a pipeline outside a transaction: its own atomic write.
		b = &pgx.Batch{}
		b.Queue("INSERT INTO posts (author_id, id, body) SELECT id + 20000, 8, name FROM users WHERE id <= 50")
		if err := app.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("batch without BEGIN: %v", err)
		}
		if n := postsOnShards(t, 8); n != 54 {
			t.Errorf("%d posts with id 8, want 54", n)
		}
	})

	t.Run("into a reference table", func(t *testing.T) {
		tag := mustExec(t, ctx, app, "INSERT INTO countries (code, name) SELECT DISTINCT country, upper(country) FROM users WHERE country IS NOT NULL")
		if tag.String() != "INSERT 0 4" {
			t.Errorf("tag %q, want INSERT 0 4", tag)
		}
		for _, s := range env.names {
			var got string
			if err := env.direct[s].QueryRow(ctx, "SELECT string_agg(code || '=' || name, ',' ORDER BY code) FROM countries").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != "de=DE,fr=FR,it=IT,nl=NL" {
				t.Errorf("countries on shard %s: %q", s, got)
			}
		}
		// Reference to distributed: through the proxy.
		tag = mustExec(t, ctx, app, "INSERT INTO posts (author_id, id, body) SELECT ascii(code) * 1000 + ascii(substr(code, 2)), 7, code FROM countries")
		if tag.String() != "INSERT 0 4" {
			t.Errorf("tag %q, want INSERT 0 4", tag)
		}
		if n := postsOnShards(t, 7); n != 4 {
			t.Errorf("%d posts with id 7, want 4", n)
		}
	})
}
