package planner

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// planGeneral is Plan without the point fast path: what Plan did before
// point.go, for one-statement analyses.
func planGeneral(p *Planner, snap *topology.Snapshot, a *Analysis, params Params) (plan.Operator, error) {
	return p.planSingle(snap, a, &params)
}

// pointVariants are parameter sets for a statement whose key is $(i+1) of
// key type kt: keys of every kind the planner decodes, in text and binary,
// with and without parameter types, and values it must leave to the
// general planner (NULL, wrong types, malformed, too short).
func pointVariants(i int, kt topology.KeyType, rng *rand.Rand) []Params {
	n := i + 1
	with := func(v []byte, format int16, oid uint32) Params {
		p := Params{Values: make([][]byte, n), OIDs: make([]uint32, n)}
		for j := range p.Values {
			p.Values[j] = []byte("7")
		}
		p.Values[i] = v
		p.OIDs[i] = oid
		if format != 0 {
			p.Formats = []int16{format}
		}
		return p
	}
	var out []Params
	be := func(bits int, x int64) []byte {
		b := make([]byte, bits/8)
		switch bits {
		case 16:
			binary.BigEndian.PutUint16(b, uint16(x))
		case 32:
			binary.BigEndian.PutUint32(b, uint32(x))
		case 64:
			binary.BigEndian.PutUint64(b, uint64(x))
		}
		return b
	}
	switch kt {
	case topology.Int:
		keys := []int64{0, 1, -1, 42, 999, 1000, 1999, 2000, 1 << 40, -(1 << 40), 9223372036854775807, -9223372036854775808}
		for range 40 {
			keys = append(keys, rng.Int64N(1<<31)-(1<<30))
		}
		for _, k := range keys {
			t := []byte(strconv.FormatInt(k, 10))
			out = append(out, with(t, 0, 0), with(t, 0, oidInt8), with(t, 0, oidNumeric), with(t, 0, oidText),
				with(be(64, k), 1, oidInt8), with(be(64, k), 1, 0))
			if int64(int32(k)) == k {
				out = append(out, with(be(32, k), 1, oidInt4), with(t, 0, oidInt4))
			}
			if int64(int16(k)) == k {
				out = append(out, with(be(16, k), 1, oidInt2))
			}
		}
		out = append(out, with([]byte(" 12 "), 0, 0), with([]byte("+12"), 0, 0), with([]byte("12.0"), 0, oidNumeric),
			with([]byte("99999999999999999999"), 0, 0), with([]byte("abc"), 0, 0), with([]byte{1, 2, 3}, 1, oidInt4))
	case topology.Text:
		for _, k := range []string{"eu", "us", "apac", "latam", "EU", "mars", "", "é", "eu "} {
			out = append(out, with([]byte(k), 0, 0), with([]byte(k), 0, oidText), with([]byte(k), 1, oidVarchar), with([]byte(k), 0, oidInt4))
		}
	case topology.UUID:
		for range 20 {
			var u [16]byte
			for j := range u {
				u[j] = byte(rng.IntN(256))
			}
			s := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
			out = append(out, with([]byte(s), 0, 0), with([]byte(s), 0, oidUUID), with(u[:], 1, oidUUID), with(u[:8], 1, oidUUID))
		}
		out = append(out, with([]byte("not-a-uuid"), 0, 0))
	}
	out = append(out, with(nil, 0, 0), with([]byte("1"), 0, oidBool))
	short := Params{Values: make([][]byte, i)} // the statement uses $n but the Bind has fewer values
	for j := range short.Values {
		short.Values[j] = []byte("7")
	}
	out = append(out, short)
	forced := with([]byte("5"), 0, 0)
	forced.ForcedShard = "s2"
	return append(out, forced)
}

