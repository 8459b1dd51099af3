package compat

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// queryString is one multi-statement simple Query of the check below;
// before runs first as its own query on both sides (e.g. BEGIN), after
// reads the state the string left.
type queryString struct {
	before, sql, after string
	refused            bool // the proxy answers 0A000 (PostgreSQL runs it)
}

// queryStrings are simple-query strings whose statements need different
// shards or the proxy's own execution: the proxy runs them one statement at
// a time and must keep PostgreSQL's semantics for the string (one implicit
// transaction, rolled back as a whole after an error, the rest skipped).
var queryStrings = []queryString{
	{sql: "SELECT count(*) FROM users; SELECT 1 AS x"},
	{sql: "SELECT id FROM posts ORDER BY id DESC LIMIT 3; SELECT count(*), max(id) FROM posts"},
	{sql: "UPDATE users SET name = name || '!' WHERE id = 1; UPDATE users SET name = name || '?' WHERE id = 2; SELECT id, name FROM users WHERE id IN (1, 2) ORDER BY id",
		after: "SELECT id, name FROM users WHERE id IN (1, 2) ORDER BY id"},
	{sql: "UPDATE users SET name = 'lost' WHERE id = 1; SELECT 1/0; UPDATE users SET name = 'lost' WHERE id = 2",
		after: "SELECT id, name FROM users WHERE id IN (1, 2) ORDER BY id"},
	{sql: "SELECT nope FROM users; UPDATE users SET name = 'lost' WHERE id = 3",
		after: "SELECT id, name FROM users WHERE id = 3"},
	{sql: "BEGIN; UPDATE users SET name = 'both' WHERE id = 3; UPDATE users SET name = 'both' WHERE id = 4; COMMIT",
		after: "SELECT id, name FROM users WHERE id IN (3, 4) ORDER BY id"},
	{sql: "BEGIN; UPDATE users SET name = 'aborted' WHERE id = 3; SELECT 1/0; COMMIT",
		after: "SELECT 1"}, // fails: the transaction is aborted until ROLLBACK
	{sql: "BEGIN; UPDATE users SET name = 'rolled back' WHERE id = 3; UPDATE users SET name = 'rolled back' WHERE id = 4; ROLLBACK",
		after: "SELECT id, name FROM users WHERE id IN (3, 4) ORDER BY id"},
	{before: "BEGIN", sql: "UPDATE users SET name = 'in tx' WHERE id = 5; SELECT count(*) FROM posts WHERE author_id <= 5",
		after: "SELECT id, name FROM users WHERE id = 5"},
	{before: "BEGIN", sql: "UPDATE users SET name = 'committed' WHERE id = 5; UPDATE users SET name = 'committed' WHERE id = 6; COMMIT",
		after: "SELECT id, name FROM users WHERE id IN (5, 6) ORDER BY id"},
	{before: "BEGIN", sql: "UPDATE users SET name = 'ended' WHERE id = 1; UPDATE users SET name = 'ended' WHERE id = 2; SELECT count(*) FROM users; COMMIT",
		after: "SELECT id, name FROM users WHERE id IN (1, 2) ORDER BY id"},
	{before: "BEGIN", sql: "SET LOCAL statement_timeout = '8s'; SELECT count(*) FROM users WHERE current_setting('statement_timeout') = '8s'; SHOW statement_timeout",
		after: "SHOW statement_timeout"},
	{sql: "SET statement_timeout = '7s'; SELECT count(*) FROM users; SHOW statement_timeout", after: "SHOW statement_timeout"},
	{sql: "BEGIN; SET statement_timeout = '9s'; UPDATE users SET name = 'two-phase' WHERE id = 1; UPDATE users SET name = 'two-phase' WHERE id = 2; COMMIT",
		after: "SELECT count(*) FROM users WHERE current_setting('statement_timeout') = '9s'"},
	{sql: "INSERT INTO users (id, name, email, active, created_at) VALUES (900001, 'a', 'a@x', true, '2024-01-01'); INSERT INTO users (id, name, email, active, created_at) VALUES (900002, 'b', 'b@x', true, '2024-01-01'); SELECT count(*) FROM users WHERE id > 900000",
		after: "SELECT id, name FROM users WHERE id > 900000 ORDER BY id"},
	{sql: "DELETE FROM users WHERE id = 900001; INSERT INTO users (id, name, email, active, created_at) VALUES (900002, 'dup', 'd@x', true, '2024-01-01'); DELETE FROM users WHERE id = 900002",
		after: "SELECT id, name FROM users WHERE id > 900000 ORDER BY id"},
	{sql: "SELECT count(*) FROM posts; SAVEPOINT s; SELECT 1"}, // 25P01: savepoints need a transaction block
	{sql: "COMMIT; SELECT id, name FROM users WHERE id = 5; SELECT count(*) FROM users"},
	{sql: "UPDATE users SET name = 'kept' WHERE id = 7; UPDATE users SET name = 'kept' WHERE id = 8; BEGIN; SAVEPOINT s; UPDATE users SET name = 'undone' WHERE id = 7; ROLLBACK TO SAVEPOINT s; COMMIT; UPDATE users SET name = 'lost' WHERE id = 8; SELECT 1/0",
		after: "SELECT id, name FROM users WHERE id IN (7, 8) ORDER BY id"},
	{sql: "UPDATE users SET name = 'rolled' WHERE id = 7; UPDATE users SET name = 'rolled' WHERE id = 8; ROLLBACK; SELECT id, name FROM users WHERE id IN (7, 8) ORDER BY id"},
	// Sequelize's findOrCreate: run apart, the INSERT in the function would
	// land on the shard the call went to, not the row's own.
	{sql: "CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response users, OUT caught text) RETURNS RECORD AS $f$ BEGIN " +
		"INSERT INTO users (id, name, email, active, created_at) VALUES (900010, 'f', 'f@x', true, '2024-01-01') RETURNING * INTO response; " +
		"EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS caught = PG_EXCEPTION_DETAIL; END $f$ LANGUAGE plpgsql; " +
		"SELECT (testfunc.response).id, testfunc.caught FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc()", refused: true},
}

