package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// TestScatterPreparedParts: an extended-protocol cross-shard read is
// described by its Execute when the client sends Describe and Execute
// together (no extra round trip), and its per-shard part runs as a
// statement prepared once per server connection (parsed and planned once,
// then only bound). The answers stay exactly those of one PostgreSQL:
// descriptions, rows, suspended portals, errors at Parse and at
// execution, and a cached part whose table changed shape.
func TestScatterPreparedParts(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 2, Settings: map[string]string{
		"shared_preload_libraries":          "pg_stat_statements",
		"pg_stat_statements.track_planning": "on",
	}})
	// At most two server connections per shard (the proxy's own catalog
	// reads take one besides the session's), so "planned once per
	// connection" means at most two plans.
	p := startProxy(t, c, func(cc *config.Config) {
		cc.Sharding = shardedSpec
		cc.Pool.Size = 2
	})
	app := connectPgx(t, ctx, p.dsn("postgres"))
	mustExec(t, ctx, connectPgx(t, ctx, c.Shards[0].Primary.DSN("postgres")), "CREATE DATABASE scatter_reference")
	ref := connectPgx(t, ctx, c.Shards[0].Primary.DSN("scatter_reference"))
	values := make([]string, 60)
	for i := range values {
		values[i] = fmt.Sprintf("(%d, 'user-%02d', %d)", i+1, (i*7)%60, i%3)
	}
	for _, conn := range []*pgx.Conn{app, ref} {
		mustExec(t, ctx, conn, "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, grp int)")
		mustExec(t, ctx, conn, "INSERT INTO users VALUES "+strings.Join(values, ", "), pgx.QueryExecModeSimpleProtocol)
	}
	direct := map[string]*pgx.Conn{}
	for _, sh := range c.Shards {
		direct[sh.Name] = connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		mustExec(t, ctx, direct[sh.Name], "CREATE EXTENSION pg_stat_statements")
	}

	proxyW := newWireScript(t, ctx, p.dsn("postgres"))
	refW := newWireScript(t, ctx, c.Shards[0].Primary.DSN("scatter_reference"))
	same := func(what string, msgs ...pgproto3.FrontendMessage) []string {
		t.Helper()
		got, want := proxyW.run(msgs...), refW.run(msgs...)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
		}
		return got
	}
	binary := []int16{1}
	scripts := []struct {
		what string
		sql  string
		rf   []int16
		args [][]byte
	}{
		{"merged, text", "SELECT id, name FROM users ORDER BY id DESC LIMIT 7", nil, nil},
		{"merged, binary", "SELECT id, name FROM users ORDER BY name, id LIMIT 5", binary, nil},
		{"merged with a parameter", "SELECT id FROM users WHERE grp = $1 ORDER BY id LIMIT 4", nil, [][]byte{[]byte("2")}},
		{"aggregate", "SELECT count(*), max(id) FROM users", nil, nil},
		{"concatenated", "SELECT name, grp FROM users WHERE name = 'user-21'", nil, nil},
		{"no rows", "SELECT id, name FROM users WHERE id < 0 ORDER BY id", binary, nil},
	}
	const rounds = 5
	for round := 0; round < rounds; round++ { // later rounds run cached parts
		for _, s := range scripts {
			same(fmt.Sprintf("%s (round %d)", s.what, round), &pgproto3.Parse{Query: s.sql},
				&pgproto3.Bind{Parameters: s.args, ResultFormatCodes: s.rf},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
		}
	}
	// A Describe without an Execute behind it is answered on its own; one
	// followed by an Execute with a row limit describes once.
	same("Describe alone", &pgproto3.Parse{Query: scripts[0].sql}, &pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Sync{})
	same("Describe then a limited Execute", &pgproto3.Parse{Query: "SELECT id FROM users ORDER BY id"}, &pgproto3.Bind{},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{MaxRows: 25}, &pgproto3.Execute{MaxRows: 25}, &pgproto3.Sync{})

	// Parsed and planned once per server connection: every shard ran the
	// part every round and planned it at most once per connection.
	for name, conn := range direct {
		var calls, plans int64
		err := conn.QueryRow(ctx, `SELECT coalesce(sum(calls), 0), coalesce(sum(plans), 0) FROM pg_stat_statements
			WHERE query LIKE 'SELECT id, name FROM users ORDER BY id DESC LIMIT %' AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&calls, &plans)
		if err != nil {
			t.Fatal(err)
		}
		if calls != rounds || plans < 1 || plans > 2 {
			t.Errorf("shard %s ran the merged part %d times with %d plans; want %d runs, 1 or 2 plans", name, calls, plans, rounds)
		}
	}

	// An error at execution of a cached part, twice: described, then the
	// error (rows before it depend on timing); the session keeps serving.
	for i := 0; i < 2; i++ {
		msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 10 / (id - 30) FROM users ORDER BY id"},
			&pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		got, want := withoutRows(proxyW.run(msgs...)), withoutRows(refW.run(msgs...))
		if strings.Join(got, "\n") != strings.Join(want, "\n") || !failed(got) {
			t.Fatalf("division by zero, try %d:\n got %q\nwant %q", i, got, want)
		}
	}
	// A part whose Parse fails on a shard (a function missing there) is
	// not remembered as prepared: the next try fails the same way, and once
	// the function exists everywhere the part runs. Each shard in turn
	// lacks it, so whichever shard parses the client's statement, one run
	// has a part Parse fail.
	for i, missing := range c.Shards {
		fn := fmt.Sprintf("scatter_double_%d", i)
		create := fmt.Sprintf("CREATE FUNCTION %s(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'", fn)
		for _, sh := range c.Shards {
			if sh != missing {
				mustExec(t, ctx, direct[sh.Name], create)
			}
		}
		msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: fmt.Sprintf("SELECT id, %s(id) FROM users ORDER BY id LIMIT 2", fn)},
			&pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}}
		for try := 0; try < 2; try++ {
			if lines := proxyW.run(msgs...); !strings.Contains(strings.Join(lines, " "), "error 42883") {
				t.Fatalf("%s missing on %s, try %d: %q; want error 42883", fn, missing.Name, try, lines)
			}
		}
		mustExec(t, ctx, direct[missing.Name], create)
		lines := proxyW.run(msgs...)
		if strings.Join(lines, " ") != `*pgproto3.ParseComplete *pgproto3.BindComplete desc id/20/0,`+fn+`/20/0 row "1","2" row "2","4" tag SELECT 2 ready I` {
			t.Fatalf("%s on every shard: %q", fn, lines)
		}
	}

	// The table changes shape under a cached SELECT *: the next run
	// answers with the new columns (no "cached plan must not change result
	// type"), and the one after it too.
	star := "SELECT * FROM users ORDER BY id LIMIT 3"
	run := func(what string) {
		t.Helper()
		same(what, &pgproto3.Parse{Query: star}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
	run("SELECT * before ALTER")
	run("SELECT * cached")
	for _, conn := range []*pgx.Conn{app, ref} {
		mustExec(t, ctx, conn, "ALTER TABLE users ADD COLUMN extra int DEFAULT 7")
	}
	run("SELECT * after ALTER")
	run("SELECT * after ALTER, again")
	if rows, err := rowsText(context.Background(), app, "SELECT count(*) FROM users", false); err != nil || strings.Join(rows, "") != "60" {
		t.Fatalf("after the scripts: %v %v", rows, err)
	}
}
