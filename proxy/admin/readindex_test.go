package admin

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A follower learns the leader's committed version through the admin API
// of the others (GET /v1/internal/read-index, forwarded to the leader by
// followers); with the others gone it gets an error, not a stale answer.
func TestLeaderVersion(t *testing.T) {
	nodes := startCluster(t, 3, nodeOpts{})
	leader := leaderOf(t, nodes)
	fs := followers(nodes, leader)
	var res WriteResult
	if err := leader.client("").Do(context.Background(), http.MethodPut, "/v1/directory",
		DirectoryRequest{Table: "users", Key: "7", Shard: otherShard(t, leader, "7")}, &res); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		waitFor(t, 10*time.Second, f.id+" to know every admin URL", func() bool { return len(f.api.peers.all()) == 3 })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, id, err := f.api.LeaderVersion(ctx)
		cancel()
		if err != nil || v < res.Version || id != leader.id {
			t.Fatalf("LeaderVersion on %s: %d from %q, %v; want >= %d from %s", f.id, v, id, err, res.Version, leader.id)
		}
	}
	// Asked directly, a follower forwards to the leader.
	var ri ReadIndex
	if err := fs[0].client("").Get(context.Background(), "/v1/internal/read-index", nil, &ri); err != nil ||
		ri.LeaderID != leader.id || ri.Version < res.Version {
		t.Fatalf("read-index through follower %s: %+v, %v", fs[0].id, ri, err)
	}

	leader.kill()
	fs[1].kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, id, err := fs[0].api.LeaderVersion(ctx); err == nil {
		t.Fatalf("LeaderVersion with every other node down: %d from %q, want an error", v, id)
	}
}