// checkQueryStrings runs queryStrings on both sides and compares every
// result, the transaction status after the string and what after reads.
func checkQueryStrings(t *testing.T, ctx context.Context, ref, sharded *pgconn.PgConn) {
	for _, qs := range queryStrings {
		if qs.before != "" {
			Run(ctx, ref, qs.before, nil, Simple)
			Run(ctx, sharded, qs.before, nil, Simple)
		}
		if qs.refused { // the reference need not run it
			got, _ := runString(ctx, sharded, qs.sql)
			if len(got) != 1 || got[0].Code != Refused {
				t.Errorf("%s\n    want 0A000, got %s", qs.sql, describeAll(got))
			}
			if sharded.TxStatus() != 'I' {
				Run(ctx, sharded, "ROLLBACK", nil, Simple)
			}
			continue
		}
		want, wantStatus := runString(ctx, ref, qs.sql)
		got, gotStatus := runString(ctx, sharded, qs.sql)
		switch {
		case describeAll(want) != describeAll(got):
			t.Errorf("%s\n    reference: %s\n    proxy:     %s", qs.sql, describeAll(want), describeAll(got))
		case wantStatus != gotStatus:
			t.Errorf("%s\n    transaction status after it: reference %c, proxy %c", qs.sql, wantStatus, gotStatus)
		}
		if qs.after != "" {
			w := Run(ctx, ref, qs.after, nil, Simple)
			g := Run(ctx, sharded, qs.after, nil, Simple)
			if msg := Diff(w, g, true); msg != "" {
				t.Errorf("%s\n    then %s: %s", qs.sql, qs.after, msg)
			}
		}
		if ref.TxStatus() != 'I' {
			Run(ctx, ref, "ROLLBACK", nil, Simple)
		}
		if sharded.TxStatus() != 'I' {
			Run(ctx, sharded, "ROLLBACK", nil, Simple)
		}
	}
	Run(ctx, ref, "RESET statement_timeout", nil, Simple)
	Run(ctx, sharded, "RESET statement_timeout", nil, Simple)
}

// runString sends sql as one simple Query and returns each statement's
// outcome (the failed one last) and the transaction status after it.
func runString(ctx context.Context, conn *pgconn.PgConn, sql string) ([]Outcome, byte) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	var out []Outcome
	for _, r := range results {
		out = append(out, outcomeOf(r))
	}
	if err != nil && (len(out) == 0 || out[len(out)-1].Code == "") {
		out = append(out, failed(err))
	}
	return out, conn.TxStatus()
}

func describeAll(os []Outcome) string {
	parts := make([]string, len(os))
	for i, o := range os {
		parts[i] = describe(o) + fmt.Sprint(o.Rows)
	}
	return strings.Join(parts, " | ")
}
