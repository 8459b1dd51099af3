package plan

import "testing"

// TestKeyUpdateStatements: the internal statements a KeyUpdate runs.
func TestKeyUpdateStatements(t *testing.T) {
	o := &KeyUpdate{TableSQL: `"public"."users"`}
	if got, want := o.InsertSQL([]string{"id", "Name"}, 2, true),
		`INSERT INTO "public"."users" ("id", "Name") OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4) RETURNING ctid`; got != want {
		t.Errorf("InsertSQL:\n got %s\nwant %s", got, want)
	}
	if got, want := o.DeleteSQL(), `DELETE FROM ONLY "public"."users" WHERE ctid = ANY($1::pg_catalog.tid[])`; got != want {
		t.Errorf("DeleteSQL: %s", got)
	}
	if got, want := TidArray([]string{"(0,1)", "(12,3)"}), `{"(0,1)","(12,3)"}`; got != want {
		t.Errorf("TidArray: %s", got)
	}
	if got := TidArray(nil); got != "{}" {
		t.Errorf("TidArray(nil): %s", got)
	}
	for _, tc := range [][2]int{{0, 1000}, {1, 1000}, {16, 1000}, {100, 655}, {70000, 1}} {
		if got := InsertBatchRows(tc[0]); got != tc[1] {
			t.Errorf("InsertBatchRows(%d) = %d, want %d", tc[0], got, tc[1])
		}
	}
	if got := QuoteIdent(`a"b`); got != `"a""b"` {
		t.Errorf("QuoteIdent: %s", got)
	}
}
