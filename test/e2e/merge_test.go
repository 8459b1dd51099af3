package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/test/wire"
)

// mergeQueries are cross-shard reads the proxy merges itself; each must
// give the rows one PostgreSQL gives for the same data (in order when the
// query orders them).
var mergeQueries = []string{
	"SELECT id, name FROM users ORDER BY id",
	"SELECT id, name FROM users ORDER BY id DESC LIMIT 7",
	"SELECT id, name FROM users ORDER BY id LIMIT 5 OFFSET 11",
	"SELECT name, id FROM users ORDER BY name, id DESC LIMIT 20",
	"SELECT id FROM users ORDER BY country NULLS FIRST, id LIMIT 15",
	"SELECT count(*) FROM users",
	"SELECT count(*), sum(id), min(id), max(id) FROM users",
	"SELECT avg(id) FROM users",
	"SELECT count(*) FROM users WHERE id < 0",
	"SELECT sum(id) FROM users WHERE id < 0",
	"SELECT country, count(*) FROM users GROUP BY country ORDER BY country NULLS LAST",
	"SELECT country, count(*) AS n FROM users GROUP BY country HAVING count(*) > 30 ORDER BY n DESC, country",
	"SELECT author_id, count(*), max(id) FROM posts GROUP BY author_id ORDER BY count(*) DESC, author_id LIMIT 10",
	"SELECT DISTINCT country FROM users ORDER BY country",
	"SELECT count(DISTINCT country) FROM users",
	"SELECT author_id, length(body) FROM posts ORDER BY length(body) DESC, author_id, id LIMIT 12",
	"SELECT u.id, u.name, p.body FROM users u JOIN posts p ON p.author_id = u.id ORDER BY p.body, u.id LIMIT 9",
	"SELECT sum(score) FROM posts",
	"SELECT id FROM users WHERE id IN (3, 17, 25, 99, 140) ORDER BY id",
	"SELECT avg(length(body))::numeric(10,4) FROM posts",
	"SELECT country, round(avg(id), 2), stddev(id), count(*) * 2 FROM users GROUP BY country ORDER BY country NULLS LAST",
}

// fillMergeData creates users and posts through conn (the proxy or a
// plain database) with the same deterministic content.
func fillMergeData(t *testing.T, ctx context.Context, c *pgx.Conn) {
	t.Helper()
	for _, stmt := range []string{
		"CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, country text)",
		"CREATE TABLE posts (author_id bigint NOT NULL, id bigint, body text, score numeric(12,2), PRIMARY KEY (author_id, id))",
	} {
		mustExec(t, ctx, c, stmt)
	}
	countries := []string{"de", "fr", "it", "nl", ""}
	for id := 1; id <= 160; id++ {
		var country any
		if cc := countries[id%5]; cc != "" {
			country = cc
		}
		mustExec(t, ctx, c, "INSERT INTO users (id, name, country) VALUES ($1, $2, $3)", id, fmt.Sprintf("user-%03d", (id*37)%160), country)
		for j := 0; j < id%4; j++ {
			mustExec(t, ctx, c, "INSERT INTO posts (author_id, id, body, score) VALUES ($1, $2, $3, $4)",
				id, j, strings.Repeat("x", (id*7+j)%23)+fmt.Sprint(id), fmt.Sprintf("%d.%02d", id*j, (id+j)%100))
		}
	}
}

// rowsText runs sql with args and returns its rows as text (simple
// protocol when simple, else extended with pgx's binary formats).
func rowsText(ctx context.Context, c *pgx.Conn, sql string, simple bool, args ...any) ([]string, error) {
	var rows pgx.Rows
	var err error
	if simple {
		rows, err = c.Query(ctx, sql, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	} else {
		rows, err = c.Query(ctx, sql, args...)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprint(vals...))
	}
	return out, rows.Err()
}

