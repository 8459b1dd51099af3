package proxy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// TestExtendedDeallocate: DEALLOCATE sent with the extended protocol (as
// psycopg 3 does to evict its statement cache, and with ALL after a failed
// transaction) drops the client's statements only. Another client's
// statement prepared on the same server connection keeps working (before,
// the server ran DEALLOCATE ALL and that client's next Bind failed with
// 26000); names and errors are PostgreSQL's.
func TestExtendedDeallocate(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 }) // one server connection for both clients
	ctx := ctx10(t)
	a, b := connectPg(t, ctx, tp.dsn), connectPg(t, ctx, tp.dsn)
	run := func(c *pgconn.PgConn, stmt string, args ...[]byte) (string, error) {
		r := c.ExecPrepared(ctx, stmt, args, nil, nil).Read()
		if r.Err != nil {
			return "", r.Err
		}
		return string(r.Rows[0][0]), nil
	}
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return ""
	}
	if _, err := a.Prepare(ctx, "a1", "SELECT $1::int + 1", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := run(a, "a1", []byte("41")); err != nil || v != "42" {
		t.Fatalf("a1: %q %v", v, err)
	}
	if _, err := b.Prepare(ctx, "b1", "SELECT $1::int * 2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx, "b2", "SELECT $1::int * 3", nil); err != nil {
		t.Fatal(err)
	}

	// DEALLOCATE name drops that statement of this client.
	r := b.ExecParams(ctx, "DEALLOCATE b1", nil, nil, nil, nil).Read()
	if r.Err != nil || r.CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("DEALLOCATE b1: %q %v", r.CommandTag, r.Err)
	}
	if _, err := run(b, "b1", []byte("1")); code(err) != "26000" {
		t.Fatalf("b1 after DEALLOCATE: want 26000, got %v", err)
	}
	if v, err := run(b, "b2", []byte("5")); err != nil || v != "15" {
		t.Fatalf("b2 after DEALLOCATE b1: %q %v", v, err)
	}
	r = b.ExecParams(ctx, "DEALLOCATE nosuch", nil, nil, nil, nil).Read()
	if code(r.Err) != "26000" || r.Err.(*pgconn.PgError).Message != `prepared statement "nosuch" does not exist` {
		t.Fatalf("DEALLOCATE nosuch: %v", r.Err)
	}

	// An error earlier in the batch: PostgreSQL skips the DEALLOCATE.
	batch := &pgconn.Batch{}
	batch.ExecParams("SELECT 1/0", nil, nil, nil, nil)
	batch.ExecParams("DEALLOCATE ALL", nil, nil, nil, nil)
	if _, err := b.ExecBatch(ctx, batch).ReadAll(); code(err) != "22012" {
		t.Fatalf("batch: want 22012, got %v", err)
	}
	if v, err := run(b, "b2", []byte("2")); err != nil || v != "6" {
		t.Fatalf("b2 after a skipped DEALLOCATE ALL: %q %v", v, err)
	}

	// DEALLOCATE ALL drops b's statements, not a's on the shared server connection.
	r = b.ExecParams(ctx, "DEALLOCATE ALL", nil, nil, nil, nil).Read()
	if r.Err != nil || r.CommandTag.String() != "DEALLOCATE ALL" {
		t.Fatalf("DEALLOCATE ALL: %q %v", r.CommandTag, r.Err)
	}
	if _, err := run(b, "b2", []byte("1")); code(err) != "26000" {
		t.Fatalf("b2 after DEALLOCATE ALL: want 26000, got %v", err)
	}
	if v, err := run(a, "a1", []byte("1")); err != nil || v != "2" {
		t.Fatalf("a1 after the other client's DEALLOCATE ALL: %q %v", v, err)
	}
	// b can prepare the names again.
	if _, err := b.Prepare(ctx, "b2", "SELECT $1::int * 4", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := run(b, "b2", []byte("2")); err != nil || v != "8" {
		t.Fatalf("b2 re-prepared: %q %v", v, err)
	}

	// Inside a transaction block the error aborts it, as on PostgreSQL:
	// what follows gets 25P02 and COMMIT rolls back (the proxy answered
	// the error without the server, which went on and committed).
	if _, err := b.Exec(ctx, "BEGIN; CREATE TEMP TABLE dealloc_tx (id int)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	failsTransaction(t, ctx, b, "DEALLOCATE nosuch", "26000")
}

// failsTransaction runs sql with the extended protocol inside c's open
// transaction block and requires error code, then PostgreSQL's failed
// block: 25P02 for the next statement, ROLLBACK for COMMIT.
func failsTransaction(t *testing.T, ctx context.Context, c *pgconn.PgConn, sql, code string) {
	t.Helper()
	var pe *pgconn.PgError
	if r := c.ExecParams(ctx, sql, nil, nil, nil, nil).Read(); !errors.As(r.Err, &pe) || pe.Code != code {
		t.Fatalf("%s in a transaction block: %v, want %s", sql, r.Err, code)
	}
	if r := c.ExecParams(ctx, "SELECT 1", nil, nil, nil, nil).Read(); !errors.As(r.Err, &pe) || pe.Code != "25P02" {
		t.Errorf("statement after the error: %v, want 25P02", r.Err)
	}
	if res, err := c.Exec(ctx, "COMMIT").ReadAll(); err != nil || res[0].CommandTag.String() != "ROLLBACK" {
		t.Errorf("COMMIT of the failed transaction: %v %v, want ROLLBACK", res, err)
	}
}

// TestSQLPreparedOverExtendedProtocol: PREPARE and EXECUTE statements sent
// with the extended protocol get 0A000 with a hint, in a transaction block
// aborting it as an error does. Run as written, PREPARE created the
// client's name on the pooled server connection — another client could
// EXECUTE it — and EXECUTE of a statement prepared with a simple query
// failed with 26000 (the proxy prepares it under a name of its own).
func TestSQLPreparedOverExtendedProtocol(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 }) // one server connection for both clients
	ctx := ctx10(t)
	a, b := connectPg(t, ctx, tp.dsn), connectPg(t, ctx, tp.dsn)
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return ""
	}
	if _, err := a.Exec(ctx, "PREPARE q AS SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"PREPARE leak AS SELECT 2", "EXECUTE q"} {
		r := a.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
		var pe *pgconn.PgError
		if !errors.As(r.Err, &pe) || pe.Code != "0A000" || pe.Hint == "" {
			t.Errorf("%s over the extended protocol: %v, want 0A000 with a hint", sql, r.Err)
		}
	}
	if _, err := b.Exec(ctx, "EXECUTE leak").ReadAll(); code(err) != "26000" {
		t.Errorf("another client's EXECUTE of the name: %v, want 26000", err)
	}
	if res, err := a.Exec(ctx, "EXECUTE q").ReadAll(); err != nil || string(res[0].Rows[0][0]) != "1" {
		t.Errorf("EXECUTE q as a simple query: %v %v", res, err)
	}
	if _, err := a.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	failsTransaction(t, ctx, a, "EXECUTE q", "0A000")
}

