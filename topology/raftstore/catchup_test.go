package raftstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// askLeader is a LeaderVersionFunc over in-process nodes: the ReadIndex of
// whichever running node leads.
func askLeader(nodes ...*node) LeaderVersionFunc {
	return func(ctx context.Context) (uint64, string, error) {
		for _, n := range nodes {
			if n.s != nil && n.s.IsLeader() {
				snap, err := n.s.ReadIndex(ctx)
				if err != nil {
					return 0, "", err
				}
				return snap.Version(), n.cfg.NodeID, nil
			}
		}
		return 0, "", errors.New("no leader among the running nodes")
	}
}

// TestCatchUp: a follower restarted after changes it missed serves its old
// topology at first (Restarted), and CatchUp returns only once it has the
// leader's version; alone (no quorum) CatchUp gives up at its deadline and
// the node keeps its last topology; with a second node back it catches up
// (possibly by becoming leader itself).
func TestCatchUp(t *testing.T) {
	nodes := cluster3(t, func(c *Config) { c.ApplyTimeout = 2 * time.Second })
	for _, n := range nodes {
		if n.s.Restarted() {
			t.Fatalf("%s reports a restart on its first start", n.cfg.NodeID)
		}
	}
	leader := waitLeader(t, nodes...)
	var follower *node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	before := apply(t, leader, addShard(1))
	waitVersion(t, before.Version(), nodes...)

	follower.stop()
	last := before
	for i := 2; i <= 4; i++ {
		last = apply(t, leader, addShard(i))
	}
	follower.start()
	if !follower.s.Restarted() {
		t.Fatal("a node reopened on its data dir does not report a restart")
	}
	if got := follower.s.Current().Version(); got != before.Version() {
		t.Fatalf("restarted follower serves version %d at open, want its last applied %d", got, before.Version())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := follower.s.CatchUp(ctx, askLeader(nodes...), 50*time.Millisecond)
	if err != nil {
		t.Fatalf("catch up: %v", err)
	}
	if got := follower.s.Current().Version(); got < last.Version() || res.Version != got ||
		res.LeaderVersion < last.Version() || res.StartVersion != before.Version() {
		t.Fatalf("after CatchUp (%+v) the follower serves version %d, want >= %d", res, got, last.Version())
	}
	sameTopology(t, last, follower)
	t.Logf("restarted follower caught up from version %d to %d in %s", res.StartVersion, res.Version, res.Took.Round(time.Millisecond))

	// Everyone down; one node back alone: no leader, CatchUp ends at its
	// deadline and the node keeps serving its last topology.
	for _, n := range nodes {
		n.stop()
	}
	alone := nodes[1]
	alone.start()
	short, cancelShort := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancelShort()
	if _, err := alone.s.CatchUp(short, askLeader(nodes...), 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("catch up without quorum: %v, want a deadline error", err)
	}
	if got := alone.s.Current().Version(); got != last.Version() {
		t.Fatalf("alone after CatchUp gave up: version %d, want the last one %d", got, last.Version())
	}

	// A second node back: a leader is elected among the two and the node
	// catches up (by answering itself if it is the one elected).
	nodes[2].start()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	res, err = alone.s.CatchUp(ctx2, askLeader(nodes...), 50*time.Millisecond)
	if err != nil || res.Version < last.Version() {
		t.Fatalf("catch up with quorum back: %+v, %v", res, err)
	}
}
