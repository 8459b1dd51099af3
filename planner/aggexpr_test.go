package planner

import (
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// TestAggExprDuringMove: the probe columns of expressions over aggregates
// survive the owned-rows rewrite a shard gets while a move has rows on it.
func TestAggExprDuringMove(t *testing.T) {
	snap, _ := movingFixture(t)
	p := New(fixtureOptions())
	op := mustPlan(t, p, snap, "SELECT title, round(avg(id), 1), stddev(id) FROM posts GROUP BY title HAVING count(*) BETWEEN 1 AND 9", Params{})
	var sc *plan.Scatter
	var ev *plan.Evaluate
	for o := op; o != nil; {
		switch x := o.(type) {
		case *plan.Scatter:
			sc = x
		case *plan.Evaluate:
			ev = x
		}
		if in := o.Inputs(); len(in) == 1 {
			o = in[0]
		} else {
			o = nil
		}
	}
	if sc == nil || ev == nil {
		t.Fatalf("want Evaluate over a Scatter:\n%s", plan.String(op))
	}
	got := sc.ShardSQL["s2"]
	for _, w := range []string{"(SELECT round(avg(id), 1) WHERE false HAVING false)", "sum(id::numeric * id::numeric)", "(SELECT * FROM posts WHERE"} {
		if !strings.Contains(got, w) {
			t.Errorf("s2 runs %s\nwant it to contain %s", got, w)
		}
	}
	if len(ev.Columns) != 3 || len(ev.ExactInputs) != 1 {
		t.Errorf("Evaluate %+v: want 3 columns (two selected, HAVING) and one exact input", ev)
	}
}

// TestPgColumnName checks the names PostgreSQL gives unaliased
// expressions (FigureColname) for the shapes a case probe needs.
func TestPgColumnName(t *testing.T) {
	for sql, want := range map[string]string{
		"SELECT sum(x) * (y % 3)":                    "?column?",
		"SELECT round(avg(x), 2)":                    "round",
		"SELECT (avg(x) * y)::numeric(10,2)":         "numeric",
		"SELECT avg(x)::numeric(10,2)":               "avg",
		"SELECT CASE WHEN y > 1 THEN count(*) END":   "case",
		"SELECT coalesce(sum(x), 0)":                 "coalesce",
		"SELECT nullif(count(*), y)":                 "nullif",
		"SELECT greatest(max(x), y)":                 "greatest",
		"SELECT CASE WHEN true THEN 1 ELSE y END":    "y",
		"SELECT (CASE WHEN true THEN 1 END)::bigint": "int8",
	} {
		tree, err := pg_query.Parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		n := tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val
		if got := pgColumnName(n); got != want {
			t.Errorf("%s: %q, want %q", sql, got, want)
		}
	}
}
