package plan

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func strs(vs ...any) []*string {
	out := make([]*string, len(vs))
	for i, v := range vs {
		if s, ok := v.(string); ok {
			out[i] = &s
		}
	}
	return out
}

// TestPullOutOuterSQL: the subqueries' values become typed parameters
// after the statement's own (arrays in text form that read back as the
// same values: quotes, backslashes, NULLs), with PostgreSQL's error for
// a scalar subquery with several rows.
func TestPullOutOuterSQL(t *testing.T) {
	o := &PullOut{
		Subqueries:  []*PulledSubquery{{SQL: "SELECT name FROM users"}, {SQL: "SELECT avg(karma) FROM users", Scalar: true}},
		Outer:       []string{"SELECT id FROM users WHERE name ", " AND karma > ", " LIMIT $1"},
		OuterParams: []int{2},
	}
	got, pp, err := o.OuterSQL([]PulledRows{
		{TypeOID: 25, Values: strs(`O'Brien`, `back\slash "q"`, nil, "plain")},
		{TypeOID: 1700, Values: strs("12.50")},
	})
	want := `SELECT id FROM users WHERE name = ANY ($2::text[]) AND karma > $3::numeric LIMIT $1`
	if err != nil || got != want {
		t.Fatalf("OuterSQL:\n got %s (%v)\nwant %s", got, err, want)
	}
	if v := fmt.Sprintf("%q %v", pp.Values, pp.OIDs); v != `["{\"O'Brien\",\"back\\\\slash \\\"q\\\"\",NULL,\"plain\"}" "12.50"] [0 1700]` {
		t.Errorf("parameters: %s", v)
	}
	_, pp, _ = o.OuterSQL([]PulledRows{{TypeOID: 20}, {TypeOID: 1700}})
	if string(pp.Values[0]) != "{}" || pp.Values[1] != nil {
		t.Errorf("empty results: %q, want {} and NULL", pp.Values)
	}
	_, _, err = o.OuterSQL([]PulledRows{{TypeOID: 25}, {TypeOID: 1700, Values: strs("1", "2")}})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "21000" {
		t.Errorf("scalar with two rows: %v, want 21000", err)
	}
	_, _, err = o.OuterSQL([]PulledRows{{TypeOID: 16385, Values: strs("x")}, {TypeOID: 1700}})
	var ue *Unsupported
	if !errors.As(err, &ue) {
		t.Errorf("user-defined type: %v, want 0A000", err)
	}
	_, _, err = o.OuterSQL([]PulledRows{{TypeOID: 25, Values: make([]*string, MaxPulledRows+1)}, {TypeOID: 1700}})
	if !errors.As(err, &ue) || !strings.Contains(ue.Message, "too many rows") {
		t.Errorf("%d values: %v, want 0A000 too many rows", MaxPulledRows+1, err)
	}
}
