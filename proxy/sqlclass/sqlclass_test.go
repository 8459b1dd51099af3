package sqlclass

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	cases := []struct {
		sql  string
		want []string
	}{
		{"", nil},
		{"   ;; ; \n", nil},
		{"SELECT 1", []string{"SELECT 1"}},
		{"SELECT 1;", []string{"SELECT 1"}},
		{"  SELECT 1 ;  SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT ';'; SELECT 'it''s;'", []string{"SELECT ';'", "SELECT 'it''s;'"}},
		{`SELECT E'a\';b'; SELECT 2`, []string{`SELECT E'a\';b'`, "SELECT 2"}},
		{`SELECT e'\\'; SELECT 2`, []string{`SELECT e'\\'`, "SELECT 2"}},
		{`SELECT 'a\'; SELECT 2`, []string{`SELECT 'a\'`, "SELECT 2"}}, // standard strings: backslash is literal
		{`SELECT ";" FROM "a;b"; SELECT 2`, []string{`SELECT ";" FROM "a;b"`, "SELECT 2"}},
		{`SELECT """;"""; SELECT 2`, []string{`SELECT """;"""`, "SELECT 2"}},
		{"SELECT $$;$$; SELECT $tag$ $$; $tag$; SELECT 3", []string{"SELECT $$;$$", "SELECT $tag$ $$; $tag$", "SELECT 3"}},
		{"SELECT $a$ $A$; $a$; x", []string{"SELECT $a$ $A$; $a$", "x"}}, // tags are case-sensitive
		{"SELECT $1; SELECT $2", []string{"SELECT $1", "SELECT $2"}},
		{"SELECT a$b$c; SELECT 2", []string{"SELECT a$b$c", "SELECT 2"}}, // $ inside an identifier
		{"SELECT 1 -- c;omment\n; SELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT 1 /* a /* nested; */ still; */ + 1; SELECT 2", []string{"SELECT 1 /* a /* nested; */ still; */ + 1", "SELECT 2"}},
		{"/* shardproxy: shard=1 */ SELECT 1; -- trailing", []string{"/* shardproxy: shard=1 */ SELECT 1"}},
		{"-- only a comment\n; /* and another */", nil},
		{"SELECT 1 -- no newline", []string{"SELECT 1"}},
		{"SELECT 1 /* unterminated ; SELECT 2", []string{"SELECT 1 /* unterminated ; SELECT 2"}},
		{"SELECT 'unterminated ; SELECT 2", []string{"SELECT 'unterminated ; SELECT 2"}},
		{"SELECT (1; 2); SELECT 3", []string{"SELECT (1; 2)", "SELECT 3"}},
		{"SELECT 1-- x\n", []string{"SELECT 1"}},
		{"SELECT 1+--x\n2; SELECT 3", []string{"SELECT 1+--x\n2", "SELECT 3"}},
		{"SELECT U&'d\\0061t;'; SELECT U&\"a;\"", []string{"SELECT U&'d\\0061t;'", "SELECT U&\"a;\""}},
		{
			"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 4",
			[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END", "SELECT 4"},
		},
		{
			"create or replace procedure p() begin atomic insert into t values (1); end; select 2",
			[]string{"create or replace procedure p() begin atomic insert into t values (1); end", "select 2"},
		},
		{"BEGIN; SELECT 1; END;", []string{"BEGIN", "SELECT 1", "END"}},
		{"SELECT 1.5e-3; SELECT .5", []string{"SELECT 1.5e-3", "SELECT .5"}},
	}
	for _, tc := range cases {
		got := Split(tc.sql)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q)\n got %q\nwant %q", tc.sql, got, tc.want)
		}
	}
}

// want is an expected Statement; empty Text means "don't check".
type want struct {
	Kind     Kind
	Name     string
	Value    string
	Body     string
	CopyFrom bool
	ReadOnly bool
	Text     string
}

