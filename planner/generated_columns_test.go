package planner

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// TestAllocateGeneratedColumns: a bigserial column beside the key (posts.id
// next to author_id) that an INSERT omits or sets to DEFAULT is filled from
// the allocator too, so its values are unique across shards as on one
// server; the rewritten statement re-plans to a plain Route.
func TestAllocateGeneratedColumns(t *testing.T) {
	opts := fixtureOptions()
	opts.GeneratedColumns = func(table string) []string {
		if table == "public.posts" || table == "public.users" {
			return []string{"seq"}
		}
		return nil
	}
	p := New(opts)
	snap := fixture(t)
	for _, tc := range []struct {
		sql       string
		params    []string
		count     int
		extra     int
		rewritten string
	}{
		{"INSERT INTO posts (author_id, body) VALUES ($1, $2) RETURNING seq", []string{"7", "hi"}, 0, 1,
			"INSERT INTO posts (author_id, body, seq) VALUES ($1, $2, $3) RETURNING seq"},
		{"INSERT INTO posts (author_id, seq, body) VALUES (7, DEFAULT, 'a'), (7, 5, 'b')", nil, 0, 1,
			"INSERT INTO posts (author_id, seq, body) VALUES (7, $1, 'a'), (7, 5, 'b')"},
		{"INSERT INTO users (name) VALUES ($1)", []string{"ann"}, 1, 1,
			"INSERT INTO users (name, id, seq) VALUES ($1, $2, $3)"},
	} {
		params := textParams(tc.params...)
		op := mustPlan(t, p, snap, tc.sql, params)
		ak, ok := op.(*plan.AllocateKeys)
		if !ok {
			t.Fatalf("%s: want AllocateKeys, got %s", tc.sql, plan.String(op))
		}
		if ak.Count != tc.count || len(ak.Extra) != 1 || ak.Extra[0].Column != "seq" || ak.Extra[0].Count != tc.extra || ak.SQL != tc.rewritten {
			t.Fatalf("%s: got %+v", tc.sql, ak)
		}
		var vals []string
		for i := 0; i < tc.count+tc.extra; i++ {
			vals = append(vals, "100"+string(rune('0'+i)))
		}
		op2 := mustPlan(t, p, snap, ak.SQL, AppendKeys(params, vals))
		if _, ok := op2.(*plan.Route); !ok {
			t.Fatalf("%s re-plans to %s", ak.SQL, plan.String(op2))
		}
		if !strings.Contains(strings.Join(plan.Lines(op), "\n"), "seq×") {
			t.Errorf("EXPLAIN does not show the extra column:\n%s", strings.Join(plan.Lines(op), "\n"))
		}
	}
}