// connectPg opens a pgconn connection closed when the test ends.
func connectPg(t *testing.T, ctx context.Context, dsn string) *pgconn.PgConn {
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestSQLPreparedInStrings: SQL PREPARE inside multi-statement queries, as
// PostgreSQL answers it. A PREPARE of a name the client has fails with
// 42P05 where it stands (the proxy prepared it again under its own name);
// a PREPARE after a failing statement of the string leaves the server
// connection as it was (the proxy forgot its statement there, and the
// next PREPARE of the text failed with 42P05); and a PREPARE after a
// COMMIT ending a failed block is the client's, not created under the
// client's name on the pooled connection for any client to EXECUTE.
func TestSQLPreparedInStrings(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 }) // one server connection for both clients
	ctx := ctx10(t)
	a, b := connectPg(t, ctx, tp.dsn), connectPg(t, ctx, tp.dsn)
	run := func(c *pgconn.PgConn, sql string) ([]*pgconn.Result, string) {
		res, err := c.Exec(ctx, sql).ReadAll()
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return res, pe.Code + " " + pe.Message
		} else if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return res, ""
	}
	value := func(c *pgconn.PgConn, sql string) string {
		res, errText := run(c, sql)
		if errText != "" || len(res) == 0 || len(res[len(res)-1].Rows) == 0 {
			return errText
		}
		return string(res[len(res)-1].Rows[0][0])
	}
	if _, e := run(a, "PREPARE q AS SELECT 1"); e != "" {
		t.Fatal(e)
	}
	res, e := run(a, "SELECT 7; PREPARE q AS SELECT 2")
	if e != `42P05 prepared statement "q" already exists` || len(res) == 0 || string(res[0].Rows[0][0]) != "7" {
		t.Errorf("duplicate PREPARE in a string: %q after %d results, want 42P05 after the SELECT's row", e, len(res))
	}
	if v := value(a, "EXECUTE q"); v != "1" {
		t.Errorf("EXECUTE q after the failed duplicate: %q, want 1", v)
	}
	if _, e := run(a, "SELECT 1/0; PREPARE r AS SELECT 1"); !strings.HasPrefix(e, "22012") {
		t.Errorf("PREPARE after a failing statement: %q, want 22012", e)
	}
	if _, e := run(a, "PREPARE r AS SELECT 1"); e != "" {
		t.Errorf("PREPARE r afterwards: %q", e)
	}
	if v := value(a, "EXECUTE r"); v != "1" {
		t.Errorf("EXECUTE r: %q, want 1", v)
	}
	for _, sql := range []string{"BEGIN", "SELECT 1/0"} {
		run(a, sql)
	}
	if res, e := run(a, "COMMIT; PREPARE s AS SELECT 3"); e != "" || len(res) != 2 || res[0].CommandTag.String() != "ROLLBACK" {
		t.Errorf("COMMIT of a failed block, then PREPARE: %v %q", res, e)
	}
	if v := value(b, "EXECUTE s"); !strings.HasPrefix(v, "26000") {
		t.Errorf("another client's EXECUTE s: %q, want 26000", v)
	}
	if _, e := run(a, "PREPARE s AS SELECT 4"); !strings.HasPrefix(e, "42P05") {
		t.Errorf("PREPARE s again: %q, want 42P05", e)
	}
	if v := value(a, "EXECUTE s"); v != "3" {
		t.Errorf("EXECUTE s: %q, want 3", v)
	}
	// Statements earlier in the same string count: a DEALLOCATE frees the
	// name (also when the new text is the one it had), a PREPARE makes it
	// there for an EXECUTE after it.
	for _, c := range []struct{ sql, want string }{
		{"DEALLOCATE s; PREPARE s AS SELECT 5; EXECUTE s", "5"},
		{"DEALLOCATE s; PREPARE s AS SELECT 5; EXECUTE s", "5"},
		{"PREPARE t AS SELECT 6; EXECUTE t", "6"},
		{"DEALLOCATE t; EXECUTE t", `26000 prepared statement "t" does not exist`},
		{"PREPARE u AS SELECT 8; PREPARE u AS SELECT 9", `42P05 prepared statement "u" already exists`},
		{"DEALLOCATE ALL; PREPARE s AS SELECT 10; EXECUTE s", "10"},
		{"EXECUTE s", "10"},
		{"DEALLOCATE ALL; EXECUTE s", `26000 prepared statement "s" does not exist`},
		{"PREPARE v AS SELECT 11; PREPARE w AS SELECT 11", ""},
		{"DEALLOCATE v; EXECUTE w", "11"}, // one server statement for both names
		{"EXECUTE w", "11"},
	} {
		if v := value(a, c.sql); v != c.want {
			t.Errorf("%s: %q, want %q", c.sql, v, c.want)
		}
	}
	if v := value(b, "EXECUTE t"); !strings.HasPrefix(v, "26000") {
		t.Errorf("another client's EXECUTE t: %q, want 26000", v)
	}
}
