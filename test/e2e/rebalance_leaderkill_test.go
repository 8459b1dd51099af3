package e2e

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// The leader proxy killed while a move copies and while another is in
// cutover.

// moveState returns the state of move id in p's topology ("" once it
// ended).
func (mc *moveCluster) moveState(t *testing.T, p *ctlProxy, id string) topology.MoveState {
	m, ok := mc.topology(t, p).Move(id)
	if !ok {
		return ""
	}
	return m.State
}

// waitMoveEnded waits until move id is no longer recorded.
func (mc *moveCluster) waitMoveEnded(t *testing.T, p *ctlProxy, id string, d time.Duration) {
	t.Helper()
	ctlWait(t, d, "move "+id+" to end", func() bool { return mc.moveState(t, p, id) == "" })
}

// startMove moves the first range of shard from to shard to through p and
// returns the move's ID.
func (mc *moveCluster) startMove(t *testing.T, p *ctlProxy, from, to string, extra ...string) string {
	t.Helper()
	r := mc.firstRange(t, p, from)
	args := append([]string{"-o", "json", "move", "--to", to}, extra...)
	args = append(args, "users", "--", fmt.Sprintf("%d:%d", r.Lo, r.Hi))
	var res admin.MovesStarted
	if err := json.Unmarshal([]byte(mc.mustShardctl(t, p, args...)), &res); err != nil || len(res.Moves) != 1 {
		t.Fatalf("move: %+v %v", res, err)
	}
	return res.Moves[0]
}

// firstRange returns the first range of users that shard owns.
func (mc *moveCluster) firstRange(t *testing.T, p *ctlProxy, shard string) topology.Range {
	t.Helper()
	for _, r := range mustDist(t, mc.topology(t, p), "users").Ranges {
		if r.Shard == shard {
			return r
		}
	}
	t.Fatalf("%s owns no range of users", shard)
	return topology.Range{}
}

// assertRangeOwner checks that the range starting at r.Lo belongs to shard
// (the move finished rather than rolled back).
func (mc *moveCluster) assertRangeOwner(t *testing.T, p *ctlProxy, r topology.Range, shard string) {
	t.Helper()
	d := mustDist(t, mc.topology(t, p), "users")
	if i := topology.FindRange(d.Ranges, r.Lo); i < 0 || d.Ranges[i].Shard != shard {
		t.Errorf("range [%d, %d] is not on %s after its move: %+v", r.Lo, r.Hi, shard, d.Ranges)
	}
}

// killAndRestartLeader kills the leader process, waits for
// a new leader among the others, and starts the killed one again.
func (mc *moveCluster) killAndRestartLeader(t *testing.T, leader *ctlProxy) {
	t.Helper()
	leader.kill()
	ctlWait(t, 15*time.Second, "a new leader after killing "+leader.name, func() bool {
		for _, p := range mc.proxies {
			if p == leader {
				continue
			}
			st, err := ctlStatus(p)
			if err == nil && st.Leader != nil && st.Leader.ID != leader.name {
				return true
			}
		}
		return false
	})
	leader.start(t)
}

