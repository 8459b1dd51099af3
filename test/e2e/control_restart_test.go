package e2e

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/wait"
)

// A restarted Raft proxy must not serve the topology it had before it
// stopped: changes committed while it was down reach it only when the
// leader retries it (hashicorp/raft backs off a failed follower up to
// ~10 s), so shardproxy holds its client port closed until it has applied
// the version the leader committed (raft.catchup_timeout).

// firstConnect connects to p's client port as soon as it accepts, polling;
// what the connection runs first is what the proxy served first.
func firstConnect(t *testing.T, ctx context.Context, p *ctlProxy) *pgx.Conn {
	t.Helper()
	var conn *pgx.Conn
	wait.Until(t, 60*time.Second, p.name+" to accept clients", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, p.dsn())
		if err != nil {
			return false
		}
		conn = c
		return true
	})
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// userShards returns the shards (of the first n) that hold users row id.
func (mc *moveCluster) userShards(t *testing.T, ctx context.Context, n int, id int64) []string {
	t.Helper()
	var on []string
	for _, s := range mc.pg.Shards[:n] {
		c, err := pgx.Connect(ctx, s.Primary.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var k int
		err = c.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", id).Scan(&k)
		c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if k > 0 {
			on = append(on, s.Name)
		}
	}
	return on
}

// TestControlRestartedProxyCatchesUpFirst: three proxies; a follower is
// killed; keys are pinned from shard0 to shard1 through the leader while it
// is down; restarted, the first statement it serves — an INSERT of the
// last pinned key — lands on shard1. Then the whole cluster stops and one
// proxy comes back alone: with no leader to ask it waits
// raft.catchup_timeout, warns, and serves with its last topology.
func TestControlRestartedProxyCatchesUpFirst(t *testing.T) {
	mc := startMoveCluster(t, 2, 2, 3)
	ctx := testCtx(t, 4*time.Minute)
	leader := mc.leader(t)
	follower := mc.other(leader)

	// Keys the hash ranges put on shard0.
	var keys []int64
	for k := int64(1); len(keys) < 3; k++ {
		ans, err := ctlKey(leader, strconv.FormatInt(k, 10))
		if err != nil {
			t.Fatal(err)
		}
		if ans.Shard == "shard0" {
			keys = append(keys, k)
		}
	}

	follower.kill()
	for _, k := range keys {
		mc.mustShardctl(t, leader, "directory", "set", "users", strconv.FormatInt(k, 10), "shard1")
	}
	want, err := ctlStatus(leader)
	if err != nil {
		t.Fatal(err)
	}
	// The follower stays down a few seconds, as a crashed process does:
	// long enough for the leader's retries to it to back off past a
	// second, so the leader does not reach it before it could serve.
	wait.Pause(nil, 5*time.Second)

	follower.start(t)
	conn := firstConnect(t, ctx, follower)
	last := keys[len(keys)-1]
	if _, err := conn.Exec(ctx, "INSERT INTO users (id, name) VALUES ($1, 'first after restart')", last); err != nil {
		t.Fatalf("first statement through the restarted %s: %v", follower.name, err)
	}
	if on := mc.userShards(t, ctx, 2, last); len(on) != 1 || on[0] != "shard1" {
		t.Fatalf("the first INSERT through the restarted %s (key %d, pinned to shard1 at version %d while it was down) landed on %v: it routed by its old topology",
			follower.name, last, want.TopologyVersion, on)
	}
	if st, err := ctlStatus(follower); err != nil || st.TopologyVersion < want.TopologyVersion {
		t.Fatalf("restarted %s: version %d (%v), want >= %d", follower.name, st.TopologyVersion, err, want.TopologyVersion)
	}
	took := regexp.MustCompile(`caught up with the Raft leader.* took=(\S+)`).FindStringSubmatch(follower.out.String())
	if took == nil {
		t.Fatalf("%s did not log its catch-up:\n%s", follower.name, follower.out.String())
	}
	t.Logf("restarted %s caught up to version %d in %s before accepting clients", follower.name, want.TopologyVersion, took[1])

	// The whole cluster down; one proxy back alone with a short bound.
	for _, p := range mc.proxies {
		p.stop()
	}
	alone := mc.proxies[2]
	cfg, err := os.ReadFile(alone.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(cfg), "raft:\n  node_id: "+alone.name+"\n") {
		t.Fatalf("unexpected config layout:\n%s", cfg)
	}
	if err := os.WriteFile(alone.config, append(cfg, "  catchup_timeout: 2s\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	alone.start(t)
	conn = firstConnect(t, ctx, alone)
	if !strings.Contains(alone.out.String(), "could not confirm the leader's topology") {
		t.Fatalf("%s accepted clients without a leader but did not warn:\n%s", alone.name, alone.out.String())
	}
	if _, err := conn.Exec(ctx, "INSERT INTO users (id, name) VALUES ($1, 'alone')", keys[0]); err != nil {
		t.Fatalf("insert through %s without quorum: %v", alone.name, err)
	}
	if on := mc.userShards(t, ctx, 2, keys[0]); len(on) != 1 || on[0] != "shard1" {
		t.Fatalf("insert through %s without quorum landed on %v, want shard1 (its last topology)", alone.name, on)
	}
}
