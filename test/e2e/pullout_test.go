package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestShardedPullOut: uncorrelated subqueries that need other shards run
// first (plan.PullOut) — inside a transaction they see its own writes;
// a scalar subquery with two rows fails like PostgreSQL (21000) and one
// with too many rows to substitute with 0A000, the session serving on;
// EXPLAIN shows both parts and the shards' plans of the subquery; an
// Execute with a row limit suspends the outer read.
func TestShardedPullOut(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 2*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	fillMergeData(t, ctx, app)

	sameCountry := "SELECT id, name FROM users WHERE country IN (SELECT country FROM users WHERE id = $1) ORDER BY id"
	atMax := "SELECT count(*) FROM users WHERE id >= (SELECT max(id) FROM users)"
	for _, simple := range []bool{true, false} {
		t.Run(fmt.Sprintf("transaction simple=%v", simple), func(t *testing.T) {
			tx, err := app.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			mode := pgx.QueryExecModeCacheStatement
			if simple {
				mode = pgx.QueryExecModeSimpleProtocol
			}
			if _, err := tx.Exec(ctx, "INSERT INTO users (id, name, country) VALUES (1001, 'newbie', 'zz')", mode); err != nil {
				t.Fatal(err)
			}
			got := queryStrings(t, ctx, tx, sameCountry, mode, 1001)
			if want := "[1001 newbie]"; fmt.Sprint(got) != want {
				t.Errorf("%s in the transaction that wrote user 1001: %v, want %s", sameCountry, got, want)
			}
			if got := queryStrings(t, ctx, tx, atMax, mode); fmt.Sprint(got) != "[1]" {
				t.Errorf("%s in the transaction: %v, want [1] (user 1001 is the newest)", atMax, got)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if got := queryStrings(t, ctx, app, sameCountry, mode, 1001); len(got) != 0 {
				t.Errorf("%s after ROLLBACK: %v, want no rows", sameCountry, got)
			}
		})
	}

	// Several users per country: a scalar subquery returns many rows.
	for _, simple := range []bool{true, false} {
		_, err := rowsText(ctx, app, "SELECT id FROM users WHERE id > (SELECT id FROM users WHERE country = 'de')", simple)
		if sqlState(err) != "21000" || !strings.Contains(err.Error(), "more than one row returned by a subquery used as an expression") {
			t.Errorf("scalar subquery with several rows (simple=%v): %v, want 21000 like PostgreSQL", simple, err)
		}
		_, err = rowsText(ctx, app, "SELECT count(*) FROM posts WHERE author_id IN (SELECT u.id * 100 + g FROM users u, generate_series(1, 100) g)", simple)
		if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "too many rows to pull out") {
			t.Errorf("IN subquery with 16,000 rows (simple=%v): %v, want 0A000 too many rows", simple, err)
		}
		if got, err := rowsText(ctx, app, "SELECT count(*) FROM users WHERE id <= (SELECT min(id) FROM users WHERE id > 9)", simple); err != nil || fmt.Sprint(got) != "[10]" {
			t.Errorf("after the errors (simple=%v): %v %v, want [10]", simple, got, err)
		}
	}

	t.Run("Execute with a row limit suspends the outer read", func(t *testing.T) {
		run := rawRunner(t, ctx, env.proxy.dsn("postgres"))
		// Users of user 1's country ("fr"): ids 1, 6, …, 156.
		var want []string
		for id := 1; id <= 160; id += 5 {
			want = append(want, fmt.Sprint(id))
		}
		exec := &pgproto3.Execute{MaxRows: 10}
		for _, tx := range []string{"I", "T"} {
			if tx == "T" {
				run(&pgproto3.Query{String: "BEGIN"})
			}
			rows, kinds := run(&pgproto3.Parse{Query: "SELECT id FROM users WHERE country IN (SELECT country FROM users WHERE id = $1) ORDER BY id"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}}, exec, exec, exec, exec, &pgproto3.Sync{})
			// The same chunks and tags as a plain cross-shard portal.
			_, wantKinds := run(&pgproto3.Parse{Query: "SELECT id FROM users WHERE country = 'fr' ORDER BY id"},
				&pgproto3.Bind{}, exec, exec, exec, exec, &pgproto3.Sync{})
			if !strings.HasPrefix(strings.Join(wantKinds, " "), "suspended@10 suspended@20 suspended@30 SELECT ") ||
				strings.Join(kinds, " ") != strings.Join(wantKinds, " ") || strings.Join(rows, ",") != strings.Join(want, ",") {
				t.Errorf("pulled-out portal (status %s): %v %v; want %v %v", tx, rows, kinds, want, wantKinds)
			}
			if tx == "T" {
				run(&pgproto3.Query{String: "COMMIT"})
			}
		}
	})

	// A table joined off the keys but restricted by its own key is read
	// first; inside a transaction both parts see its writes.
	joined := "SELECT u.name, p.author_id, p.id FROM users u JOIN posts p ON p.id = u.id WHERE u.id = $1 ORDER BY p.author_id"
	for _, simple := range []bool{true, false} {
		mode := pgx.QueryExecModeCacheStatement
		if simple {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"INSERT INTO users (id, name, country) VALUES (1002, 'joiner', 'zz')",
			"INSERT INTO posts (author_id, id, body, score) VALUES (3, 1002, 'a', 1), (4, 1002, 'b', 2)",
		} {
			if _, err := tx.Exec(ctx, q, mode); err != nil {
				t.Fatal(err)
			}
		}
		if got := queryStrings(t, ctx, tx, joined, mode, 1002); fmt.Sprint(got) != "[joiner 3 1002 joiner 4 1002]" {
			t.Errorf("%s (simple=%v) in the transaction that wrote the rows: %v, want [joiner 3 1002 joiner 4 1002]", joined, simple, got)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if got := queryStrings(t, ctx, app, joined, mode, 1002); len(got) != 0 {
			t.Errorf("%s (simple=%v) after ROLLBACK: %v, want no rows", joined, simple, got)
		}
	}
	lines := queryStrings(t, ctx, app, "EXPLAIN SELECT u.name, p.id FROM users u JOIN posts p ON p.id = u.id WHERE u.id = 7", pgx.QueryExecModeSimpleProtocol)
	plan := strings.Join(lines, "\n")
	for _, want := range []string{"PullOut", `outer="SELECT u.name, p.id FROM $subquery1 JOIN posts p ON p.id = u.id"`, "SELECT u.* FROM users u WHERE u.id = 7", "Route",
		"$subquery1:", "Scan"} {
		if !strings.Contains(plan, want) {
			t.Errorf("EXPLAIN of a pulled-out table lacks %q:\n%s", want, plan)
		}
	}

	lines = queryStrings(t, ctx, app, "EXPLAIN SELECT id FROM users WHERE id > (SELECT avg(id) FROM users)", pgx.QueryExecModeSimpleProtocol)
	plan = strings.Join(lines, "\n")
	for _, want := range []string{"PullOut", `outer="SELECT id FROM users WHERE id > $subquery1"`, "Subquery", "Aggregate", "Scatter",
		"$subquery1:", "shard " + env.names[0] + ":", "Scan on users"} {
		if !strings.Contains(plan, want) {
			t.Errorf("EXPLAIN lacks %q:\n%s", want, plan)
		}
	}
}

// queryStrings runs sql on q and returns each row's values joined by a
// space.
func queryStrings(t *testing.T, ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) []string {
	t.Helper()
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}
