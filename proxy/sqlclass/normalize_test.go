package sqlclass

import (
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeNumbers(t *testing.T) {
	type lit struct {
		text string
		oid  uint32
	}
	cases := []struct {
		sql  string
		want string // "" = refused
		lits []lit
	}{
		{"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", []lit{{"48213", OIDInt4}}},
		{"select 1, 2.5, .5, 5., 1e5, 1.5E-3", "select $1, $2, $3, $4, $5, $6", []lit{{"1", OIDInt4}, {"2.5", OIDNumeric}, {".5", OIDNumeric}, {"5.", OIDNumeric}, {"1e5", OIDNumeric}, {"1.5E-3", OIDNumeric}}},
		{"select 2147483647, 2147483649, 9223372036854775807, 99999999999999999999", "select $1, $2, $3, $4",
			[]lit{{"2147483647", OIDInt4}, {"2147483649", OIDInt8}, {"9223372036854775807", OIDInt8}, {"99999999999999999999", OIDNumeric}}},
		{"update t set a = a - -5 where id=-7", "update t set a = a - -$1 where id=-$2", []lit{{"5", OIDInt4}, {"7", OIDInt4}}},
		// Strings, quoted identifiers and comments keep their digits.
		{"select '12', E'3\\'4', \"c5\", x -- 6\n from t1 /* 7 /* 8 */ */ where y = 9", "select '12', E'3\\'4', \"c5\", x -- 6\n from t1 /* 7 /* 8 */ */ where y = $1", []lit{{"9", OIDInt4}}},
		{"select 'it''s 1' from t where a = 2", "select 'it''s 1' from t where a = $1", []lit{{"2", OIDInt4}}},
		{"select x::numeric(10,2) from t", "select x::numeric($1,$2) from t", []lit{{"10", OIDInt4}, {"2", OIDInt4}}}, // the parser check refuses it
		{"select now()", "select now()", nil},
		// Refused.
		{"select -2147483648", "", nil},
		{"select -9223372036854775808", "", nil},
		{"select 2147483648", "", nil},
		{"select $1", "", nil},
		{"select $$5$$", "", nil},
		{"select a$b from t where c = 1", "", nil},
		{"select 123abc", "", nil},
		{"select 1_000", "", nil},
		{"select 0x1F", "", nil},
		{"select 'open", "", nil},
		{"select 1 as " + strings.Repeat("x", 64), "", nil},
		{"select 1 as \"" + strings.Repeat("x", 64) + "\"", "", nil},
		{"select 1 as " + strings.Repeat("x", 63), "select $1 as " + strings.Repeat("x", 63), []lit{{"1", OIDInt4}}},
		{"select 1 /* open", "", nil},
	}
	for _, c := range cases {
		got, lits, ok := NormalizeNumbers(c.sql, nil, nil)
		if c.want == "" {
			if ok {
				t.Errorf("%q: normalized to %q, want refused", c.sql, got)
			}
			continue
		}
		if !ok || string(got) != c.want {
			t.Errorf("%q: got %q ok=%v, want %q", c.sql, got, ok, c.want)
			continue
		}
		var gl []lit
		for _, l := range lits {
			gl = append(gl, lit{c.sql[l.Start:l.End], l.OID})
		}
		if !reflect.DeepEqual(gl, c.lits) {
			t.Errorf("%q: literals %v, want %v", c.sql, gl, c.lits)
		}
	}
	many := "select 1"
	for i := 0; i < maxLiterals; i++ {
		many += ", 1"
	}
	if _, _, ok := NormalizeNumbers(many, nil, nil); ok {
		t.Errorf("%d literals: normalized, want refused", maxLiterals+1)
	}
}

func BenchmarkNormalizeNumbers(b *testing.B) {
	sql := "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"
	var dst []byte
	var lits []Literal
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst, lits, _ = NormalizeNumbers(sql, dst[:0], lits[:0])
	}
}