// TestPointMatchesGeneral: for every one-statement golden case and extra
// point statements, Plan (with the point fast path) returns exactly what
// the general planner returns, for the case's parameters and, when the
// statement is a point statement, for many key values of every form.
func TestPointMatchesGeneral(t *testing.T) {
	p := New(fixtureOptions())
	snap := fixture(t)
	rng := rand.New(rand.NewPCG(3, 4))
	queries := []struct {
		sql    string
		params Params
	}{
		{"SELECT * FROM users WHERE id = $1", Params{}},
		{"SELECT name FROM users u WHERE u.id = $2 AND name = $1", Params{}},
		{"SELECT * FROM users JOIN posts ON posts.author_id = users.id WHERE users.id = $1", Params{}},
		{"SELECT * FROM users, countries WHERE users.id = $1", Params{}},
		{"SELECT * FROM users WHERE id = $1 FOR UPDATE", Params{}},
		{"UPDATE users SET name = $2 WHERE id = $1", Params{}},
		{"UPDATE users SET name = 'x' WHERE id = $1 RETURNING *", Params{}},
		{"UPDATE users SET id = $2 WHERE id = $1", Params{}},
		{"DELETE FROM users WHERE id = $1", Params{}},
		{"DELETE FROM devices WHERE id = $1", Params{}},
		{"SELECT * FROM devices WHERE id = $1", Params{}},
		{"SELECT * FROM regions_data WHERE region = $1", Params{}},
		{"SELECT * FROM metrics WHERE tenant_id = $1", Params{}},
		{"SELECT count(*) FROM metrics WHERE tenant_id = $1 GROUP BY tenant_id", Params{}},
		{"/* shardproxy: shard=s1 */ SELECT * FROM users WHERE id = $1", Params{}},
		{"SELECT * FROM users WHERE id = $1 AND id = $2", Params{}},
		{"SELECT * FROM users WHERE id = $1 OR id = $2", Params{}},
		{"SELECT * FROM users, unknown_table WHERE users.id = $1", Params{}},
		{"EXPLAIN SELECT * FROM users WHERE id = $1", Params{}},
		{"DECLARE c CURSOR FOR SELECT * FROM users WHERE id = $1", Params{}},
		{"INSERT INTO users (id, name) VALUES ($1, 'x')", Params{}},
		{"WITH d AS (DELETE FROM users WHERE id = $1 RETURNING *) SELECT * FROM d", Params{}},
		{"SELECT * FROM countries WHERE code = $1", Params{}},
	}
	for _, cases := range loadCases(t) {
		for _, c := range cases {
			queries = append(queries, struct {
				sql    string
				params Params
			}{c.Query, c.Params.params(t)})
		}
	}
	points, compared := 0, 0
	for _, q := range queries {
		a, err := p.Analyze(q.sql)
		if err != nil || len(a.Statements) != 1 {
			continue
		}
		variants := []Params{q.params}
		st := a.Statements[0].info
		if pointKind(st) { // binding is only valid for these kinds
			if pt := st.bind(snap).pointTemplate(a, st); pt != nil {
				points++
				variants = append(variants, pointVariants(pt.param, st.bind(snap).classes[0].kt, rng)...)
			}
		}
		for _, params := range variants {
			got, gotErr := p.Plan(snap, a, params)
			want, wantErr := planGeneral(p, snap, a, params)
			compared++
			if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("%s with %q (formats %v, oids %v, forced %q):\nPlan:    %s %v\ngeneral: %s %v", q.sql, params.Values,
					params.Formats, params.OIDs, params.ForcedShard, describe(got), gotErr, describe(want), wantErr)
			}
		}
	}
	if points < 15 {
		t.Errorf("only %d point statements among the cases: the fast path is hardly tested", points)
	}
	t.Logf("%d point statements, %d plans compared", points, compared)
}

func describe(op plan.Operator) string {
	if op == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", plan.Tree(op))
}

// TestPointTemplate: which statements take the fast path.
func TestPointTemplate(t *testing.T) {
	p := New(fixtureOptions())
	snap := fixture(t)
	for sql, want := range map[string]bool{
		"SELECT * FROM users WHERE id = $1":                            true,
		"SELECT abalance FROM users WHERE id = $1 AND name = $2":       true,
		"UPDATE users SET name = name || $2 WHERE id = $1":             true,
		"DELETE FROM users WHERE id = $1":                              true,
		"SELECT * FROM users WHERE id = 5":                             false, // a literal: planned once per text anyway
		"SELECT * FROM users WHERE id IN ($1, $2)":                     false,
		"UPDATE users SET id = $2 WHERE id = $1":                       false, // rows may move: KeyUpdate
		"SELECT * FROM users, unknown_table WHERE users.id = $1":       false,
		"SELECT * FROM users u JOIN devices d ON true WHERE u.id = $1": false,
		"INSERT INTO users (id) VALUES ($1)":                           false,
		"DECLARE c CURSOR FOR SELECT * FROM users WHERE id = $1":       false,
		"EXPLAIN SELECT * FROM users WHERE id = $1":                    false,
	} {
		a, err := p.Analyze(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		st := a.Statements[0].info
		if got := pointKind(st) && st.bind(snap).pointTemplate(a, st) != nil; got != want {
			t.Errorf("%s: point statement = %v, want %v", sql, got, want)
		}
	}
}
