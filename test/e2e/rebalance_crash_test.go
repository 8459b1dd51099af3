package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/topology"
)

// TestRebalanceSourceCrashDuringCatchup kills the source shard's
// PostgreSQL with SIGKILL (postmaster and every backend, walsender
// included: crash recovery on the next start) while a move is in catchup
// with a client inserting through the proxy, then starts it again: the
// move must end (done, or cancelled), every acknowledged row must be
// readable through the proxy exactly once, the shards together must hold
// no extra copies, and no slot, publication or subscription may be left.
func TestRebalanceSourceCrashDuringCatchup(t *testing.T) {
	sourceOutageDuringCatchup(t, "killed", func(ctx context.Context, source *pgcluster.Instance) error {
		if err := source.Kill(); err != nil {
			return err
		}
		return source.Start(ctx)
	})
}

// sourceOutageDuringCatchup moves 200,000 rows from the source shard while a
// client inserts through the proxy, calls disrupt on the source's
// PostgreSQL as soon as the move reaches catchup (the precheck is then
// running), and checks the outcome: the move ends done or cancelled, every
// seeded and acknowledged row is read once through the proxy, the shards
// hold no extra copy, nothing is left behind. outage names what disrupt
// does, for the log.
func sourceOutageDuringCatchup(t *testing.T, outage string, disrupt func(ctx context.Context, source *pgcluster.Instance) error) {
	t.Helper()
	e := startMoveEnv(t, 2, 1, 1, 2*time.Second)
	target := e.addShard(t, 1)
	ctx := testCtx(t, 2*time.Minute)
	const seeded = 200000
	source := e.cluster.Shards[0].Primary
	src := connectPgx(t, ctx, source.DSN("postgres"))
	if _, err := src.Exec(ctx, `INSERT INTO users SELECT g, 'user' || g, g % 100 FROM generate_series(1, $1::int) g`, seeded); err != nil {
		t.Fatal(err)
	}
	// Acknowledged commits must survive a crash: the harness runs
	// throwaway clusters with synchronous_commit=off.
	if _, err := src.Exec(ctx, `ALTER SYSTEM SET synchronous_commit = on`); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		t.Fatal(err)
	}
	src.Close(ctx)

	// One client inserting new users through the proxy; acked are the
	// inserts that got a success.
	stop := make(chan struct{})
	var acked []int64
	var failed int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for id := int64(seeded + 1); ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			if conn == nil || conn.IsClosed() {
				c, err := pgx.Connect(ctx, e.proxy.dsn("postgres"))
				if err != nil {
					failed++
					if wait.Pause(stop, 20*time.Millisecond) { // reconnect pacing
						return
					}
					continue
				}
				conn = c
			}
			if _, err := conn.Exec(ctx, `INSERT INTO users VALUES ($1, 'w', 1)`, id); err != nil {
				failed++
				continue
			}
			acked = append(acked, id)
		}
	}()

	d := mustDist(t, e.store.Current(), "users")
	rg := d.Ranges[0]
	id, err := e.ctrl.MoveRange(ctx, rebalance.MoveRequest{Distribution: "users", Lo: rg.Lo, Hi: rg.Hi, To: target})
	if err != nil {
		t.Fatal(err)
	}
	// Watch the store's versions to restart inside catchup (the precheck
	// of 200,000 rows keeps the move there for a while).
	if !e.watchTopology(time.Minute, func(s *topology.Snapshot) bool {
		m, ok := s.Move(id)
		if !ok || (m.State != topology.MovePending && m.State != topology.MoveCopying && m.State != topology.MoveCatchup) {
			t.Fatalf("the move left catchup before the restart (state %v, present %v)", m.State, ok)
		}
		return m.State == topology.MoveCatchup
	}) {
		t.Fatal("the move did not reach catchup within a minute")
	}
	if err := disrupt(ctx, source); err != nil {
		t.Fatal(err)
	}
	e.waitMovesDone(t, time.Minute)
	close(stop)
	wg.Wait()

	outcome := ""
	for _, p := range e.ctrl.Status() {
		if p.Move.ID == id {
			outcome = p.Phase
		}
	}
	if outcome != "done" && outcome != "cancelled" {
		t.Errorf("move ended %q, want done or cancelled", outcome)
	}
	t.Logf("move %s; %d inserts acknowledged, %d failed while the source was %s", outcome, len(acked), failed, outage)
	if len(acked) == 0 {
		t.Fatal("no insert was acknowledged")
	}

	pc := connectPgx(t, ctx, e.proxy.dsn("postgres"))
	var seededSeen, ackedSeen, ackedRows int64
	if err := pc.QueryRow(ctx, `SELECT count(*) FILTER (WHERE id <= $1), count(DISTINCT id) FILTER (WHERE id = ANY($2)), count(*) FILTER (WHERE id = ANY($2)) FROM users`,
		seeded, acked).Scan(&seededSeen, &ackedSeen, &ackedRows); err != nil {
		t.Fatal(err)
	}
	if seededSeen != seeded || ackedSeen != int64(len(acked)) || ackedRows != int64(len(acked)) {
		t.Errorf("through the proxy: %d of %d seeded users, %d of %d acknowledged inserts (%d rows)", seededSeen, seeded, ackedSeen, len(acked), ackedRows)
	}
	// No copy left behind: the shards together hold each user once.
	var total, distinct int64
	for _, sh := range e.cluster.Shards {
		conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		var n int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
		conn.Close(ctx)
	}
	if err := pc.QueryRow(ctx, `SELECT count(DISTINCT id) FROM users`).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if total != distinct {
		t.Errorf("the shards hold %d users rows for %d distinct users", total, distinct)
	}
	e.assertNoReplicationLeft(t)
}