func TestShardedMergedReads(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 3*time.Minute)
	app, notices := connectWithNotices(t, ctx, env.proxy.dsn("postgres"))
	// The reference: one plain PostgreSQL database with the same rows.
	mustExec(t, ctx, env.direct[env.names[0]], "CREATE DATABASE merge_reference")
	ref := connectPgx(t, ctx, env.cluster.Shards[0].Primary.DSN("merge_reference"))
	fillMergeData(t, ctx, app)
	fillMergeData(t, ctx, ref)

	// The rows really are spread: every shard holds some users.
	for _, name := range env.names {
		var n int
		if err := env.direct[name].QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n == 0 {
			t.Fatalf("shard %s holds %d users (%v); want some", name, n, err)
		}
	}

	mustExec(t, ctx, app, "SET shardproxy.show_routes = on")
	for _, q := range mergeQueries {
		for _, simple := range []bool{true, false} {
			notices.take()
			want, err := rowsText(ctx, ref, q, simple)
			if err != nil {
				t.Fatalf("reference %q: %v", q, err)
			}
			got, err := rowsText(ctx, app, q, simple)
			if err != nil {
				t.Errorf("%q (simple=%v) through the proxy: %v", q, simple, err)
				continue
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%q (simple=%v):\n got %q\nwant %q", q, simple, got, want)
			}
			if !strings.HasPrefix(q, "SELECT id FROM users WHERE id IN") {
				routed := strings.Join(notices.take(), " ")
				for _, name := range env.names {
					if !strings.Contains(routed, "Scatter") || !strings.Contains(routed, name) {
						t.Errorf("%q: route notice %q does not say it ran on every shard", q, routed)
						break
					}
				}
			}
		}
	}
	mustExec(t, ctx, app, "SET shardproxy.show_routes = off")

	// Prepared statements describe the merged shape (not the shards'
	// partial aggregates).
	var n, total int64
	var avg float64
	if err := app.QueryRow(ctx, "SELECT count(*), sum(id), avg(id) FROM users WHERE id > $1", 10).Scan(&n, &total, &avg); err != nil {
		t.Fatal(err)
	}
	if n != 150 || total != 160*161/2-55 || avg != float64(total)/150 {
		t.Fatalf("count/sum/avg over id > 10 = %d/%d/%v", n, total, avg)
	}

	// What the merge cannot compute is refused with 0A000, never
	// answered wrongly.
	if _, err := rowsText(ctx, app, "SELECT id, sum(id) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) FROM users", false); sqlState(err) != "0A000" {
		t.Fatalf("window over several shards: %v, want SQLSTATE 0A000", err)
	}

	t.Run("first shard error cancels the others", func(t *testing.T) {
		// One user per shard; the shard holding failing's row fails at
		// once, the others would sleep for a minute.
		var ids []string
		failing, failShard := int64(0), ""
		seen := map[string]bool{}
		for id := int64(1); id <= 160 && len(seen) < len(env.names); id++ {
			s := env.shardOf(t, id)
			if seen[s] {
				continue
			}
			seen[s] = true
			ids = append(ids, fmt.Sprint(id))
			if failing == 0 {
				failing, failShard = id, s
			}
		}
		q := fmt.Sprintf("SELECT id, CASE WHEN id = %d THEN (1/(id-%d))::text ELSE pg_sleep(60)::text END FROM users WHERE id IN (%s)",
			failing, failing, strings.Join(ids, ", "))
		cancelled := map[string]int{}
		for _, simple := range []bool{true, false} {
			_, err := rowsText(ctx, app, q, simple)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "22012" {
				t.Fatalf("simple=%v: %v, want division_by_zero (22012)", simple, err)
			}
			if !strings.Contains(pe.Detail, "on shard "+failShard) {
				t.Errorf("simple=%v: error detail %q does not name shard %s", simple, pe.Detail, failShard)
			}
			// The error came back only after the other shards stopped:
			// each was cancelled (its log says so) and none still runs
			// the statement.
			for _, sh := range env.cluster.Shards {
				if sh.Name == failShard {
					continue
				}
				logText, err := os.ReadFile(sh.Primary.LogPath())
				if err != nil {
					t.Fatal(err)
				}
				if got, want := strings.Count(string(logText), "canceling statement due to user request"), cancelled[sh.Name]+1; got != want {
					t.Errorf("simple=%v: shard %s logged %d cancellations, want %d", simple, sh.Name, got, want)
				}
				cancelled[sh.Name]++
			}
			for _, name := range env.names {
				var running int
				if err := env.direct[name].QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()").Scan(&running); err != nil {
					t.Fatal(err)
				}
				if running != 0 {
					t.Errorf("simple=%v: shard %s still runs the scatter statement after the error", simple, name)
				}
			}
			// The session keeps serving.
			var n int64
			if err := app.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 160 {
				t.Fatalf("after the failed scatter: count = %d, %v", n, err)
			}
		}
	})

	t.Run("Execute with a row limit suspends a cross-shard portal", func(t *testing.T) {
		run := rawRunner(t, ctx, env.proxy.dsn("postgres"))
		exec := &pgproto3.Execute{MaxRows: 50}
		rows, kinds := run(&pgproto3.Parse{Query: "SELECT id FROM users ORDER BY id"}, &pgproto3.Bind{},
			exec, exec, exec, exec, exec, &pgproto3.Sync{})
		// PostgreSQL's own tags for the same Executes: the last counts
		// only its own rows.
		_, pgKinds := rawRunner(t, ctx, env.cluster.Shards[0].Primary.DSN("postgres"))(&pgproto3.Parse{Query: "SELECT g FROM generate_series(1, 160) g"},
			&pgproto3.Bind{}, exec, exec, exec, exec, exec, &pgproto3.Sync{})
		want := []string{"suspended@50", "suspended@100", "suspended@150", "SELECT 10", "SELECT 0", "ready I"}
		if strings.Join(pgKinds, " ") != strings.Join(want, " ") {
			t.Fatalf("PostgreSQL itself answers %v; the expectation below assumes %v", pgKinds, want)
		}
		if strings.Join(kinds, " ") != strings.Join(want, " ") || len(rows) != 160 {
			t.Fatalf("merged portal: %d rows, %v; want 160 rows, %v", len(rows), kinds, want)
		}
		for i, r := range rows {
			if r != fmt.Sprint(i+1) {
				t.Fatalf("row %d = %s, want %d", i, r, i+1)
			}
		}
		// A concatenated scatter (no ORDER BY) suspends too.
		exec = &pgproto3.Execute{MaxRows: 25}
		rows, kinds = run(&pgproto3.Parse{Query: "SELECT id FROM users WHERE id > 100"}, &pgproto3.Bind{},
			exec, exec, exec, &pgproto3.Sync{})
		want = []string{"suspended@25", "suspended@50", "SELECT 10", "ready I"}
		seen := map[string]bool{}
		for _, r := range rows {
			seen[r] = true
		}
		if strings.Join(kinds, " ") != strings.Join(want, " ") || len(rows) != 60 || len(seen) != 60 {
			t.Fatalf("scatter portal: %d rows (%d distinct), %v; want 60, %v", len(rows), len(seen), kinds, want)
		}
		// Sync ends a suspended portal; another statement after it works.
		rows, kinds = run(&pgproto3.Parse{Query: "SELECT id FROM users ORDER BY id DESC"}, &pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 5}, &pgproto3.Sync{})
		if strings.Join(kinds, " ") != "suspended@5 ready I" || strings.Join(rows, ",") != "160,159,158,157,156" {
			t.Fatalf("suspended then Sync: %v %v", rows, kinds)
		}
		rows, kinds = run(&pgproto3.Query{String: "SELECT count(*) FROM users"})
		if strings.Join(rows, ",") != "160" || strings.Join(kinds, " ") != "SELECT 1 ready I" {
			t.Fatalf("after an ended portal: %v %v", rows, kinds)
		}
		// Another statement in the same batch ends the suspended portal;
		// executing it again is refused (0A000), never answered wrongly.
		rows, kinds = run(&pgproto3.Parse{Query: "SELECT id FROM users ORDER BY id"}, &pgproto3.Bind{PreparedStatement: "", DestinationPortal: "p1"},
			&pgproto3.Execute{Portal: "p1", MaxRows: 3},
			&pgproto3.Parse{Name: "s2", Query: "SELECT count(*) FROM users"}, &pgproto3.Bind{PreparedStatement: "s2", DestinationPortal: "p2"},
			&pgproto3.Execute{Portal: "p2"}, &pgproto3.Execute{Portal: "p1", MaxRows: 3}, &pgproto3.Sync{})
		if strings.Join(kinds, " ") != "suspended@3 SELECT 1 error 0A000 ready I" || strings.Join(rows, ",") != "1,2,3,160" {
			t.Fatalf("interleaved portals: %v %v", rows, kinds)
		}
	})

	// Keyless UPDATE and DELETE run on every shard, atomically, and
	// report the total.
	tag := mustExec(t, ctx, app, "UPDATE users SET country = 'xx' WHERE country IS NULL")
	if tag.String() != "UPDATE 32" {
		t.Fatalf("keyless UPDATE tag %q, want UPDATE 32", tag)
	}
	rows, err := rowsText(ctx, app, "UPDATE users SET name = name || '!' WHERE id % 40 = 0 RETURNING id", true)
	if err != nil || len(rows) != 4 {
		t.Fatalf("keyless UPDATE … RETURNING: %v %v", rows, err)
	}
	// A keyless write that fails on some shards (only the names ending
	// in '!' grow too long) changes nothing anywhere.
	mustExec(t, ctx, app, "ALTER TABLE users ADD CONSTRAINT short_name CHECK (length(name) < 13)")
	_, err = app.Exec(ctx, "UPDATE users SET name = name || 'abcd' WHERE id % 10 = 0")
	if err == nil {
		t.Fatal("keyless UPDATE violating a CHECK on some shards succeeded")
	}
	var changed int
	for _, name := range env.names {
		var c int
		if err := env.direct[name].QueryRow(ctx, "SELECT count(*) FROM users WHERE name LIKE '%abcd'").Scan(&c); err != nil {
			t.Fatal(err)
		}
		changed += c
	}
	if changed != 0 {
		t.Fatalf("a failed keyless UPDATE left %d rows changed", changed)
	}
	tag = mustExec(t, ctx, app, "DELETE FROM posts WHERE score < 10")
	var left int64
	if err := app.QueryRow(ctx, "SELECT count(*) FROM posts WHERE score < 10").Scan(&left); err != nil || left != 0 {
		t.Fatalf("after keyless DELETE (%s): %d rows left (%v)", tag, left, err)
	}
	var prepared int
	for _, name := range env.names {
		var c int
		if err := env.direct[name].QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&c); err != nil {
			t.Fatal(err)
		}
		prepared += c
	}
	if prepared != 0 {
		t.Fatalf("%d prepared transactions left on the shards", prepared)
	}
}

