package topology_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// TestMoveLifecycle walks a move through its states and checks that only
// FlipMove changes the owner, and that the snapshot refuses what the state
// machine does not allow.
func TestMoveLifecycle(t *testing.T) {
	snap, err := topology.Build([]topology.ShardSpec{{Name: "a", Primary: "127.0.0.1:1"}, {Name: "b", Primary: "127.0.0.1:2"}, {Name: "c", Primary: "127.0.0.1:3"}}, topology.Spec{
		Distributions: []topology.DistributionSpec{{Name: "users", Scheme: topology.Hash, KeyType: topology.Int, Shards: []string{"a", "b"}}},
		Tables:        []topology.TableSpec{{Name: "users", Key: "id", Distribution: "users"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := snap.Distribution("users")
	var mine []topology.Span
	for _, r := range d.Ranges {
		if r.Shard == "a" && len(mine) < 3 {
			mine = append(mine, topology.Span{Lo: r.Lo, Hi: r.Hi})
		}
	}
	apply := func(c topology.Command) {
		t.Helper()
		next, err := topology.ApplyCommand(snap, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Type(), err)
		}
		snap = next
	}
	mustFail := func(c topology.Command, want string) {
		t.Helper()
		if _, err := topology.ApplyCommand(snap, c); err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, topology.ErrInvalid) {
			t.Fatalf("%s: got %v, want an invalid error containing %q", c.Type(), err, want)
		}
	}
	m := topology.Move{ID: "m1", Distribution: "users", Ranges: mine, From: "a", To: "c"}
	mustFail(topology.StartMove{Move: topology.Move{ID: "x", Distribution: "users", Ranges: []topology.Span{{Lo: mine[0].Lo, Hi: mine[0].Hi - 1}}, From: "a", To: "c"}}, "split it first")
	mustFail(topology.StartMove{Move: topology.Move{ID: "x", Distribution: "users", Ranges: mine, From: "b", To: "c"}}, "belongs to a")
	apply(topology.StartMove{Move: m})
	mustFail(topology.StartMove{Move: topology.Move{ID: "m2", Distribution: "users", Ranges: mine[:1], From: "a", To: "b"}}, "already moving")
	mustFail(topology.SetMoveState{ID: "m1", From: topology.MovePending, To: topology.MoveCutover}, "cannot go from pending to cutover")
	mustFail(topology.FlipMove{ID: "m1"}, "only a move in cutover")
	mustFail(topology.RemoveShard{Name: "c"}, "takes part in move")
	for _, st := range [][2]topology.MoveState{{topology.MovePending, topology.MoveCopying}, {topology.MoveCopying, topology.MoveCatchup},
		{topology.MoveCatchup, topology.MoveCutover}, {topology.MoveCutover, topology.MoveCatchup}, {topology.MoveCatchup, topology.MoveCutover}} {
		apply(topology.SetMoveState{ID: "m1", From: st[0], To: st[1]})
	}
	if s, _ := router.For(snap).ShardForHash("users", mine[0].Lo); s != "a" {
		t.Fatalf("before the flip the source owns the range, got %s", s)
	}
	mustFail(topology.EndMove{ID: "m1"}, "cancel it first")
	apply(topology.FlipMove{ID: "m1"})
	for _, sp := range mine {
		if s, _ := router.For(snap).ShardForHash("users", sp.Hi); s != "c" {
			t.Fatalf("after the flip the target owns [%d, %d], got %s", sp.Lo, sp.Hi, s)
		}
	}
	if got, _ := snap.Move("m1"); got.State != topology.MoveCleanup {
		t.Fatalf("state after flip %s", got.State)
	}
	// The snapshot with a move survives a JSON round trip.
	b, _ := snap.MarshalJSON()
	back, err := topology.DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := back.Move("m1"); len(got.Ranges) != len(mine) {
		t.Fatalf("round trip lost ranges: %+v", got)
	}
	apply(topology.EndMove{ID: "m1"})
	if len(snap.Moves()) != 0 {
		t.Fatalf("moves left: %+v", snap.Moves())
	}
}
