package proxy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// TestStatementShapeAfterTableChange: a client prepared a statement, the
// table it reads changed shape, and the client runs the statement again.
// PostgreSQL answers 0A000 "cached plan must not change result type" (the
// client's statement is stale; pgx then prepares it again). Through the
// proxy the statement usually meets a server connection that never had
// it (here: the only one was terminated) and is prepared there afresh,
// with the new columns: without a check the client would decode the new
// rows with the description it cached (a text column read where an
// integer now is). A client that prepares the statement after the change
// gets the new columns. Each step's outcome must match PostgreSQL's, in
// the pgx modes that cache statements.
func TestStatementShapeAfterTableChange(t *testing.T) {
	px := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	direct := testCluster.Shards[0].Primary.DSN("postgres")
	ctx := ctx10(t)
	admin := connect(t, direct, pgx.QueryExecModeSimpleProtocol)

	scenario := func(t *testing.T, dsn, table string, mode pgx.QueryExecMode, viaProxy bool) []string {
		var steps []string
		note := func(step string, err error) {
			var pe *pgconn.PgError
			switch {
			case err == nil:
				steps = append(steps, step+": ok")
			case errors.As(err, &pe):
				steps = append(steps, step+": "+pe.Code+" "+pe.Message)
			default:
				steps = append(steps, step+": "+err.Error())
			}
		}
		for _, sql := range []string{
			"DROP TABLE IF EXISTS " + table,
			"CREATE TABLE " + table + " (id int, a text)",
			"INSERT INTO " + table + " VALUES (1, 'one')",
		} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		c := connect(t, dsn, mode)
		q := "SELECT * FROM " + table + " WHERE id = $1"
		var id int
		var a string
		err := c.QueryRow(ctx, q, 1).Scan(&id, &a)
		note(fmt.Sprintf("before: %d %q", id, a), err)
		var pid int
		if viaProxy {
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
		}
		for _, sql := range []string{
			"ALTER TABLE " + table + " DROP COLUMN a",
			"ALTER TABLE " + table + " ADD COLUMN a int",
			"UPDATE " + table + " SET a = 7",
		} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		if viaProxy {
			// The pool's one server connection, which has the statement,
			// goes away: the next run prepares it on a new one.
			if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", pid); err != nil {
				t.Fatal(err)
			}
		}
		// Another client prepares the statement after the change, inside
		// a transaction (its Parse reaches the server connection): it
		// gets the new columns.
		b := connect(t, dsn, mode)
		tx, err := b.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var bn int
		err = tx.QueryRow(ctx, q, 1).Scan(&id, &bn)
		note(fmt.Sprintf("new client: %d", bn), err)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		a = ""
		err = c.QueryRow(ctx, q, 1).Scan(&id, &a)
		note(fmt.Sprintf("after: %q", a), err)
		var n int
		err = c.QueryRow(ctx, q, 1).Scan(&id, &n)
		note(fmt.Sprintf("again: %d", n), err)
		return steps
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe} {
		t.Run(mode.String(), func(t *testing.T) {
			want := scenario(t, direct, "shape_direct_"+strings.ReplaceAll(mode.String(), " ", "_"), mode, false)
			got := scenario(t, px.dsn, "shape_proxy_"+strings.ReplaceAll(mode.String(), " ", "_"), mode, true)
			for i := range want {
				if i >= len(got) || got[i] != want[i] {
					t.Fatalf("through the proxy:\n%q\nPostgreSQL:\n%q", got, want)
				}
			}
		})
	}
}

// TestStaleStatementInTransaction: the stale-statement error of
// TestStatementShapeAfterTableChange, raised inside a transaction block
// that already wrote. On PostgreSQL the error aborts the transaction: its
// COMMIT answers ROLLBACK (pgx: ErrTxCommitRollback) and the write is
// gone. The proxy raises this error itself (the server connection never
// saw the statement fail), so it must fail the server's transaction too:
// before, the COMMIT committed the write.
func TestStaleStatementInTransaction(t *testing.T) {
	px := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	direct := testCluster.Shards[0].Primary.DSN("postgres")
	ctx := ctx10(t)
	admin := connect(t, direct, pgx.QueryExecModeSimpleProtocol)
	for _, sql := range []string{
		"DROP TABLE IF EXISTS stale_tx, stale_tx_log",
		"CREATE TABLE stale_tx (id int, a text)",
		"INSERT INTO stale_tx VALUES (1, 'one')",
		"CREATE TABLE stale_tx_log (id int)",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, px.dsn, pgx.QueryExecModeCacheStatement)
	q := "SELECT * FROM stale_tx WHERE id = $1"
	var id int
	var a string
	if err := c.QueryRow(ctx, q, 1).Scan(&id, &a); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"ALTER TABLE stale_tx DROP COLUMN a", "ALTER TABLE stale_tx ADD COLUMN a int"} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	// The next transaction gets a new server connection, where the proxy
	// prepares the statement afresh and finds other columns.
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", pid); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO stale_tx_log VALUES ($1)", 1); err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if err := tx.QueryRow(ctx, q, 1).Scan(&id, &a); !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Fatalf("stale statement in the transaction: %v, want 0A000", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO stale_tx_log VALUES ($1)", 2); !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Errorf("statement after the error: %v, want 25P02", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("COMMIT of the failed transaction: %v, want %v", err, pgx.ErrTxCommitRollback)
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM stale_tx_log").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows written by the failed transaction were committed", n)
	}
}

// TestStatementPreparedAfterSchemaChange: a table changes shape through
// the proxy while the pool's server connection keeps a copy of a
// statement prepared before. A client that prepares the statement after
// the change gets the new columns, as on PostgreSQL (the copy would answer
// 0A000), and a client that prepared it before gets 0A000, as on
// PostgreSQL.
func TestStatementPreparedAfterSchemaChange(t *testing.T) {
	px := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	direct := testCluster.Shards[0].Primary.DSN("postgres")
	ctx := ctx10(t)
	scenario := func(dsn, table string) []string {
		var steps []string
		note := func(step string, err error) {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				steps = append(steps, step+": "+pe.Code+" "+pe.Message)
			} else if err != nil {
				steps = append(steps, step+": "+err.Error())
			} else {
				steps = append(steps, step+": ok")
			}
		}
		admin := connect(t, dsn, pgx.QueryExecModeSimpleProtocol)
		for _, sql := range []string{"DROP TABLE IF EXISTS " + table, "CREATE TABLE " + table + " (id int, a text)",
			"INSERT INTO " + table + " VALUES (1, 'one')"} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		q := "SELECT * FROM " + table + " WHERE id = $1"
		old := connect(t, dsn, pgx.QueryExecModeCacheStatement)
		var id int
		var a string
		note("before", old.QueryRow(ctx, q, 1).Scan(&id, &a))
		for _, sql := range []string{"ALTER TABLE " + table + " DROP COLUMN a", "ALTER TABLE " + table + " ADD COLUMN a int",
			"UPDATE " + table + " SET a = 7"} {
			if _, err := admin.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		fresh := connect(t, dsn, pgx.QueryExecModeCacheStatement)
		var n int
		err := fresh.QueryRow(ctx, q, 1).Scan(&id, &n)
		note(fmt.Sprintf("prepared after: %d", n), err)
		err = old.QueryRow(ctx, q, 1).Scan(&id, &a)
		note("prepared before", err)
		return steps
	}
	want := scenario(direct, "shape_ddl_direct")
	got := scenario(px.dsn, "shape_ddl_proxy")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("through the proxy:\n%q\nPostgreSQL:\n%q", got, want)
	}
}
