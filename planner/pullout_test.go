package planner

import (
	"encoding/binary"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// TestPullOutOuterRoutesByValues: the outer statement of a PullOut, built
// from a subquery's keys, goes to exactly those keys' shards (one key:
// a Route; keys on two shards: a Scatter over those two).
func TestPullOutOuterRoutesByValues(t *testing.T) {
	p := New(fixtureOptions())
	snap := fixture(t)
	sql := "SELECT * FROM posts WHERE author_id IN (SELECT tenant_id FROM metrics WHERE tenant_id > $1) ORDER BY created_at DESC LIMIT $2"
	a, err := p.Analyze(sql)
	if err != nil {
		t.Fatal(err)
	}
	params := Params{Values: [][]byte{[]byte("5"), []byte("20")}}
	op, err := p.Plan(snap, a, params)
	if err != nil {
		t.Fatal(err)
	}
	po, ok := op.(*plan.PullOut)
	if !ok {
		t.Fatalf("plan %s, want PullOut", plan.String(op))
	}
	// users keys 1 → s3, 3 → s1 (see select_cases.json), as int8_send
	one, three := binary.BigEndian.AppendUint64(nil, 1), binary.BigEndian.AppendUint64(nil, 3)
	for _, c := range []struct {
		keys   [][]byte
		shards []string
	}{{[][]byte{one}, []string{"s3"}}, {[][]byte{one, nil, three}, []string{"s1", "s3"}}} {
		outer, pulled, err := po.OuterSQL([]plan.PulledRows{{TypeOID: 20, Values: c.keys}})
		if err != nil {
			t.Fatal(err)
		}
		oa, err := p.Analyze(outer)
		if err != nil {
			t.Fatal(err)
		}
		op2 := SelectParams(params, po.OuterParams)
		op2.Values = append(op2.Values, pulled.Values...)
		op2.OIDs = append(op2.OIDs, pulled.OIDs...)
		op2.Formats = append(op2.Formats, 1)
		got, err := p.Plan(snap, oa, op2)
		if err != nil {
			t.Fatalf("%s: %v", outer, err)
		}
		var shards []string
		for _, l := range plan.Leaves(got) {
			shards = append(shards, l.Describe().Shards...)
		}
		if len(shards) != len(c.shards) || shards[0] != c.shards[0] || shards[len(shards)-1] != c.shards[len(c.shards)-1] {
			t.Errorf("%s with keys %s: shards %v, want %v\n%s", outer, pulled.Values, shards, c.shards, plan.String(got))
		}
	}
}
