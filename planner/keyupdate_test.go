package planner

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// TestKeyUpdateDuringMove: while a move has a range's rows on two shards,
// the shard holding rows it does not own locks only its own rows, with
// the ownership condition in the locking SELECT's WHERE (the table stays
// a table, so ctid exists) and the client's $n renumbered as the locking
// SELECT numbers them.
func TestKeyUpdateDuringMove(t *testing.T) {
	snap, _ := movingFixture(t)
	p := New(fixtureOptions())
	op := mustPlan(t, p, snap, "UPDATE posts SET author_id = author_id + $2 WHERE id = $1", textParams("3", "1"))
	ku, ok := op.(*plan.KeyUpdate)
	if !ok {
		t.Fatalf("got %s", plan.String(op))
	}
	sc, ok := ku.Source.(*plan.Scatter)
	if !ok {
		t.Fatalf("source %s", plan.String(ku.Source))
	}
	if got := ku.SourceParams; len(got) != 2 || got[0] != 1 || got[1] != 0 {
		t.Fatalf("source params %v, want [1 0]", got)
	}
	s2 := sc.ShardSQL["s2"]
	for _, w := range []string{"SELECT posts.ctid, (author_id + $1)::bigint FROM posts WHERE id = $2 AND (hashint8extended(posts.author_id::int8, 0)", "FOR UPDATE OF posts"} {
		if !strings.Contains(s2, w) {
			t.Errorf("s2 locks with\n%s\nwant it to contain %s", s2, w)
		}
	}
	if len(sc.ShardSQL) != 1 || sc.SQLFor("s1") != sc.SQL {
		t.Errorf("only s2 should get its own statement: %v", sc.ShardSQL)
	}
}