// wireScript is a raw protocol connection that records every answer as a
// transcript line, so one script can run against the proxy and against
// plain PostgreSQL and the transcripts be compared.
type wireScript struct {
	t  *testing.T
	fe *pgproto3.Frontend
}

func newWireScript(t *testing.T, ctx context.Context, dsn string) *wireScript {
	return &wireScript{t: t, fe: wire.Dial(t, ctx, dsn).Frontend}
}

// run sends msgs (the last must be Sync or Query) and returns the answers
// up to ReadyForQuery.
func (w *wireScript) run(msgs ...pgproto3.FrontendMessage) []string {
	w.t.Helper()
	for _, m := range msgs {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for {
		msg, err := w.fe.Receive()
		if err != nil {
			w.t.Fatal(err)
		}
		line := wire.Line(msg)
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return append(out, line)
		}
		if line != "" {
			out = append(out, line)
		}
	}
}

// failed reports whether a transcript holds an error.
func failed(lines []string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, "error ") {
			return true
		}
	}
	return false
}

// withoutRows drops the row lines of a transcript.
func withoutRows(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "row ") {
			out = append(out, l)
		}
	}
	return out
}

// TestCrossShardCursors: DECLARE/FETCH/MOVE/CLOSE over scattered and
// merged reads, and portals executed with a row limit across Syncs inside
// a transaction block (the JDBC fetchSize pattern), answer exactly like
// one PostgreSQL holding the same rows.
func TestCrossShardCursors(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 3*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	mustExec(t, ctx, env.direct[env.names[0]], "CREATE DATABASE cursor_reference")
	refDSN := env.cluster.Shards[0].Primary.DSN("cursor_reference")
	ref := connectPgx(t, ctx, refDSN)
	fillMergeData(t, ctx, app)
	fillMergeData(t, ctx, ref)

	q := func(sql string) pgproto3.FrontendMessage { return &pgproto3.Query{String: sql} }
	exec := func(portal string, n uint32) pgproto3.FrontendMessage {
		return &pgproto3.Execute{Portal: portal, MaxRows: n}
	}
	sync := &pgproto3.Sync{}
	// ext is one statement the way libpq's PQsendQueryParams sends it.
	ext := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{},
			&pgproto3.Describe{ObjectType: 'P'}, exec("", 0), sync}
	}
	scripts := []struct {
		name  string
		steps [][]pgproto3.FrontendMessage
	}{
		{"portal fetched across Syncs in a transaction", [][]pgproto3.FrontendMessage{
			{q("BEGIN")},
			{&pgproto3.Parse{Name: "S_1", Query: "SELECT id, name FROM users ORDER BY name DESC, id"},
				&pgproto3.Bind{PreparedStatement: "S_1", DestinationPortal: "C_1"},
				&pgproto3.Describe{ObjectType: 'P', Name: "C_1"}, exec("C_1", 50), sync},
			{exec("C_1", 50), sync},
			// Another statement of the transaction between two fetches.
			{&pgproto3.Parse{Query: "SELECT count(*), max(id) FROM users"}, &pgproto3.Bind{}, exec("", 0), sync},
			{q("SELECT id FROM users ORDER BY id DESC LIMIT 2")},
			{exec("C_1", 40), sync},
			{exec("C_1", 40), sync},
			{exec("C_1", 40), sync},
			// An aggregate portal with binary results, fetched in pieces.
			{&pgproto3.Parse{Name: "S_2", Query: "SELECT country, count(*), sum(id) FROM users GROUP BY country ORDER BY 2 DESC, 1 NULLS FIRST"},
				&pgproto3.Bind{PreparedStatement: "S_2", DestinationPortal: "C_2", ResultFormatCodes: []int16{1}},
				exec("C_2", 2), sync},
			{exec("C_2", 2), sync},
			{exec("C_2", 2), sync},
			{q("COMMIT")},
			// The portal ended with its transaction.
			{exec("C_1", 10), sync},
		}},
		// JDBC with autocommit off and a fetch size sends BEGIN in the same
		// batch as the first query; the transaction must stay open after
		// that Sync (a write in it is rolled back with it).
		{"portal fetched across Syncs, BEGIN pipelined with it (JDBC)", [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, exec("", 0),
				&pgproto3.Parse{Query: "SELECT id, name FROM users ORDER BY name DESC, id"},
				&pgproto3.Bind{DestinationPortal: "C_1"},
				&pgproto3.Describe{ObjectType: 'P', Name: "C_1"}, exec("C_1", 50), sync},
			{exec("C_1", 50), sync},
			{&pgproto3.Parse{Query: "UPDATE users SET name = 'rolled back' WHERE id = 7"}, &pgproto3.Bind{}, exec("", 0), sync},
			{exec("C_1", 50), sync},
			{q("ROLLBACK")},
			{q("SELECT name FROM users WHERE id = 7")},
		}},
		{"SQL cursors over merged reads", [][]pgproto3.FrontendMessage{
			{q("DECLARE c CURSOR FOR SELECT id FROM users ORDER BY id")},
			{q("BEGIN")},
			{q("DECLARE c CURSOR FOR SELECT id, name FROM users ORDER BY name DESC, id")},
			{q("FETCH 5 FROM c")},
			{q("FETCH NEXT FROM c")},
			{q("MOVE 10 IN c")},
			{q("FETCH FORWARD 3 FROM c")},
			{q("SELECT count(*) FROM posts")},
			{q("UPDATE users SET name = name WHERE id = 3")},
			{q("DECLARE g CURSOR FOR SELECT author_id, count(*), sum(score) FROM posts GROUP BY author_id ORDER BY 2 DESC, 1 LIMIT 30")},
			{q("FETCH 4 FROM g")},
			{q("FETCH ALL FROM c")},
			{q("FETCH 1 FROM c")},
			{q("FETCH ALL FROM g")},
			{q("DECLARE b BINARY CURSOR FOR SELECT id, name FROM users ORDER BY id DESC LIMIT 3")},
			{q("FETCH ALL FROM b")},
			{q("DECLARE s CURSOR FOR SELECT author_id FROM posts EXCEPT ALL SELECT id FROM users WHERE id % 3 = 0 ORDER BY 1 DESC")},
			{q("FETCH 6 FROM s")},
			{q("MOVE 2 IN s")},
			{q("FETCH ALL FROM s")},
			{q("CLOSE c")},
			{q("FETCH 1 FROM c")},
			{q("ROLLBACK")},
			{q("BEGIN")},
			{q("DECLARE d CURSOR FOR SELECT 100 / (id - 77) FROM users ORDER BY id")},
			// When the error comes depends on each server's plan; that
			// it comes is the same.
			{q("FETCH ALL FROM d")},
			{q("ROLLBACK")},
		}},
		{"SQL cursor through the extended protocol", [][]pgproto3.FrontendMessage{
			{q("BEGIN")},
			{&pgproto3.Parse{Query: "DECLARE e CURSOR FOR SELECT id, country FROM users WHERE id > $1 ORDER BY country NULLS FIRST, id"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("100")}}, &pgproto3.Describe{ObjectType: 'P'}, exec("", 0), sync},
			{&pgproto3.Parse{Name: "f", Query: "FETCH 7 FROM e"}, &pgproto3.Describe{ObjectType: 'S', Name: "f"},
				&pgproto3.Bind{PreparedStatement: "f"}, &pgproto3.Describe{ObjectType: 'P'}, exec("", 0), sync},
			{&pgproto3.Bind{PreparedStatement: "f"}, exec("", 0), sync},
			{&pgproto3.Parse{Query: "CLOSE e"}, &pgproto3.Bind{}, exec("", 0), sync},
			{q("COMMIT")},
		}},
		// psycopg 3's server-side cursors: every statement through the
		// extended protocol, and the cursor's shape read with a Describe
		// of the portal the SQL cursor is.
		{"SQL cursors described as portals", [][]pgproto3.FrontendMessage{
			ext("BEGIN"),
			ext(`DECLARE "sc" CURSOR FOR SELECT id, name FROM users ORDER BY name DESC, id`),
			{&pgproto3.Describe{ObjectType: 'P', Name: "sc"}, sync},
			ext(`FETCH FORWARD 5 FROM "sc"`),
			ext(`DECLARE one CURSOR FOR SELECT id, name, country FROM users WHERE id = 3`),
			{&pgproto3.Describe{ObjectType: 'P', Name: "one"}, sync},
			ext(`FETCH FORWARD 10 FROM "one"`),
			ext(`FETCH FORWARD 100 FROM "sc"`),
			ext(`CLOSE "sc"`),
			{&pgproto3.Describe{ObjectType: 'P', Name: "sc"}, sync},
			ext("ROLLBACK"),
		}},
	}
	for _, s := range scripts {
		t.Run(s.name, func(t *testing.T) {
			proxy := newWireScript(t, ctx, env.proxy.dsn("postgres"))
			plain := newWireScript(t, ctx, refDSN)
			for i, step := range s.steps {
				got, want := proxy.run(step...), plain.run(step...)
				if failed(got) && failed(want) {
					// Which rows come before an error depends on when each
					// shard reaches it; the error must be the same.
					got, want = withoutRows(got), withoutRows(want)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("step %d (%T …):\n got %s\nwant %s", i, step[0], strings.Join(got, "\n     "), strings.Join(want, "\n     "))
				}
			}
		})
	}

	t.Run("COPY (query) TO STDOUT merged by the proxy", func(t *testing.T) {
		// The query needs a merge (ORDER BY, LIMIT, GROUP BY, DISTINCT,
		// windows): the proxy writes the merged rows as COPY data; the bytes
		// must be PostgreSQL's, escapes and quoting included.
		for _, sql := range []string{
			"COPY (SELECT id, name, country FROM users ORDER BY name DESC, id) TO STDOUT",
			"COPY (SELECT country, count(*), sum(id) FROM users GROUP BY country ORDER BY 1 NULLS FIRST) TO STDOUT WITH (FORMAT csv, HEADER)",
			`COPY (SELECT author_id, body, score FROM posts ORDER BY score DESC, author_id, id LIMIT 20) TO STDOUT (FORMAT csv, DELIMITER ';', NULL 'NULL', QUOTE '''', ESCAPE '\')`,
			"COPY (SELECT DISTINCT country FROM users ORDER BY 1) TO STDOUT WITH (FORMAT text, HEADER true, NULL '-')",
			`COPY (SELECT id, E'a\tb\\c\nd\re' || name AS "odd|name", NULL::text AS n FROM users ORDER BY id LIMIT 5) TO STDOUT WITH (DELIMITER '|', HEADER)`,
			`COPY (SELECT id, name || ',"q"', '' AS empty, NULL AS n FROM users ORDER BY id LIMIT 3) TO STDOUT WITH (FORMAT csv)`,
			`COPY (SELECT E'\\.' AS v FROM users ORDER BY id LIMIT 2) TO STDOUT WITH (FORMAT csv)`,
			"COPY (SELECT id FROM users WHERE id < 0 ORDER BY id) TO STDOUT",
			"COPY (SELECT author_id, id, row_number() OVER (ORDER BY author_id, id) FROM posts ORDER BY author_id, id LIMIT 7) TO STDOUT",
			"COPY (SELECT id, name, count(*) OVER () FROM users ORDER BY id LIMIT 3) TO STDOUT (FORMAT csv, HEADER)",
			"COPY (SELECT author_id FROM posts INTERSECT SELECT id FROM users ORDER BY 1) TO STDOUT",
			"COPY (SELECT country FROM users EXCEPT ALL SELECT country FROM users WHERE id % 2 = 0 ORDER BY 1 NULLS FIRST) TO STDOUT WITH (FORMAT csv)",
		} {
			var got, want bytes.Buffer
			gtag, gerr := app.PgConn().CopyTo(ctx, &got, sql)
			wtag, werr := ref.PgConn().CopyTo(ctx, &want, sql)
			if gerr != nil || werr != nil {
				t.Fatalf("%s:\n through shardproxy: %v\n PostgreSQL: %v", sql, gerr, werr)
			}
			if got.String() != want.String() || gtag.String() != wtag.String() {
				t.Fatalf("%s:\n through shardproxy (%s): %q\n PostgreSQL (%s): %q", sql, gtag, got.String(), wtag, want.String())
			}
		}
		// Options the proxy does not apply itself: 0A000 that says so.
		_, err := app.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT id FROM users ORDER BY id) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)")
		if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "options") {
			t.Fatalf("COPY with FORCE_QUOTE over shards: %v, want 0A000 naming the options", err)
		}
		// The session goes on.
		var n int
		if err := app.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 160 {
			t.Fatalf("after the COPYs: %d, %v", n, err)
		}
	})

	t.Run("binary COPY TO STDOUT over shards is one file", func(t *testing.T) {
		// Each shard sends a whole binary COPY file; the client gets one:
		// a header, every shard's tuples, one trailer. Row order is the
		// shards', so the tuples are compared as sorted sets.
		for _, sql := range []string{
			"COPY users TO STDOUT (FORMAT binary)",
			"COPY (SELECT id, name, country FROM users WHERE id > 100) TO STDOUT (FORMAT binary)",
			"COPY (SELECT id FROM users WHERE id < 0) TO STDOUT (FORMAT binary)",
		} {
			var got, want bytes.Buffer
			gtag, gerr := app.PgConn().CopyTo(ctx, &got, sql)
			wtag, werr := ref.PgConn().CopyTo(ctx, &want, sql)
			if gerr != nil || werr != nil || gtag.String() != wtag.String() {
				t.Fatalf("%s: through shardproxy %q %v, PostgreSQL %q %v", sql, gtag, gerr, wtag, werr)
			}
			g, gok := binaryCopyTuples(got.Bytes())
			w, wok := binaryCopyTuples(want.Bytes())
			if !gok || !wok {
				t.Fatalf("%s: not one binary COPY file (through shardproxy %v, PostgreSQL %v): %x", sql, gok, wok, got.Bytes())
			}
			slices.Sort(g)
			slices.Sort(w)
			if !slices.Equal(g, w) {
				t.Fatalf("%s: %d tuples through shardproxy, %d from PostgreSQL, or different ones", sql, len(g), len(w))
			}
		}
		_, err := app.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT id FROM users ORDER BY id) TO STDOUT (FORMAT binary)")
		if sqlState(err) != "0A000" {
			t.Fatalf("binary COPY of a merged query: %v, want 0A000", err)
		}
	})

	t.Run("pgx reads a cross-shard cursor", func(t *testing.T) {
		read := func(c *pgx.Conn) []string {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "DECLARE p CURSOR FOR SELECT author_id, id, body FROM posts ORDER BY body, author_id, id"); err != nil {
				t.Fatal(err)
			}
			var out []string
			for {
				rows, err := tx.Query(ctx, "FETCH 25 FROM p")
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for rows.Next() {
					vals, err := rows.Values()
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, fmt.Sprint(vals...))
					n++
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					return out
				}
			}
		}
		got, want := read(app), read(ref)
		if len(want) < 100 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("cursor rows differ: got %d, want %d", len(got), len(want))
		}
	})

	t.Run("a client's cancel reaches every shard of a running scatter", func(t *testing.T) {
		// Only rows on the first shard sleep; the proxy's active
		// connection is another shard's, whose part ends at once. The
		// client sends a CancelRequest once the statement sleeps there.
		var sleeper int64
		if err := env.direct[env.names[0]].QueryRow(ctx, "SELECT min(id) FROM users").Scan(&sleeper); err != nil {
			t.Fatal(err)
		}
		conn := connectPgx(t, ctx, env.proxy.dsn("postgres"))
		qctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			defer stop()
			running := false
			wait.For(2*time.Minute, func() bool {
				var n int
				_ = env.direct[env.names[0]].QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid()").Scan(&n)
				running = n > 0
				return running || qctx.Err() != nil
			})
			if running {
				if err := conn.PgConn().CancelRequest(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
		_, err := rowsText(ctx, conn, fmt.Sprintf("SELECT id, pg_sleep(CASE WHEN id = %d THEN 120 ELSE 0 END) FROM users", sleeper), true)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Fatalf("cancelled scatter: %v, want SQLSTATE 57014", err)
		}
		// The sleeping shard's statement was cancelled: nothing runs there.
		var running int
		if err := env.direct[env.names[0]].QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid()").Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running != 0 {
			t.Fatalf("the cancelled statement still runs on shard %s", env.names[0])
		}
	})

	t.Run("WITH HOLD cursors over shards; what a cross-shard cursor cannot do is refused with 0A000", func(t *testing.T) {
		proxy := newWireScript(t, ctx, env.proxy.dsn("postgres"))
		for _, step := range []struct{ sql, want string }{
			// WITH HOLD is materialized by the proxy, outside a transaction
			// block too, and outlives the transaction that declared it.
			{"DECLARE h CURSOR WITH HOLD FOR SELECT id FROM users ORDER BY id", "tag DECLARE CURSOR|ready I"},
			{"FETCH 2 FROM h", `desc id/20/0|row "1"|row "2"|tag FETCH 2|ready I`},
			{"BEGIN", "tag BEGIN|ready T"},
			{"DECLARE h2 CURSOR WITH HOLD FOR SELECT id FROM users ORDER BY id DESC", "tag DECLARE CURSOR|ready T"},
			{"COMMIT", "tag COMMIT|ready I"},
			{"MOVE 1 FROM h", "tag MOVE 1|ready I"},
			{"FETCH 1 FROM h", `desc id/20/0|row "4"|tag FETCH 1|ready I`},
			{"", "*pgproto3.ParseComplete|*pgproto3.BindComplete|error 0A000|ready I"}, // binary FETCH of a text cursor
			{"CLOSE h", "tag CLOSE CURSOR|ready I"},
			{"FETCH 1 FROM h", "error 34000|ready I"},
			{"CLOSE h2", "tag CLOSE CURSOR|ready I"},
			{"BEGIN", "tag BEGIN|ready T"},
			{"DECLARE s SCROLL CURSOR FOR SELECT id FROM users ORDER BY id", "error 0A000|ready E"},
			{"ROLLBACK", "tag ROLLBACK|ready I"},
			{"BEGIN", "tag BEGIN|ready T"},
			{"DECLARE k CURSOR FOR SELECT id FROM users ORDER BY id", "tag DECLARE CURSOR|ready T"},
			{"FETCH 2 FROM k", `desc id/20/0|row "1"|row "2"|tag FETCH 2|ready T`},
			{"FETCH BACKWARD 1 FROM k", "error 0A000|ready E"},
			{"ROLLBACK", "tag ROLLBACK|ready I"},
		} {
			msgs := []pgproto3.FrontendMessage{q(step.sql)}
			if step.sql == "" {
				msgs = []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "FETCH 1 FROM h"},
					&pgproto3.Bind{ResultFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{}}
			}
			if got := strings.Join(proxy.run(msgs...), "|"); got != step.want {
				t.Fatalf("%s: got %s, want %s", step.sql, got, step.want)
			}
		}
	})
}

// binaryCopyTuples splits a binary COPY file into its tuples (as strings),
// checking the header at its start and exactly one trailer at its end.
func binaryCopyTuples(b []byte) ([]string, bool) {
	const header = "PGCOPY\n\xff\r\n\x00"
	if len(b) < 19 || string(b[:11]) != header {
		return nil, false
	}
	ext := int(binary.BigEndian.Uint32(b[15:19]))
	b = b[19+ext:]
	var out []string
	for len(b) >= 2 {
		n := int(int16(binary.BigEndian.Uint16(b)))
		if n == -1 {
			return out, len(b) == 2
		}
		pos := 2
		for range n {
			if len(b) < pos+4 {
				return nil, false
			}
			size := int(int32(binary.BigEndian.Uint32(b[pos:])))
			pos += 4
			if size > 0 {
				pos += size
			}
			if pos > len(b) {
				return nil, false
			}
		}
		out = append(out, string(b[:pos]))
		b = b[pos:]
	}
	return nil, false
}
