package rebalance

import (
	"math"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/topology"
)

// snapWith builds a snapshot with shards (name → state) and one hash
// distribution "users" over ranges.
func snapWith(t *testing.T, shards map[string]topology.ShardState, ranges []topology.Range) *topology.Snapshot {
	t.Helper()
	b := topology.NewBuilder(7)
	for name, st := range shards {
		b.AddShard(topology.Shard{Name: name, Primary: "127.0.0.1:1", State: st})
	}
	b.AddDistribution(topology.Distribution{Name: "users", Scheme: topology.Hash, KeyType: topology.Int, Ranges: ranges})
	b.AddTable(topology.Table{Name: "public.users", Kind: topology.Distributed, KeyColumn: "id", Distribution: "users"})
	snap, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// fourRanges splits the hash space in four, owned as given.
func fourRanges(owners ...string) []topology.Range {
	q := int64(math.MaxInt64 / 2)
	bounds := [][2]int64{{math.MinInt64, -q - 1}, {-q, -1}, {0, q - 1}, {q, math.MaxInt64}}
	out := make([]topology.Range, 4)
	for i, b := range bounds {
		out[i] = topology.Range{Lo: b[0], Hi: b[1], Shard: owners[i]}
	}
	return out
}

// loadsOf indexes a plan's loads by shard.
func loadsOf(p Plan) map[string]ShardLoad {
	out := map[string]ShardLoad{}
	for _, l := range p.Loads {
		out[l.Shard] = l
	}
	return out
}

func TestMakePlanByCountGivesANewShardItsShare(t *testing.T) {
	active := topology.ShardActive
	snap := snapWith(t, map[string]topology.ShardState{"a": active, "b": active, "c": active}, fourRanges("a", "a", "b", "b"))
	p, err := MakePlan(snap, PlanRequest{By: "count"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 7 || p.By != "count" {
		t.Errorf("plan version %d by %q", p.Version, p.By)
	}
	if len(p.Moves) != 1 || p.Moves[0].To != "c" || len(p.Moves[0].Ranges) != 1 {
		t.Fatalf("moves: %+v", p.Moves)
	}
	l := loadsOf(p)
	if l["c"].RangesAfter != 1 || l["a"].RangesAfter+l["b"].RangesAfter != 3 {
		t.Errorf("loads after: %+v", p.Loads)
	}
}

func TestMakePlanBySizeMovesRowsNotRanges(t *testing.T) {
	active := topology.ShardActive
	rs := fourRanges("a", "a", "b", "b")
	snap := snapWith(t, map[string]topology.ShardState{"a": active, "b": active, "c": active}, rs)
	// Shard a holds almost everything in its second range.
	stats := map[string][]RangeStat{"users": {
		{Lo: rs[0].Lo, Hi: rs[0].Hi, Shard: "a", Rows: 10, Bytes: 1000},
		{Lo: rs[1].Lo, Hi: rs[1].Hi, Shard: "a", Rows: 600, Bytes: 60000},
		{Lo: rs[2].Lo, Hi: rs[2].Hi, Shard: "b", Rows: 10, Bytes: 1000},
		{Lo: rs[3].Lo, Hi: rs[3].Hi, Shard: "b", Rows: 10, Bytes: 1000},
	}}
	// Unsplit, moving the big range would only make c the heaviest: the
	// planner must not swap shards through the average.
	p, err := MakePlan(snap, PlanRequest{}, stats)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Moves {
		if m.Bytes >= 60000 {
			t.Errorf("moved the whole heavy range: %+v", m)
		}
	}
	// Split to at most 8000 bytes, a big part of it goes to c.
	p, err = MakePlan(snap, PlanRequest{MaxMoveBytes: 8000}, stats)
	if err != nil {
		t.Fatal(err)
	}
	l := loadsOf(p)
	if l["c"].BytesAfter < 15000 || l["a"].BytesAfter > l["a"].BytesBefore-15000 {
		t.Errorf("loads after a split plan: %+v (moves %+v)", p.Loads, p.Moves)
	}
	var moved int64
	for _, m := range p.Moves {
		if m.From != "a" || m.To == "a" {
			t.Errorf("move %+v: only a is above the average", m)
		}
		if m.Bytes > 8000*int64(len(m.Ranges)) {
			t.Errorf("move %+v has ranges larger than max_move_bytes", m)
		}
		moved += m.Bytes
	}
	if moved == 0 {
		t.Fatal("nothing moved")
	}
}

func TestMakePlanEmptiesDrainingShards(t *testing.T) {
	snap := snapWith(t, map[string]topology.ShardState{"a": topology.ShardActive, "b": topology.ShardActive, "d": topology.ShardDraining},
		fourRanges("a", "d", "b", "d"))
	p, err := MakePlan(snap, PlanRequest{By: "count"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fromD := 0
	for _, m := range p.Moves {
		if m.From == "d" {
			fromD += len(m.Ranges)
		}
		if m.To == "d" {
			t.Errorf("move %+v goes to a draining shard", m)
		}
	}
	if fromD != 2 || loadsOf(p)["d"].RangesAfter != 0 {
		t.Errorf("draining shard keeps ranges: moves %+v loads %+v", p.Moves, p.Loads)
	}
}

func TestMakePlanRefusals(t *testing.T) {
	active := topology.ShardActive
	snap := snapWith(t, map[string]topology.ShardState{"a": active, "b": active}, fourRanges("a", "a", "b", "b"))
	if _, err := MakePlan(snap, PlanRequest{By: "weight"}, nil); err == nil || !strings.Contains(err.Error(), "size or count") {
		t.Errorf("unknown By: %v", err)
	}
	if _, err := MakePlan(snap, PlanRequest{Distribution: "nosuch"}, nil); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown distribution: %v", err)
	}
	busy, err := topology.ApplyCommand(snap, topology.StartMove{Move: topology.Move{ID: "m1", Distribution: "users",
		Ranges: []topology.Span{{Lo: fourRanges("a", "a", "b", "b")[0].Lo, Hi: fourRanges("a", "a", "b", "b")[0].Hi}}, From: "a", To: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MakePlan(busy, PlanRequest{}, nil); err == nil || !strings.Contains(err.Error(), "moves in progress") {
		t.Errorf("plan during a move: %v", err)
	}
	balanced, err := MakePlan(snap, PlanRequest{By: "count"}, nil)
	if err != nil || len(balanced.Moves) != 0 {
		t.Errorf("balanced cluster: %+v %v", balanced.Moves, err)
	}
}

func TestSplitStatHalvesInHashSpace(t *testing.T) {
	parts := splitStat(RangeStat{Lo: math.MinInt64, Hi: math.MaxInt64, Shard: "a", Rows: 1000, Bytes: 4000}, 1000)
	if len(parts) != 4 {
		t.Fatalf("parts: %+v", parts)
	}
	var rows, bytes int64
	for i, p := range parts {
		if i > 0 && p.Lo != parts[i-1].Hi+1 {
			t.Errorf("gap or overlap between %+v and %+v", parts[i-1], p)
		}
		rows += p.Rows
		bytes += p.Bytes
	}
	if parts[0].Lo != math.MinInt64 || parts[3].Hi != math.MaxInt64 || rows != 1000 || bytes != 4000 {
		t.Errorf("parts do not cover the range: %+v", parts)
	}
}