// TestRebalanceLeaderKilled kills the leader proxy (the one running the
// controller) while a move copies and while another is in cutover (the
// fence held up by an open transaction on the source), restarting it each
// time: the new leader resumes the copy and rolls the cutover back to
// catchup, then finishes both moves; the load through another proxy sees
// no errors and no row is lost (about 50 s).
func TestRebalanceLeaderKilled(t *testing.T) {
	mc := startMoveCluster(t, 3, 2, 3)
	mc.mustShardctl(t, mc.proxies[0], "shards", "add", mc.pg.Shards[2].Name, "--primary", mc.pg.Shards[2].Primary.Addr())
	leader := mc.leader(t)
	follower := mc.other(leader)
	stop := make(chan struct{})
	load, wg := runMoveLoad(t, follower.dsn(), 4, 2000, stop)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()

	// Enough rows that the copy takes a few seconds: notes of the seeded
	// users, written straight into the shard that owns them.
	ctx := testCtx(t, 5*time.Minute)
	pc := connectPgx(t, ctx, follower.dsn())
	if _, err := pc.Exec(ctx, "CREATE TABLE notes (user_id bigint NOT NULL, n int NOT NULL, body text NOT NULL, PRIMARY KEY (user_id, n))"); err != nil {
		t.Fatal(err)
	}
	var notes int64
	for _, sh := range mc.pg.Shards[:2] {
		conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		tag, err := conn.Exec(ctx, `INSERT INTO notes SELECT u.id, g, repeat('x', 300) FROM users u, generate_series(1, 300) g WHERE u.id <= 2000`)
		if err != nil {
			t.Fatal(err)
		}
		notes += tag.RowsAffected()
		conn.Close(ctx)
	}

	// Mid-copy.
	first := mc.firstRange(t, follower, "shard0")
	id := mc.startMove(t, follower, "shard0", "shard2", "--hold-timeout", "10s")
	ctlWait(t, 30*time.Second, "move "+id+" copying", func() bool { return mc.moveState(t, follower, id) == topology.MoveCopying })
	mc.killAndRestartLeader(t, leader)
	t.Logf("killed %s while %s was copying", leader.name, id)
	mc.waitMoveEnded(t, follower, id, 3*time.Minute)
	mc.assertRangeOwner(t, follower, first, "shard2")

	// Mid-cutover: the third proxy is frozen (SIGSTOP), so the cutover
	// waits for it to see the hold (hold timeout 30s); meanwhile the leader
	// dies, and the frozen proxy resumes so that a majority elects a new
	// leader, which must roll the cutover back and redo it.
	leader = mc.leader(t)
	if leader == follower {
		// The load's proxy leads now: pause it until another proxy is
		// elected (a paused leader loses its term; the load only waits),
		// so that killing the leader does not kill the load's proxy.
		if err := follower.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		leader = mc.leaderOtherThan(t, follower, 30*time.Second)
		if err := follower.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	var frozen *ctlProxy
	for _, p := range mc.proxies {
		if p != leader && p != follower {
			frozen = p
		}
	}
	second := mc.firstRange(t, follower, "shard1")
	id = mc.startMove(t, follower, "shard1", "shard2", "--hold-timeout", "30s")
	ctlWait(t, 30*time.Second, "move "+id+" copying", func() bool { return mc.moveState(t, follower, id) == topology.MoveCopying })
	if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thaw := func() { _ = frozen.cmd.Process.Signal(syscall.SIGCONT) }
	defer thaw()
	ctlWait(t, 2*time.Minute, "move "+id+" in cutover", func() bool { return mc.moveState(t, follower, id) == topology.MoveCutover })
	leader.kill()
	thaw()
	mc.killAndRestartLeader(t, leader)
	ctlWait(t, 30*time.Second, "the new leader to roll "+id+" back to catchup", func() bool { return mc.moveState(t, follower, id) != topology.MoveCutover })
	t.Logf("killed %s while %s was in cutover", leader.name, id)
	mc.waitMoveEnded(t, follower, id, 3*time.Minute)
	mc.assertRangeOwner(t, follower, second, "shard2")

	stopLoad()
	if n := load.errors.Load(); n > 0 {
		t.Errorf("%d client errors (first: %v)", n, load.firstErr.Load())
	}
	if n := load.mismatch.Load(); n > 0 {
		t.Errorf("%d reads did not return the last acknowledged write", n)
	}
	env := mc.env(t, follower)
	env.checkPlacement(t, load)
	env.assertNoReplicationLeft(t)
	checkNotes(t, mc.pg, env.store.Current(), notes)
}

// checkNotes checks that the notes table holds want rows in all, each on
// the shard that owns its user_id.
func checkNotes(t *testing.T, pg *pgcluster.Cluster, snap *topology.Snapshot, want int64) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	r := router.For(snap)
	var total, misplaced int64
	for _, sh := range pg.Shards {
		conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass('notes') IS NOT NULL").Scan(&exists); err != nil || !exists {
			conn.Close(ctx)
			continue
		}
		rows, err := conn.Query(ctx, "SELECT user_id, count(*) FROM notes GROUP BY user_id")
		if err != nil {
			t.Fatal(err)
		}
		var uid, n int64
		_, err = pgx.ForEachRow(rows, []any{&uid, &n}, func() error {
			total += n
			if owner, _ := r.ShardForKey("users", router.IntKey(uid)); owner != sh.Name {
				misplaced += n
			}
			return nil
		})
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != want || misplaced != 0 {
		t.Errorf("notes: %d rows (want %d), %d on a shard that does not own them", total, want, misplaced)
	}
}
