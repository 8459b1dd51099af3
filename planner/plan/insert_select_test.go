package plan

import "testing"

// TestInsertSelectBatchSQL: the batch INSERT keeps the statement's own
// parameters first and numbers the rows' values after them; batches shrink
// so a statement never has more than 65535 parameters.
func TestInsertSelectBatchSQL(t *testing.T) {
	o := &InsertSelect{Head: "INSERT INTO posts (author_id, title) ", Tail: " ON CONFLICT (author_id, id) DO UPDATE SET title = $1 RETURNING id", InsertParams: []int{2}}
	got := o.BatchSQL(2, 2)
	want := "INSERT INTO posts (author_id, title) VALUES ($2, $3), ($4, $5) ON CONFLICT (author_id, id) DO UPDATE SET title = $1 RETURNING id"
	if got != want {
		t.Errorf("BatchSQL(2, 2):\n got %s\nwant %s", got, want)
	}
	if got, want := o.EmptySQL(2), "INSERT INTO posts (author_id, title) SELECT NULL, NULL WHERE false ON CONFLICT (author_id, id) DO UPDATE SET title = $1 RETURNING id"; got != want {
		t.Errorf("EmptySQL(2):\n got %s\nwant %s", got, want)
	}
	for _, c := range []struct{ columns, rows int }{{0, InsertSelectBatchRows}, {3, InsertSelectBatchRows}, {65, InsertSelectBatchRows}, {100, 655}, {40000, 1}, {70000, 1}} {
		if got := o.BatchRows(c.columns); got != c.rows {
			t.Errorf("BatchRows(%d) = %d, want %d", c.columns, got, c.rows)
		}
		if n := o.BatchRows(c.columns); c.columns <= MaxBindParams && n*c.columns+len(o.InsertParams) > MaxBindParams {
			t.Errorf("BatchRows(%d) = %d: %d parameters", c.columns, n, n*c.columns+len(o.InsertParams))
		}
	}
}
