package plan

import "testing"

func TestEvaluateBatchSQL(t *testing.T) {
	e := &Evaluate{Columns: []EvalColumn{{Column: 0, Expr: "round(v.c1, $1)"}, {Column: 2, Expr: "v.c2 * 2"}}, Args: []int{1, 3}, ParamIndexes: []int{4}}
	want := "SELECT round(v.c1, $1), v.c2 * 2 FROM (VALUES (1, $2, $3), (2, $4, $5)) AS v(n, c1, c2) ORDER BY v.n"
	if got := e.BatchSQL(2); got != want {
		t.Fatalf("BatchSQL:\n%s\nwant\n%s", got, want)
	}
	if n := e.BatchRows(); n != EvalBatchRows {
		t.Fatalf("BatchRows %d", n)
	}
	wide := &Evaluate{Args: make([]int, 200), ParamIndexes: make([]int, 35)}
	if n := wide.BatchRows(); n != 327 || n*200+35 > 65535 {
		t.Fatalf("BatchRows of 200 values per row: %d", n)
	}
}
