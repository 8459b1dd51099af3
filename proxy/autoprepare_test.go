package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
)

// simpleOutcome is everything a client sees of a simple Query: per
// result the columns (name, type, modifier, table, attribute, format),
// rows, tag and error fields.
func simpleOutcome(ctx context.Context, c *pgconn.PgConn, sql string) string {
	results, err := c.Exec(ctx, sql).ReadAll()
	var b strings.Builder
	for _, r := range results {
		for _, f := range r.FieldDescriptions {
			fmt.Fprintf(&b, "col %s type=%d mod=%d table=%d attr=%d fmt=%d\n", f.Name, f.DataTypeOID, f.TypeModifier, f.TableOID, f.TableAttributeNumber, f.Format)
		}
		for _, row := range r.Rows {
			fmt.Fprintf(&b, "row %q\n", row)
		}
		fmt.Fprintf(&b, "tag %s\n", r.CommandTag)
		if r.Err != nil {
			err = r.Err
		}
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			fmt.Fprintf(&b, "error %s %s %s position=%d detail=%q hint=%q\n", pe.Severity, pe.Code, pe.Message, pe.Position, pe.Detail, pe.Hint)
		} else {
			fmt.Fprintf(&b, "error %v\n", err)
		}
	}
	return b.String()
}

// TestAutoPrepareDifferential runs simple queries three times through the
// proxy (from the second sighting of a shape on, they run as prepared
// statements) and once straight on PostgreSQL: columns, types, rows, tags
// and errors (with positions) must be the same every time.
func TestAutoPrepareDifferential(t *testing.T) {
	ctx := ctx10(t)
	direct, err := pgconn.Connect(ctx, testCluster.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	for _, sql := range []string{
		"DROP TABLE IF EXISTS ap_t",
		"CREATE TABLE ap_t (id int PRIMARY KEY, n numeric, s text, b bigint, si smallint)",
		"INSERT INTO ap_t SELECT g, g * 1.5, 'v' || (g % 3), g * 10000000000, g FROM generate_series(1, 20) g",
	} {
		if _, err := direct.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatal(sql, err)
		}
	}
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 3 })
	pc := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol).PgConn()

	corpus := []string{
		"SELECT id, n, s FROM ap_t WHERE id = 3",
		"select id from ap_t where id in (1, 2, 3) order by id",
		"SELECT 1, -1, 2.50, 1e3, .5, 5., 2147483647, 5000000000, 99999999999999999999, -5000000000",
		"SELECT pg_typeof(1), pg_typeof(-2147483647), pg_typeof(2.5), pg_typeof(5000000000), pg_typeof(1e3)",
		"SELECT -2147483648, pg_typeof(-2147483648), -9223372036854775808",
		"SELECT id FROM ap_t ORDER BY 1 LIMIT 2",
		"SELECT s, count(*) FROM ap_t GROUP BY 1 ORDER BY 1",
		"SELECT DISTINCT ON (1) s, id FROM ap_t ORDER BY 1, 2",
		"SELECT 1::text || 'x', round(2.567, 2), 7 / 2, 7.0 / 2, 2 ^ 3",
		"SELECT id FROM ap_t WHERE id = 1.5 OR id = 2.0",
		"SELECT id, si FROM ap_t WHERE si = 3",
		"SELECT id FROM ap_t WHERE b = 30000000000",
		"SELECT format('%s-%s', 1, 'a'), concat(1, 2.5), coalesce(NULL, 3)",
		"SELECT 1/0",
		"SELECT id/0 FROM ap_t WHERE id = 1",
		"SELECT x FROM ap_nosuch WHERE y = 1",
		"SELECT id FROM ap_t WHERE id = 'abc' AND si = 1",
		"SELECT 32768::smallint",
		"SELECT nosuchcol FROM ap_t WHERE id = 1",
		"UPDATE ap_t SET n = 5.5 WHERE id = 3 RETURNING id, n",
		"UPDATE ap_t SET n = n WHERE id = 999",
		"INSERT INTO ap_t (id, n) VALUES (1, 1)",
		"INSERT INTO ap_t (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = 7 RETURNING id, n",
		"DELETE FROM ap_t WHERE id = 999 RETURNING id",
		"SELECT generate_series(1, 3), array[1, 2][2], '{1,2}'::int[]",
		"SELECT id FROM ap_t ORDER BY id LIMIT 2 OFFSET 1",
		"SELECT x::numeric(5,1), cast(x AS numeric(6, 2)) FROM (VALUES (1.25)) v(x)",
		"SELECT id FROM ap_t WHERE id = 1 FOR UPDATE",
		"WITH c AS (SELECT id FROM ap_t WHERE id < 3) SELECT count(*) FROM c",
		"SELECT 'a' || 1, E'x\\ny', 2, \"id\" FROM ap_t WHERE id = 4 -- 5\n",
		"SELECT id /* 1 */ FROM ap_t WHERE id = 6;",
		"SELECT 1; SELECT 2",
		"SELECT $1",
		"SELECT s, count(*) FROM ap_t GROUP BY ROLLUP (1) ORDER BY 1",
		"SELECT id, lag(id, 1) OVER (ORDER BY id) FROM ap_t WHERE id < 4 ORDER BY id",
		"SELECT 5 AS five, -5, +5",
		"SELECT interval '1 day' * 2, now() - now() < interval '1' second",
	}
	for _, sql := range corpus {
		want := simpleOutcome(ctx, direct, sql)
		for run := 1; run <= 3; run++ {
			if got := simpleOutcome(ctx, pc, sql); got != want {
				t.Errorf("%q run %d through the proxy:\n%s\nstraight:\n%s", sql, run, got, want)
			}
		}
	}
	// The corpus did run prepared: every shape seen twice that qualifies.
	if runs := tp.srv.autoShapes.runs.Load(); runs < 40 {
		t.Errorf("auto-prepared runs = %d, want ≥ 40 (most statements from their second run on)", runs)
	}
	if r := tp.srv.autoShapes.retries.Load(); r == 0 {
		t.Errorf("no auto-prepared query was retried as written; the corpus has errors at Parse")
	}

	// Inside a transaction block nothing is auto-prepared.
	before := tp.srv.autoShapes.runs.Load()
	for _, sql := range []string{"BEGIN", "SELECT id FROM ap_t WHERE id = 3", "SELECT id FROM ap_t WHERE id = 4", "COMMIT"} {
		if out := simpleOutcome(ctx, pc, sql); strings.Contains(out, "error") {
			t.Fatal(sql, out)
		}
	}
	if after := tp.srv.autoShapes.runs.Load(); after != before {
		t.Errorf("%d queries auto-prepared inside a transaction block", after-before)
	}

	// With standard_conforming_strings off a backslash escapes a quote in
	// a plain string: the proxy sends such sessions' queries as written.
	for _, c := range []*pgconn.PgConn{direct, pc} {
		if out := simpleOutcome(ctx, c, "SET standard_conforming_strings = off"); strings.Contains(out, "error") {
			t.Fatal(out)
		}
	}
	for _, sql := range []string{`SELECT 'a\'', 1`, `SELECT 'a\'', 1`, `SELECT 'a\'', 1`} {
		if got, want := simpleOutcome(ctx, pc, sql), simpleOutcome(ctx, direct, sql); got != want {
			t.Errorf("%q with standard_conforming_strings off:\n%s\nstraight:\n%s", sql, got, want)
		}
	}
	for _, c := range []*pgconn.PgConn{direct, pc} {
		if out := simpleOutcome(ctx, c, "SET standard_conforming_strings = on; SET client_encoding = 'SJIS'"); strings.Contains(out, "error") {
			t.Fatal(out)
		}
	}
	// In SJIS a trailing byte may be a backslash (0x5C): "\x95\x5C" is one
	// character, and the quote after it ends the E'' string.
	before = tp.srv.autoShapes.runs.Load()
	for _, sql := range []string{"SELECT E'\x95\x5C', 1", "SELECT 'x', 2"} {
		for run := 1; run <= 3; run++ {
			if got, want := simpleOutcome(ctx, pc, sql), simpleOutcome(ctx, direct, sql); got != want {
				t.Errorf("%q in SJIS, run %d:\n%s\nstraight:\n%s", sql, run, got, want)
			}
		}
	}
	if after := tp.srv.autoShapes.runs.Load(); after != before {
		t.Errorf("%d queries auto-prepared with client_encoding SJIS", after-before)
	}
}

