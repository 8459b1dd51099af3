package planner

import (
	"errors"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// movingFixture returns the fixture with one of s1's ranges of
// distribution users being copied to s2 (state copying), and that range.
func movingFixture(t *testing.T) (*topology.Snapshot, topology.Span) {
	t.Helper()
	snap := fixture(t)
	d, _ := snap.Distribution("users")
	var sp topology.Span
	for _, r := range d.Ranges {
		if r.Shard == "s1" {
			sp = topology.Span{Lo: r.Lo, Hi: r.Hi}
			break
		}
	}
	var err error
	for _, cmd := range []topology.Command{
		topology.StartMove{Move: topology.Move{ID: "m1", Distribution: "users", Ranges: []topology.Span{sp}, From: "s1", To: "s2"}},
		topology.SetMoveState{ID: "m1", From: topology.MovePending, To: topology.MoveCopying},
	} {
		if snap, err = topology.ApplyCommand(snap, cmd); err != nil {
			t.Fatal(err)
		}
	}
	return snap, sp
}

// TestOwnershipFilterRewrites checks the statements each shard gets while
// a move has rows on two shards: only the target (s2) reads through the
// filter, which keeps the key pinned by an override (42), and the shapes
// the rewrite cannot keep equivalent get 0A000.
func TestOwnershipFilterRewrites(t *testing.T) {
	snap, _ := movingFixture(t)
	p := New(fixtureOptions())
	for _, tc := range []struct {
		sql  string
		want []string // substrings of s2's statement
	}{
		{"SELECT count(*) FROM posts", []string{`FROM (SELECT * FROM posts WHERE (hashint8extended(author_id::int8, 0) `, ` AND author_id::int8 NOT IN ('42'::int8)) IS NOT TRUE) posts`}},
		{"SELECT u.name, p.body FROM users u JOIN posts p ON p.author_id = u.id WHERE p.body LIKE $1 FOR UPDATE OF p",
			[]string{`(SELECT * FROM users WHERE`, `) u JOIN (SELECT * FROM posts WHERE`, `) p ON`, `FOR UPDATE OF p`}},
		{"SELECT * FROM countries c JOIN users ON users.country = c.code", []string{`FROM countries c JOIN (SELECT * FROM users WHERE`}},
		{"UPDATE posts AS p SET body = 'x' WHERE p.body = ''", []string{`UPDATE posts p SET body = 'x' WHERE p.body = '' AND (hashint8extended(p.author_id::int8, 0)`}},
		{"DELETE FROM posts", []string{`DELETE FROM posts WHERE (hashint8extended(posts.author_id::int8, 0)`}},
		{"COPY posts (author_id, body) TO STDOUT WITH (FORMAT csv)", []string{`COPY (SELECT author_id, body FROM ONLY posts WHERE`, `TO STDOUT CSV`}},
		{"SELECT id FROM users WHERE id IN (SELECT author_id FROM posts) ORDER BY id LIMIT 3", []string{`(SELECT * FROM users WHERE`, `(SELECT author_id FROM (SELECT * FROM posts WHERE`}},
	} {
		op := mustPlan(t, p, snap, tc.sql, Params{})
		var sc *plan.Scatter
		for _, l := range plan.Leaves(op) {
			if s, ok := l.(*plan.Scatter); ok {
				sc = s
			}
		}
		if sc == nil {
			t.Fatalf("%s: no Scatter in\n%s", tc.sql, plan.String(op))
		}
		if len(sc.ShardSQL) != 1 || sc.ShardSQL["s2"] == "" {
			t.Fatalf("%s: ShardSQL %v, want one statement for s2", tc.sql, sc.ShardSQL)
		}
		got := sc.ShardSQL["s2"]
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s:\ns2 runs %s\nwant it to contain %s", tc.sql, got, w)
			}
		}
		if sc.SQLFor("s1") != sc.SQL {
			t.Errorf("%s: s1 should run the plain statement", tc.sql)
		}
	}
	for _, sql := range []string{
		"WITH users AS (SELECT 1 AS id) SELECT count(*) FROM posts JOIN users ON users.id = posts.author_id",
		"SELECT count(*) FROM posts TABLESAMPLE SYSTEM (10)",
		"SELECT public.posts.body FROM public.posts",
	} {
		a, err := p.Analyze(sql)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Plan(snap, a, Params{})
		var u *plan.Unsupported
		if !errors.As(err, &u) || !strings.Contains(u.Message, "being moved") {
			t.Errorf("%s: got %v, want 0A000 about the move", sql, err)
		}
	}
	// Routed by key: no filter.
	op := mustPlan(t, p, snap, "SELECT * FROM posts WHERE author_id = 7", Params{})
	if _, ok := op.(*plan.Route); !ok {
		t.Fatalf("keyed read planned as %s", plan.String(op))
	}
}
