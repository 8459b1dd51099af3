package plan

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func vals(vs ...any) [][]byte {
	out := make([][]byte, len(vs))
	for i, v := range vs {
		if s, ok := v.(string); ok {
			out[i] = []byte(s)
		}
	}
	return out
}

// TestPullOutOuterSQL: the subqueries' values become typed binary
// parameters after the statement's own (a list as a one-dimensional
// array of the column's type, NULLs kept), with PostgreSQL's error for a
// scalar subquery with several rows.
func TestPullOutOuterSQL(t *testing.T) {
	o := &PullOut{
		Subqueries:  []*PulledSubquery{{SQL: "SELECT name FROM users"}, {SQL: "SELECT avg(karma) FROM users", Scalar: true}},
		Outer:       []string{"SELECT id FROM users WHERE name ", " AND karma > ", " LIMIT $1"},
		OuterParams: []int{2},
	}
	karma := "\x00\x02\x00\x00\x00\x00\x00\x02\x00\x0c\x13\x88" // 12.5000 in numeric_send form
	got, pp, err := o.OuterSQL([]PulledRows{
		{TypeOID: 25, Values: vals(`O'Brien`, nil, "x")},
		{TypeOID: 1700, Values: vals(karma)},
	})
	want := `SELECT id FROM users WHERE name = ANY ($2::text[]) AND karma > $3::numeric LIMIT $1`
	if err != nil || got != want {
		t.Fatalf("OuterSQL:\n got %s (%v)\nwant %s", got, err, want)
	}
	// ndim 1, has NULL, element type 25, 3 elements from 1; then each
	// element's length (-1: NULL) and bytes.
	wantArray := "00000001" + "00000001" + "00000019" + "00000003" + "00000001" +
		"00000007" + hex.EncodeToString([]byte("O'Brien")) + "ffffffff" + "00000001" + hex.EncodeToString([]byte("x"))
	if a := hex.EncodeToString(pp.Values[0]); a != wantArray || string(pp.Values[1]) != karma || pp.OIDs[0] != 0 || pp.OIDs[1] != 1700 {
		t.Errorf("parameters: %s %x %v\nwant array %s", a, pp.Values[1], pp.OIDs, wantArray)
	}
	_, pp, _ = o.OuterSQL([]PulledRows{{TypeOID: 20}, {TypeOID: 1700}})
	if hex.EncodeToString(pp.Values[0]) != "000000000000000000000014" || pp.Values[1] != nil {
		t.Errorf("empty results: %x, want an empty bigint array and NULL", pp.Values)
	}
	_, _, err = o.OuterSQL([]PulledRows{{TypeOID: 25}, {TypeOID: 1700, Values: vals("1", "2")}})
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "21000" {
		t.Errorf("scalar with two rows: %v, want 21000", err)
	}
	_, _, err = o.OuterSQL([]PulledRows{{TypeOID: 16385, Values: vals("x")}, {TypeOID: 1700}})
	var ue *Unsupported
	if !errors.As(err, &ue) {
		t.Errorf("user-defined type: %v, want 0A000", err)
	}
	_, _, err = o.OuterSQL([]PulledRows{{TypeOID: 25, Values: make([][]byte, MaxPulledRows+1)}, {TypeOID: 1700}})
	if !errors.As(err, &ue) || !strings.Contains(ue.Message, "too many rows") {
		t.Errorf("%d values: %v, want 0A000 too many rows", MaxPulledRows+1, err)
	}
}

// TestPullOutRelationSlot: a pulled-out table becomes unnest of one typed
// array per column, named like the table's range with its columns' names
// (quoted), its arrays numbered after the statement's own parameters;
// unknown column types and too many rows are refused with 0A000.
func TestPullOutRelationSlot(t *testing.T) {
	o := &PullOut{
		Subqueries:  []*PulledSubquery{{SQL: "SELECT f.* FROM follows f WHERE f.follower_id = $1", Relation: "f"}},
		Outer:       []string{"SELECT p.id FROM posts p JOIN ", " ON f.followee_id = p.author_id WHERE p.like_count > $1"},
		OuterParams: []int{1},
	}
	rows := PulledRows{Columns: []PulledColumn{
		{Name: "follower_id", TypeOID: 20, Values: vals("\x00\x00\x00\x00\x00\x00\x00\x01", "\x00\x00\x00\x00\x00\x00\x00\x01")},
		{Name: `Odd "name"`, TypeOID: 25, Values: vals("a", nil)},
	}}
	got, pp, err := o.OuterSQL([]PulledRows{rows})
	want := `SELECT p.id FROM posts p JOIN unnest($2::bigint[], $3::text[]) AS "f"("follower_id", "Odd ""name""") ON f.followee_id = p.author_id WHERE p.like_count > $1`
	if err != nil || got != want {
		t.Fatalf("OuterSQL:\n got %s (%v)\nwant %s", got, err, want)
	}
	wantText := "00000001" + "00000001" + "00000019" + "00000002" + "00000001" + "00000001" + hex.EncodeToString([]byte("a")) + "ffffffff"
	if len(pp.Values) != 2 || hex.EncodeToString(pp.Values[1]) != wantText || pp.OIDs[0] != 0 || pp.OIDs[1] != 0 {
		t.Errorf("parameters: %x %v, want the text column as %s", pp.Values, pp.OIDs, wantText)
	}
	// A type modifier is put back by a cast around the unnest.
	typed := PulledRows{Columns: []PulledColumn{
		{Name: "email", TypeOID: 1043, Typmod: 84, Values: vals("a")},
		{Name: "karma", TypeOID: 1700, Typmod: 10<<16 | 2 + 4, Values: vals(nil)},
		{Name: "id", TypeOID: 20, Typmod: -1, Values: vals("\x00\x00\x00\x00\x00\x00\x00\x01")},
	}}
	got, _, err = o.OuterSQL([]PulledRows{typed})
	want = `SELECT p.id FROM posts p JOIN (SELECT "email"::character varying(80) AS "email", "karma"::numeric(10,2) AS "karma", "id" FROM unnest($2::varchar[], $3::numeric[], $4::bigint[]) AS "f"("email", "karma", "id")) AS "f" ON f.followee_id = p.author_id WHERE p.like_count > $1`
	if err != nil || got != want {
		t.Errorf("typmods:\n got %s (%v)\nwant %s", got, err, want)
	}
	// No rows: empty arrays, so the join finds nothing.
	empty := PulledRows{Columns: []PulledColumn{{Name: "follower_id", TypeOID: 20}, {Name: "x", TypeOID: 25}}}
	if _, pp, err = o.OuterSQL([]PulledRows{empty}); err != nil || hex.EncodeToString(pp.Values[0]) != "000000000000000000000014" {
		t.Errorf("no rows: %x (%v), want an empty bigint array", pp.Values, err)
	}
	var ue *Unsupported
	bad := PulledRows{Columns: []PulledColumn{{Name: "r", TypeOID: 3904, Values: vals("x")}}}
	if _, _, err = o.OuterSQL([]PulledRows{bad}); !errors.As(err, &ue) || !strings.Contains(ue.Message, "column r of f") {
		t.Errorf("int4range column: %v, want 0A000 naming the column", err)
	}
	many := PulledRows{Columns: []PulledColumn{{Name: "follower_id", TypeOID: 20, Values: make([][]byte, MaxPulledRows+1)}}}
	if _, _, err = o.OuterSQL([]PulledRows{many}); !errors.As(err, &ue) {
		t.Errorf("%d rows: %v, want 0A000", MaxPulledRows+1, err)
	}
}
