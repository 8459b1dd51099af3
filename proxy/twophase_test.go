package proxy

import (
	"log/slog"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/topology"
)

// leaderStore is a static topology that answers IsLeader like the Raft
// store does.
type leaderStore struct {
	*topology.StaticStore
	leader bool
}

func (l leaderStore) IsLeader() bool { return l.leader }

func TestRecoveryOwnership(t *testing.T) {
	cfg := config.Default()
	cfg.NodeID = 3
	cfg.Shards = []config.Shard{{Name: "s1", Primary: config.Endpoint{Host: "127.0.0.1", Port: 61999}}}
	snap, err := cfg.Topology()
	if err != nil {
		t.Fatal(err)
	}
	for _, leader := range []bool{true, false} {
		srv, err := NewServer(cfg, Deps{Logger: slog.New(slog.DiscardHandler), Topology: leaderStore{topology.NewStaticStore(snap), leader}})
		if err != nil {
			t.Fatal(err)
		}
		mine := srv.newGID("s1")
		earlierRun := "shardproxy:3:00000000:1:s1"
		otherNode := "shardproxy:4:abcdef01:9:s1"
		cases := []struct {
			gid  string
			age  time.Duration
			want bool
		}{
			{mine, time.Second, false},                // just prepared by this process
			{mine, time.Minute, true},                 // this process's, no longer in flight
			{earlierRun, time.Second, true},           // an earlier run of this node
			{otherNode, time.Minute, false},           // another node, within the grace period
			{otherNode, 3 * time.Minute, leader},      // another node's, only the leader finishes it
			{"not-ours", time.Hour, false},            // not a shardproxy transaction
			{"shardproxy:x:y:1:s1", time.Hour, false}, // malformed node id
		}
		srv.twoPhase.inflight.Store(mine, true)
		if srv.ownsNoLonger(mine, time.Minute) {
			t.Errorf("leader=%v: a transaction in flight here was taken over", leader)
		}
		srv.twoPhase.inflight.Delete(mine)
		for _, c := range cases {
			if got := srv.ownsNoLonger(c.gid, c.age); got != c.want {
				t.Errorf("leader=%v: ownsNoLonger(%q, %s) = %v, want %v", leader, c.gid, c.age, got, c.want)
			}
		}
	}
}