// TestAutoPrepareTableChangesShape: after ALTER TABLE adds a column, the
// server's prepared copies of "SELECT * … WHERE id = $1" would fail with
// "cached plan must not change result type"; the proxy closes them and
// sends the text as written, so clients see the new column and no error.
func TestAutoPrepareTableChangesShape(t *testing.T) {
	ctx := ctx10(t)
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	admin := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol)
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS ap_ddl; CREATE TABLE ap_ddl (id int PRIMARY KEY, a text); INSERT INTO ap_ddl VALUES (1, 'x'), (2, 'y')"); err != nil {
		t.Fatal(err)
	}
	clients := []*pgconn.PgConn{
		connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol).PgConn(),
		connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol).PgConn(),
		connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol).PgConn(),
	}
	// One server connection: the prepared copy the first runs leave is the
	// one the runs after ALTER TABLE meet.
	run := func(wantCols int) {
		t.Helper()
		for i, c := range clients {
			for k := 0; k < 3; k++ {
				res, err := c.Exec(ctx, fmt.Sprintf("SELECT * FROM ap_ddl WHERE id = %d", 1+(i+k)%2)).ReadAll()
				if err != nil {
					t.Fatalf("client %d run %d: %v", i, k, err)
				}
				if n := len(res[0].FieldDescriptions); n != wantCols {
					t.Fatalf("client %d run %d: %d columns, want %d", i, k, n, wantCols)
				}
			}
		}
	}
	run(2)
	if tp.srv.autoShapes.runs.Load() == 0 {
		t.Fatal("the SELECT never ran auto-prepared")
	}
	if _, err := admin.Exec(ctx, "ALTER TABLE ap_ddl ADD COLUMN z int DEFAULT 7"); err != nil {
		t.Fatal(err)
	}
	retries := tp.srv.autoShapes.retries.Load()
	run(3)
	run(3)
	if tp.srv.autoShapes.retries.Load() == retries {
		t.Error("no stale prepared copy was met after ALTER TABLE; the test did not exercise the retry")
	}
}

