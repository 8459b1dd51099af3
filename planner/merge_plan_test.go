package planner

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// TestMergeSQLRoundTrip: every rewritten per-shard statement in the golden
// cases parses, and deparsing it again gives the same text (the rewrite is
// stable, so shards can cache it as a prepared statement).
func TestMergeSQLRoundTrip(t *testing.T) {
	p := New(fixtureOptions())
	snap := fixture(t)
	n := 0
	for _, cases := range loadCases(t) {
		for i := range cases {
			c := &cases[i]
			a, err := p.Analyze(c.Query)
			if err != nil {
				continue
			}
			op, err := p.Plan(snap, a, c.Params.params(t))
			if err != nil {
				continue
			}
			if _, ok := op.(*plan.Scatter); ok || len(op.Inputs()) == 0 {
				continue
			}
			for _, l := range plan.Leaves(op) {
				sc, ok := l.(*plan.Scatter)
				if !ok {
					continue
				}
				tree, err := pg_query.Parse(sc.SQL)
				if err != nil {
					t.Errorf("%s: rewritten SQL %q does not parse: %v", c.Query, sc.SQL, err)
					continue
				}
				again, err := pg_query.Deparse(tree)
				if err != nil || again != sc.SQL {
					t.Errorf("%s: %q deparses to %q (%v)", c.Query, sc.SQL, again, err)
				}
				n++
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d rewritten statements checked", n)
	}
}

func TestLimitParams(t *testing.T) {
	p := New(fixtureOptions())
	snap := fixture(t)
	a, err := p.Analyze("SELECT id FROM users ORDER BY id LIMIT $1 OFFSET $2")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		vals    [][]byte
		formats []int16
		count   int64
		offset  int64
		code    string
	}{
		{[][]byte{[]byte("5"), []byte("2")}, nil, 5, 2, ""},
		{[][]byte{nil, []byte("2")}, nil, -1, 2, ""},
		{[][]byte{{0, 0, 0, 7}, {0, 0, 0, 0, 0, 0, 0, 1}}, []int16{1}, 7, 1, ""},
		{[][]byte{[]byte("-1"), []byte("0")}, nil, 0, 0, "2201W"},
		{[][]byte{[]byte("1"), []byte("-3")}, nil, 0, 0, "2201X"},
		{[][]byte{[]byte("1")}, nil, 0, 0, "08P01"},
	}
	for _, c := range cases {
		op, err := p.Plan(snap, a, Params{Values: c.vals, Formats: c.formats})
		if c.code != "" {
			var st interface{ SQLState() string }
			if err == nil || !asState(err, &st) || st.SQLState() != c.code {
				t.Errorf("%q: got %v, want %s", c.vals, err, c.code)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		l := op.(*plan.Limit)
		if l.Count != c.count || l.Offset != c.offset {
			t.Errorf("%q: count %d offset %d, want %d %d", c.vals, l.Count, l.Offset, c.count, c.offset)
		}
	}
}

func asState(err error, st *interface{ SQLState() string }) bool {
	s, ok := err.(interface{ SQLState() string })
	*st = s
	return ok
}