func TestClassify(t *testing.T) {
	cases := []struct {
		sql  string
		want []want
	}{
		// Ordinary statements.
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 123", []want{{Kind: Other}}},
		{"  /* shardproxy: shard=x */ select 1", []want{{Kind: Other, Text: "/* shardproxy: shard=x */ select 1"}}},
		{"INSERT INTO temp VALUES (1)", []want{{Kind: Other}}},
		{"WITH x AS (SELECT 1) SELECT * FROM x", []want{{Kind: Other}}},
		{"(SELECT 1)", []want{{Kind: Other}}},
		{"SELECT 'set_config(''a'', ''b'', false)'", []want{{Kind: Other}}}, // inside a string
		{"SELECT 1 -- pg_advisory_lock(1)", []want{{Kind: Other}}},

		// Transactions.
		{"BEGIN", []want{{Kind: Begin}}},
		{"begin isolation level serializable, read only", []want{{Kind: Begin, Value: "isolation level serializable, read only", ReadOnly: true}}},
		{"BEGIN WORK READ WRITE", []want{{Kind: Begin, Value: "READ WRITE"}}},
		{"START TRANSACTION READ ONLY", []want{{Kind: Begin, Value: "READ ONLY", ReadOnly: true}}},
		{"START", []want{{Kind: Other}}},
		{"COMMIT", []want{{Kind: Commit}}},
		{"end transaction", []want{{Kind: Commit}}},
		{"COMMIT AND CHAIN", []want{{Kind: Commit}}},
		{"COMMIT PREPARED 'gid'", []want{{Kind: Other}}},
		{"ROLLBACK", []want{{Kind: Rollback}}},
		{"ABORT", []want{{Kind: Rollback}}},
		{"ROLLBACK PREPARED 'x'", []want{{Kind: Other}}},
		{"ROLLBACK TO SAVEPOINT s1", []want{{Kind: Savepoint, Name: "s1"}}},
		{"rollback work to S2", []want{{Kind: Savepoint, Name: "s2"}}},
		{"SAVEPOINT \"My SP\"", []want{{Kind: Savepoint, Name: "My SP"}}},
		{"RELEASE SAVEPOINT a", []want{{Kind: Savepoint, Name: "a"}}},
		{"release b", []want{{Kind: Savepoint, Name: "b"}}},
		{"PREPARE TRANSACTION 'gid'", []want{{Kind: Other}}},

		// SET and friends.
		{"SET search_path TO a, b", []want{{Kind: Set, Name: "search_path", Value: "a, b"}}},
		{"set Search_Path = \"My Schema\", public", []want{{Kind: Set, Name: "search_path", Value: "\"My Schema\", public"}}},
		{"SET SESSION work_mem = '64MB'", []want{{Kind: Set, Name: "work_mem", Value: "'64MB'"}}},
		{"SET TIME ZONE 'UTC'", []want{{Kind: Set, Name: "timezone", Value: "'UTC'"}}},
		{"SET timezone TO 'Europe/Paris'", []want{{Kind: Set, Name: "timezone", Value: "'Europe/Paris'"}}},
		{"SET TIME ZONE LOCAL", []want{{Kind: Reset, Name: "timezone"}}},
		{"SET statement_timeout TO DEFAULT", []want{{Kind: Reset, Name: "statement_timeout"}}},
		{"SET myapp.user_id = 42", []want{{Kind: Set, Name: "myapp.user_id", Value: "42"}}},
		{"SET \"MyApp\".x = 'y'", []want{{Kind: Set, Name: "MyApp.x", Value: "'y'"}}},
		{"SET LOCAL statement_timeout = 5", []want{{Kind: SetLocal, Name: "statement_timeout", Value: "5"}}},
		{"set local time zone 'UTC'", []want{{Kind: SetLocal, Name: "timezone", Value: "'UTC'"}}},
		{"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", []want{{Kind: SetLocal, Name: "transaction", Value: "ISOLATION LEVEL REPEATABLE READ, READ ONLY", ReadOnly: true}}},
		{"SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", []want{{Kind: SetLocal, Name: "transaction"}}},
		{"SET CONSTRAINTS ALL DEFERRED", []want{{Kind: SetLocal, Name: "constraints", Value: "ALL DEFERRED"}}},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", []want{{Kind: Set, Name: "session_characteristics", Value: "ISOLATION LEVEL SERIALIZABLE"}}},
		{"SET SESSION AUTHORIZATION alice", []want{{Kind: Set, Name: "session_authorization", Value: "alice"}}},
		{"SET SESSION AUTHORIZATION DEFAULT", []want{{Kind: Reset, Name: "session_authorization"}}},
		{"SET ROLE admin", []want{{Kind: Set, Name: "role", Value: "admin"}}},
		{"SET ROLE NONE", []want{{Kind: Reset, Name: "role"}}},
		{"SET LOCAL ROLE admin", []want{{Kind: SetLocal, Name: "role", Value: "admin"}}},
		{"SET NAMES 'UTF8'", []want{{Kind: Set, Name: "client_encoding", Value: "'UTF8'"}}},
		{"SET SCHEMA 'app'", []want{{Kind: Set, Name: "search_path", Value: "'app'"}}},
		{"SET XML OPTION DOCUMENT", []want{{Kind: Set, Name: "xmloption", Value: "DOCUMENT"}}},
		{"SET work_mem FROM CURRENT", []want{{Kind: Other}}},
		{"SET application_name = 'a;b'; SELECT 1", []want{{Kind: Set, Name: "application_name", Value: "'a;b'"}, {Kind: Other}}},
		{"SET search_path = a -- comment", []want{{Kind: Set, Name: "search_path", Value: "a", Text: "SET search_path = a"}}},
		{"RESET search_path", []want{{Kind: Reset, Name: "search_path"}}},
		{"RESET ALL", []want{{Kind: ResetAll}}},
		{"reset time zone", []want{{Kind: Reset, Name: "timezone"}}},
		{"RESET SESSION AUTHORIZATION", []want{{Kind: Reset, Name: "session_authorization"}}},
		{"RESET ROLE", []want{{Kind: Reset, Name: "role"}}},
		{"RESET myapp.User_Id", []want{{Kind: Reset, Name: "myapp.user_id"}}},
		{"DISCARD ALL", []want{{Kind: Discard, Name: "all"}}},
		{"discard Temporary", []want{{Kind: Discard, Name: "temp"}}},
		{"DISCARD PLANS", []want{{Kind: Discard, Name: "plans"}}},
		{"DISCARD SEQUENCES", []want{{Kind: Discard, Name: "sequences"}}},

		// set_config.
		{"SELECT set_config('search_path', '', false)", []want{{Kind: SetConfig, Name: "search_path", Value: ""}}},
		{"SELECT pg_catalog.set_config('Search_Path', 'a, b', false);", []want{{Kind: SetConfig, Name: "search_path", Value: "a, b"}}},
		{"select SET_CONFIG('app.x', 'it''s', 'off')", []want{{Kind: SetConfig, Name: "app.x", Value: "it's"}}},
		{"SELECT set_config('app.x', $$v$$, false)", []want{{Kind: SetConfig, Name: "app.x", Value: "v"}}},
		{"SELECT set_config('statement_timeout', '5s', true)", []want{{Kind: SetLocal, Name: "statement_timeout", Value: "5s"}}},
		{"SELECT set_config('a.b', $1, false)", []want{{Kind: SetConfigDynamic}}},
		{"SELECT set_config('a.b', 'x', $1)", []want{{Kind: SetConfigDynamic}}},
		{"SELECT set_config('a.b', 'x', false), set_config('a.c', 'y', false)", []want{{Kind: SetConfigDynamic}}},
		{"SELECT set_config(name, 'x', false) FROM t", []want{{Kind: SetConfigDynamic}}},

		// Prepared statements.
		{"PREPARE q1 AS SELECT $1", []want{{Kind: Prepare, Name: "q1", Body: "SELECT $1"}}},
		{"prepare Q2 (int, text) as\n  insert into t values ($1, $2)", []want{{Kind: Prepare, Name: "q2", Body: "insert into t values ($1, $2)"}}},
		{"PREPARE \"Q3\"(numeric(10,2)) AS SELECT $1", []want{{Kind: Prepare, Name: "Q3", Body: "SELECT $1"}}},
		{"PREPARE transaction AS SELECT 1", []want{{Kind: Prepare, Name: "transaction", Body: "SELECT 1"}}},
		{"EXECUTE q1(1)", []want{{Kind: Execute, Name: "q1"}}},
		{"execute Q2 ( 1, 'a' )", []want{{Kind: Execute, Name: "q2"}}},
		{"DEALLOCATE q1", []want{{Kind: Deallocate, Name: "q1"}}},
		{"DEALLOCATE PREPARE q1", []want{{Kind: Deallocate, Name: "q1"}}},
		{"DEALLOCATE prepare", []want{{Kind: Deallocate, Name: "prepare"}}},
		{"DEALLOCATE ALL", []want{{Kind: DeallocateAll}}},
		{"deallocate prepare all", []want{{Kind: DeallocateAll}}},

		// LISTEN.
		{"LISTEN Chan", []want{{Kind: Listen, Name: "chan"}}},
		{"LISTEN \"Chan\"", []want{{Kind: Listen, Name: "Chan"}}},
		{"UNLISTEN chan", []want{{Kind: Unlisten, Name: "chan"}}},
		{"UNLISTEN *", []want{{Kind: UnlistenAll}}},
		{"NOTIFY chan, 'x'", []want{{Kind: Other}}},

		// Temporary objects.
		{"CREATE TEMP TABLE t (a int)", []want{{Kind: CreateTemp}}},
		{"create temporary table t as select 1", []want{{Kind: CreateTemp}}},
		{"CREATE GLOBAL TEMPORARY TABLE t (a int)", []want{{Kind: CreateTemp}}},
		{"CREATE LOCAL TEMP SEQUENCE s", []want{{Kind: CreateTemp}}},
		{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", []want{{Kind: CreateTemp}}},
		{"CREATE TABLE pg_temp.t (a int)", []want{{Kind: CreateTemp}}},
		{"CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql", []want{{Kind: CreateTemp}}},
		{"CREATE TABLE t (a int)", []want{{Kind: Other}}},
		{"CREATE TABLE temp (a int)", []want{{Kind: Other}}},
		{"CREATE UNLOGGED TABLE t (a int)", []want{{Kind: Other}}},
		{"SELECT * INTO TEMP t FROM x", []want{{Kind: CreateTemp}}},
		{"SELECT a INTO LOCAL TEMPORARY TABLE t FROM x", []want{{Kind: CreateTemp}}},
		{"WITH c AS (SELECT 1) SELECT * INTO TEMP t FROM c", []want{{Kind: CreateTemp}}},
		{"SELECT * INTO t FROM x", []want{{Kind: Other}}},
		{"WITH c AS (SELECT 1) INSERT INTO temp SELECT * FROM c", []want{{Kind: Other}}},

		// Cursors.
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", []want{{Kind: DeclareHold, Name: "c"}}},
		{"declare C no scroll cursor with hold for select 1", []want{{Kind: DeclareHold, Name: "c"}}},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", []want{{Kind: DeclareCursor, Name: "c"}}},
		{"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", []want{{Kind: DeclareCursor, Name: "c"}}},
		{"CLOSE c", []want{{Kind: CloseCursor, Name: "c"}}},
		{"CLOSE ALL", []want{{Kind: CloseCursor, Name: ""}}},
		{"FETCH 10 FROM c", []want{{Kind: Other}}},

		// Advisory locks.
		{"SELECT pg_advisory_lock(1)", []want{{Kind: AdvisoryLock}}},
		{"SELECT PG_TRY_ADVISORY_LOCK(1, 2)", []want{{Kind: AdvisoryLock}}},
		{"select pg_catalog.pg_advisory_lock_shared(hashtext('x'))", []want{{Kind: AdvisoryLock}}},
		{"SELECT pg_advisory_xact_lock(1)", []want{{Kind: Other}}},
		{"SELECT pg_try_advisory_xact_lock_shared(1)", []want{{Kind: Other}}},
		{"SELECT pg_advisory_unlock(1)", []want{{Kind: AdvisoryUnlock}}},
		{"SELECT pg_advisory_unlock_all()", []want{{Kind: AdvisoryUnlock}}},
		{"SELECT pg_advisory_lock(1), pg_advisory_unlock(2)", []want{{Kind: AdvisoryLock}}},
		{"SELECT 'pg_advisory_lock(1)'", []want{{Kind: Other}}},
		{"EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", []want{{Kind: AdvisoryLock}}},
		{"DO $$BEGIN PERFORM pg_advisory_lock(7); END$$", []want{{Kind: AdvisoryLock}}},
		{"DO $$BEGIN PERFORM pg_advisory_xact_lock(7); END$$", []want{{Kind: Other}}},

		// COPY and SHOW.
		{"COPY t FROM STDIN", []want{{Kind: Copy, CopyFrom: true}}},
		{"COPY t (a, b) FROM STDIN WITH (FORMAT csv)", []want{{Kind: Copy, CopyFrom: true}}},
		{"COPY t TO STDOUT", []want{{Kind: Copy}}},
		{"copy (select a from t where b = 'from') to stdout", []want{{Kind: Copy}}},
		{"COPY \"from\" TO STDOUT", []want{{Kind: Copy}}},
		{"SHOW search_path", []want{{Kind: Show, Name: "search_path"}}},
		{"SHOW ALL", []want{{Kind: Show, Name: "all"}}},

		// Multiple statements.
		{"BEGIN; SET LOCAL a.b = 1; SELECT 1; COMMIT", []want{{Kind: Begin}, {Kind: SetLocal, Name: "a.b", Value: "1"}, {Kind: Other}, {Kind: Commit}}},
		{"SET x.y = $$a;b$$; DISCARD ALL", []want{{Kind: Set, Name: "x.y", Value: "$$a;b$$"}, {Kind: Discard, Name: "all"}}},
	}
	for _, tc := range cases {
		got := Classify(tc.sql)
		if len(got) != len(tc.want) {
			t.Errorf("Classify(%q): %d statements, want %d: %+v", tc.sql, len(got), len(tc.want), got)
			continue
		}
		for i, w := range tc.want {
			g := got[i]
			gw := want{Kind: g.Kind, Name: g.Name, Value: g.Value, Body: g.Body, CopyFrom: g.CopyFrom, ReadOnly: g.ReadOnly, Text: w.Text}
			if w.Text != "" && g.Text != w.Text {
				t.Errorf("Classify(%q)[%d].Text = %q, want %q", tc.sql, i, g.Text, w.Text)
			}
			if w.Kind == SetLocal && w.Value == "" && g.Name == "transaction" {
				gw.Value = "" // SET TRANSACTION SNAPSHOT: value not checked
			}
			if gw != w {
				t.Errorf("Classify(%q)[%d]\n got %+v (%v)\nwant %+v (%v)", tc.sql, i, gw, gw.Kind, w, w.Kind)
			}
		}
		if len(got) == 1 {
			one := ClassifyOne(tc.sql)
			if one != got[0] {
				t.Errorf("ClassifyOne(%q) = %+v, Classify gave %+v", tc.sql, one, got[0])
			}
		}
	}
}

func TestRewritePreparedName(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"PREPARE q1 AS SELECT $1", "PREPARE sp_1 AS SELECT $1"},
		{"/* hint */ prepare \"Q\" (int) as select $1", "/* hint */ prepare sp_1 (int) as select $1"},
		{"EXECUTE q1(1, 'q1')", "EXECUTE sp_1(1, 'q1')"},
		{"DEALLOCATE PREPARE q1", "DEALLOCATE PREPARE sp_1"},
		{"DEALLOCATE q1", "DEALLOCATE sp_1"},
		{"DEALLOCATE prepare", "DEALLOCATE sp_1"},
		{"DEALLOCATE ALL", "DEALLOCATE ALL"},
		{"SELECT 1", "SELECT 1"},
	}
	for _, tc := range cases {
		st := ClassifyOne(tc.sql)
		if got := RewritePreparedName(st, "sp_1"); got != tc.want {
			t.Errorf("RewritePreparedName(%q) = %q, want %q", tc.sql, got, tc.want)
		}
	}
	// The same statement under different client names rewrites to the
	// same text (the pooler interns by it).
	a := RewritePreparedName(ClassifyOne("PREPARE a AS SELECT 1"), "$")
	b := RewritePreparedName(ClassifyOne("PREPARE bb AS SELECT 1"), "$")
	if a != b {
		t.Errorf("%q != %q", a, b)
	}
}

