package sqlclass

import "testing"

func TestReplicaAccess(t *testing.T) {
	custom := func(n string) bool { return n == "my_report" }
	cases := map[string]Access{
		"SELECT 1": AccessRead,
		"select abalance from pgbench_accounts where aid = $1":                          AccessRead,
		"SELECT count(*), max(id) FROM t WHERE x IN (1,2) AND EXISTS (SELECT 1 FROM u)": AccessRead,
		"SELECT x::numeric(10,2), CAST(y AS varchar(20)) FROM t":                        AccessRead,
		"WITH a AS (SELECT 1) SELECT * FROM a":                                          AccessRead,
		"(SELECT 1) UNION ALL (SELECT 2)":                                               AccessRead,
		"VALUES (1), (2)":                                                               AccessRead,
		"TABLE t":                                                                       AccessRead,
		"SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t":                   AccessRead,
		"SELECT inet_server_port()":                                                     AccessRead,
		"SELECT my_report(1)":                                                           AccessRead,
		"SELECT public.my_report(1)":                                                    AccessRead,
		"SELECT 'nextval(1)', \"update\" FROM t":                                        AccessRead,
		"SELECT 1; SELECT 2":                                                            AccessRead,
		"SELECT * FROM t FOR UPDATE":                                                    AccessWrite,
		"SELECT * FROM t FOR NO KEY UPDATE":                                             AccessWrite,
		"SELECT * FROM t FOR SHARE":                                                     AccessWrite,
		"SELECT * FROM t FOR KEY SHARE":                                                 AccessWrite,
		"SELECT nextval('s')":                                                           AccessWrite,
		"SELECT setval('s', 1)":                                                         AccessWrite,
		"SELECT unknown_fn(1)":                                                          AccessWrite,
		"SELECT \"Weird\"(1)":                                                           AccessWrite,
		"SELECT * INTO t2 FROM t":                                                       AccessWrite,
		"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d":                         AccessWrite,
		"SELECT pg_advisory_lock(1)":                                                    AccessWrite,
		"SELECT set_config('a.b', '1', false)":                                          AccessWrite,
		"INSERT INTO t VALUES (1)":                                                      AccessWrite,
		"UPDATE t SET a = 1":                                                            AccessWrite,
		"CREATE TABLE t (a int)":                                                        AccessWrite,
		"SELECT 1; INSERT INTO t VALUES (1)":                                            AccessWrite,
		"BEGIN; SELECT 1":                                                               AccessWrite,
		"BEGIN READ ONLY":                                                               AccessNeutral,
		"COMMIT":                                                                        AccessNeutral,
		"SET search_path = a":                                                           AccessNeutral,
		"SHOW search_path":                                                              AccessNeutral,
		"":                                                                              AccessNeutral,
		"LISTEN x":                                                                      AccessWrite,
		"EXPLAIN ANALYZE DELETE FROM t":                                                 AccessWrite,
		"EXPLAIN SELECT * FROM t":                                                       AccessRead,
		"EXPLAIN (VERBOSE, COSTS OFF) SELECT nextval('s')":                              AccessRead,
		"EXPLAIN DELETE FROM t":                                                         AccessRead,
		"EXPLAIN (ANALYZE false) INSERT INTO t VALUES (1)":                              AccessRead,
		"EXPLAIN ANALYZE SELECT count(*) FROM t":                                        AccessRead,
		"EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t":                                    AccessRead,
		"EXPLAIN (ANALYZE on, COSTS OFF) UPDATE t SET a = 1":                            AccessWrite,
		"EXPLAIN ANALYZE VERBOSE SELECT nextval('s')":                                   AccessWrite,
		"EXPLAIN EXECUTE p(1)":                                                          AccessWrite,
		"EXPLAIN CREATE TABLE x AS SELECT 1":                                            AccessWrite,
		"COPY t TO STDOUT":                                                              AccessRead,
		"copy public.t (a, b) to stdout with (format csv, header)":                      AccessRead,
		"COPY (SELECT a FROM t WHERE b > 1) TO STDOUT":                                  AccessRead,
		"COPY (SELECT nextval('s')) TO STDOUT":                                          AccessWrite,
		"COPY (DELETE FROM t RETURNING *) TO STDOUT":                                    AccessWrite,
		"COPY t FROM STDIN":                                                             AccessWrite,
		"COPY t TO '/tmp/t.csv'":                                                        AccessWrite,
		"COPY t TO PROGRAM 'cat'":                                                       AccessWrite,
		"COPY (SELECT 1) TO STDOUT; COPY t FROM STDIN":                                  AccessWrite,
	}
	for sql, want := range cases {
		if got := ReplicaAccess(sql, custom); got != want {
			t.Errorf("%q: %s, want %s", sql, got, want)
		}
	}
}

func BenchmarkReplicaAccess(b *testing.B) {
	for range b.N {
		ReplicaAccess("SELECT abalance FROM pgbench_accounts WHERE aid = $1", nil)
	}
}