// TestAutoPrepareOff: with pool.auto_prepare off every simple query is sent
// as written.
func TestAutoPrepareOff(t *testing.T) {
	ctx := ctx10(t)
	tp := startProxy(t, func(c *config.Config) { c.Pool.AutoPrepare = "off" })
	c := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol)
	for i := 0; i < 5; i++ {
		var n int
		if err := c.QueryRow(ctx, fmt.Sprintf("SELECT %d + 1", i)).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("got %d, %v", n, err)
		}
	}
	if runs := tp.srv.autoShapes.runs.Load(); runs != 0 {
		t.Errorf("auto_prepare off: %d queries ran prepared", runs)
	}
}

// TestAutoPrepareNoticesOnce: notices raised before the statement runs
// (an immutable function folded while the plan is made) reach the client
// once per query, also when the prepared form then fails before running
// and the text is sent again; statements whose parse raises a notice (an
// identifier truncated to 63 bytes) are sent as written.
func TestAutoPrepareNoticesOnce(t *testing.T) {
	ctx := ctx10(t)
	direct := testCluster.Shards[0].Primary.DSN("postgres")
	admin, err := pgconn.Connect(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE OR REPLACE FUNCTION ap_noisy(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $f$ BEGIN RAISE NOTICE 'noisy %', $1; RETURN $1; END $f$`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, nil)
	long := strings.Repeat("x", 70)
	statements := []struct{ sql, notice string }{
		{"SELECT ap_noisy(5), 1/0", "00000 noisy 5"},                 // NOTICE, then 22012 while planning: retried as written
		{"SELECT ap_noisy(6)", "00000 noisy 6"},                      // NOTICE while planning, then the row
		{"SELECT 2 AS " + long + " WHERE 3 = 3", "42622 identifier"}, // NOTICE while parsing: sent as written
	}
	for _, dsn := range []string{direct, tp.dsn} {
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		var notices []string
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Code+" "+n.Message) }
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range statements {
			for run := 1; run <= 3; run++ {
				notices = notices[:0]
				c.Exec(ctx, st.sql).ReadAll()
				if len(notices) != 1 || !strings.HasPrefix(notices[0], st.notice) {
					t.Errorf("%.30s run %d (%s): notices %q, want one %q", st.sql, run, dsn, notices, st.notice)
				}
			}
		}
		c.Close(ctx)
	}
	if tp.srv.autoShapes.retries.Load() == 0 || tp.srv.autoShapes.runs.Load() < 3 {
		t.Errorf("runs %d, retries %d: the test did not exercise auto-prepare", tp.srv.autoShapes.runs.Load(), tp.srv.autoShapes.retries.Load())
	}
}

// TestAutoPrepareSessionMode: in session mode DISCARD ALL drops the
// server's prepared statements when a client leaves; the next client's
// auto-prepared query prepares its statement again (no stale name used).
func TestAutoPrepareSessionMode(t *testing.T) {
	ctx := ctx10(t)
	tp := startProxy(t, func(c *config.Config) { c.Pool.Mode = "session"; c.Pool.Size = 1 })
	for client, base := range []int{7, 9} {
		c := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol)
		for run := 0; run < 2; run++ {
			var n int
			if err := c.QueryRow(ctx, fmt.Sprintf("SELECT %d + 1 AS n", base+run)).Scan(&n); err != nil || n != base+run+1 {
				t.Fatalf("client %d run %d: %d, %v", client, run, n, err)
			}
		}
		c.Close(ctx)
		// The server connection goes back to the pool (after DISCARD ALL)
		// once the proxy has seen the client leave.
		waitFor(t, 10*time.Second, func() bool {
			idle := 0
			tp.srv.pools.Each(func(_ pool.Key, p *pool.Pool) { idle += p.Stats().Idle })
			return idle == 1
		})
	}
	if runs, retries := tp.srv.autoShapes.runs.Load(), tp.srv.autoShapes.retries.Load(); runs != 3 || retries != 0 {
		t.Errorf("auto-prepared runs %d (want 3: every run after the first), retries %d (want 0)", runs, retries)
	}
}

func TestOriginalPosition(t *testing.T) {
	sql := []byte("UPDATE tæ SET a = 12345 WHERE id = 67890 AND n = 3")
	norm := "UPDATE tæ SET a = $1 WHERE id = $2 AND n = $3"
	lits := []sqlclass.Literal{{Start: 19, End: 24}, {Start: 36, End: 41}, {Start: 50, End: 51}}
	charPos := func(s, sub string) int { return len([]rune(s[:strings.LastIndex(s, sub)])) + 1 }
	for _, c := range []struct{ at, want string }{
		{"tæ", "tæ"}, {"SET", "SET"}, {"WHERE", "WHERE"}, {"AND n", "AND n"}, {"$2", "67890"}, {"$3", "3"},
	} {
		if got, want := originalPosition(charPos(norm, c.at), sql, lits), charPos(string(sql), c.want); got != want {
			t.Errorf("position of %q: %d, want %d", c.at, got, want)
		}
	}
}

// TestAutoPrepareInTransaction: inside a transaction block, INSERT,
// UPDATE and DELETE without RETURNING run auto-prepared (they have no
// result type a table change could break) while SELECTs are sent as
// written; a statement that fails there fails as the text would, with the
// error position pointing into the text.
func TestAutoPrepareInTransaction(t *testing.T) {
	ctx := ctx10(t)
	direct, err := pgconn.Connect(ctx, testCluster.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	for _, sql := range []string{"DROP TABLE IF EXISTS ap_tx", "CREATE TABLE ap_tx (id int PRIMARY KEY, a int, n int)", "INSERT INTO ap_tx VALUES (67890, 0, 0), (1, 0, 0)"} {
		if _, err := direct.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	pc := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol).PgConn()
	both := func(sql string) {
		t.Helper()
		want := simpleOutcome(ctx, direct, sql)
		if got := simpleOutcome(ctx, pc, sql); got != want {
			t.Errorf("%q through the proxy:\n%s\nstraight:\n%s", sql, got, want)
		}
	}
	// Rows are compared on the shared table, so statements run once per side
	// would double their effect: run the writes through the proxy only and
	// check the table after.
	run := func(sql string) {
		t.Helper()
		if out := simpleOutcome(ctx, pc, sql); strings.Contains(out, "error") {
			t.Fatalf("%q: %s", sql, out)
		}
	}
	run("UPDATE ap_tx SET a = 12345 WHERE id = 67890 AND n = 3") // seen once (autocommit, as written)
	before := tp.srv.autoShapes.runs.Load()
	run("BEGIN")
	for i := 0; i < 3; i++ {
		run(fmt.Sprintf("UPDATE ap_tx SET a = a + %d WHERE id = 1", i+1))
		run(fmt.Sprintf("INSERT INTO ap_tx VALUES (%d, %d, 0)", 100+i, i))
		run(fmt.Sprintf("SELECT a FROM ap_tx WHERE id = %d", 100+i))
	}
	run("DELETE FROM ap_tx WHERE id = 102")
	run("DELETE FROM ap_tx WHERE id = 101")
	run("COMMIT")
	// UPDATE: runs 2 and 3; INSERT: runs 2 and 3; DELETE: the second. No SELECT.
	if got := tp.srv.autoShapes.runs.Load() - before; got != 5 {
		t.Errorf("%d statements auto-prepared in the transaction, want 5 (DML from its second sighting, no SELECT)", got)
	}
	both("SELECT id, a, n FROM ap_tx ORDER BY id")

	// The prepared UPDATE is on the proxy's one server connection; a column
	// it names goes away, and in the next transaction it fails at Bind.
	both("UPDATE ap_tx SET a = 12345 WHERE id = 67890 AND n = 3")
	if _, err := direct.Exec(ctx, "ALTER TABLE ap_tx DROP COLUMN n").ReadAll(); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"BEGIN", "UPDATE ap_tx SET a = 12346 WHERE id = 67890 AND n = 4", "SELECT 1", "ROLLBACK"} {
		both(sql)
	}
}