func TestKindString(t *testing.T) {
	if Savepoint.String() != "Savepoint" || SetConfigDynamic.String() != "SetConfigDynamic" || Kind(200).String() != "Kind(200)" {
		t.Fatal(Savepoint.String(), SetConfigDynamic.String(), Kind(200).String())
	}
}

// checkSplit verifies the invariants of Split on any input: pieces appear
// in order as non-overlapping substrings; each is trimmed and holds no
// split point; what lies between them holds no statement.
func checkSplit(t *testing.T, sql string) {
	pieces := Split(sql)
	pos := 0
	for _, p := range pieces {
		if p == "" || strings.TrimLeft(p, " \t\n\r\f\v") != p {
			t.Fatalf("Split(%q): empty or untrimmed piece %q", sql, p)
		}
		i := strings.Index(sql[pos:], p)
		if i < 0 {
			t.Fatalf("Split(%q): piece %q not found after offset %d", sql, p, pos)
		}
		// Only an unterminated quote or comment (which runs to the end of
		// the input) may end in white space.
		if strings.TrimRight(p, " \t\n\r\f\v") != p && pos+i+len(p) != len(sql) {
			t.Fatalf("Split(%q): untrimmed piece %q", sql, p)
		}
		if gap := sql[pos : pos+i]; len(Split(gap)) != 0 {
			t.Fatalf("Split(%q): gap %q holds statements %q", sql, gap, Split(gap))
		}
		if again := Split(p); len(again) != 1 || again[0] != p {
			t.Fatalf("Split(%q): piece %q splits again into %q", sql, p, again)
		}
		pos += i + len(p)
	}
	if rest := sql[pos:]; len(Split(rest)) != 0 {
		t.Fatalf("Split(%q): tail %q holds statements", sql, rest)
	}
	stmts := Classify(sql)
	if len(stmts) != len(pieces) {
		t.Fatalf("Classify(%q): %d statements, Split %d", sql, len(stmts), len(pieces))
	}
	for i, st := range stmts {
		if st.Text != pieces[i] {
			t.Fatalf("Classify(%q)[%d].Text = %q, Split gave %q", sql, i, st.Text, pieces[i])
		}
		RewritePreparedName(st, "x")
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		"SELECT 1; SELECT 2",
		"SELECT ';' -- ;\n; /* ; /* ; */ */ SELECT $a$;$a$",
		`SELECT E'\';' ; SELECT "a"";"`,
		"SET search_path TO a, b; PREPARE p(int) AS SELECT $1; EXECUTE p(1)",
		"CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END; SELECT 2",
		"SELECT set_config('a', 'b', false); SELECT pg_advisory_lock(1)",
		"$", "$$", "'", "\"", "/*", "--", "E'\\", "U&\"", "$a", "$1$", "1e-", "((;))", ")))(;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		checkSplit(t, sql)
	})
}

func BenchmarkClassify(b *testing.B) {
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 123"
	b.ReportAllocs()
	for b.Loop() {
		if st := Classify(q); len(st) != 1 || st[0].Kind != Other {
			b.Fatal(st)
		}
	}
}

func BenchmarkClassifyOne(b *testing.B) {
	const q = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2"
	b.ReportAllocs()
	for b.Loop() {
		if st := ClassifyOne(q); st.Kind != Other {
			b.Fatal(st)
		}
	}
}

func BenchmarkClassifySet(b *testing.B) {
	const q = "SET search_path TO app, public"
	b.ReportAllocs()
	for b.Loop() {
		if st := Classify(q); st[0].Kind != Set {
			b.Fatal(st)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	const q = "SELECT abalance FROM pgbench_accounts WHERE aid = 123"
	if n := testing.AllocsPerRun(100, func() { Classify(q) }); n > 1 {
		t.Errorf("Classify allocates %v times, want <= 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { ClassifyOne(q) }); n > 0 {
		t.Errorf("ClassifyOne allocates %v times, want 0", n)
	}
}
