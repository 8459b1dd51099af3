package planner

import "testing"

func TestCheckParameterized(t *testing.T) {
	ok := []struct {
		sql  string
		n    int
		rows bool
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = $1", 1, true},
		{"select $1, -$2, $3::text from t where a in ($4, $5) limit $6 offset $7", 7, true},
		{"UPDATE t SET a = a + $1 WHERE id = $2", 2, false},
		{"UPDATE t SET a = a + $1 WHERE id = $2 RETURNING a", 2, true},
		{"DELETE FROM t WHERE id = $1 RETURNING *", 1, true},
		{"DELETE FROM t WHERE id = $1", 1, false},
		{"INSERT INTO t VALUES ($1, 'x') ON CONFLICT (id) DO UPDATE SET a = $2", 2, false},
		{"INSERT INTO t VALUES ($1) RETURNING id", 1, true},
		{"WITH d AS (DELETE FROM t WHERE id = $1 RETURNING *) INSERT INTO u SELECT * FROM d", 1, false},
		{"select x from t order by x + $1, y", 1, true},
		{"select count(*) from t group by a having count(*) > $1", 1, true},
		{"select lag(x, $1) over (partition by y order by z rows $2 preceding) from t", 2, true},
		{"select * from (select a from t where b = $1) s join u on u.a = s.a where u.c < $2", 2, true},
		{"select now()", 0, true},
	}
	for _, c := range ok {
		rows, err := CheckParameterized(c.sql, c.n)
		if err != nil || rows != c.rows {
			t.Errorf("%q: returnsRows %v, %v; want %v, accepted", c.sql, rows, err, c.rows)
		}
	}
	refused := []struct {
		sql string
		n   int
	}{
		{"select a from t order by $1", 1},
		{"select a from t order by a, $1 desc", 1},
		{"select * from (select a from t order by $1) s", 1},
		{"select a, count(*) from t group by $1", 1},
		{"select a, b from t group by rollup ($1, b)", 1},
		{"select a, b from t group by grouping sets (($1, b), ())", 1},
		{"select distinct on ($1) a from t", 1},
		{"select string_agg(a, ',' order by $1) from t", 1},
		{"select x::numeric($1, $2) from t", 2},
		{"select cast(x as numeric($1, $2)) from t", 2},
		{"select * from f() as r(a numeric($1))", 1},
		{"insert into t values ($1) on conflict (id) where id > $2 do nothing", 2},
		{"select $1 into newtable", 1},
		{"select $1; select $2", 2},
		{"create table t (a int default $1)", 1},
		{"set work_mem = $1", 1},
		{"select varchar($1) 'x'", 1},
		{"select a from t where b = $1", 2}, // count mismatch
		{"selec $1", 1},
	}
	for _, c := range refused {
		if _, err := CheckParameterized(c.sql, c.n); err == nil {
			t.Errorf("%q: accepted, want refused", c.sql)
		}
	}
}
