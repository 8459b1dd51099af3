package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/topology"
)

// refLoad writes two reference tables through the proxy until stopped:
// `countries` (primary key: replicated logically by the sync) from several
// unpaced connections, and `tags` (no primary key: copied and corrected)
// from one connection at a moderate pace. Each connection writes its own
// rows (inserts, increments, deletes), so the acknowledged end state of
// every row is known.
type refLoad struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	writes atomic.Int64
	errs   atomic.Int64
	first  atomic.Value
	// countries and tags: per writer, row key → acknowledged counter
	// (absent: deleted or never written). Read after stop only.
	countries []map[string]int
	tags      map[string]int
}

const refSyncSchema = `CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL, n int NOT NULL DEFAULT 0);
CREATE TABLE tags (label text NOT NULL, hits int NOT NULL);
INSERT INTO countries (code, name) SELECT 'c' || g, 'country ' || g FROM generate_series(1, 30000) g;
INSERT INTO tags SELECT 'seed' || g, 0 FROM generate_series(1, 3000) g`

func startRefLoad(t *testing.T, ctx context.Context, dsn string, writers int) *refLoad {
	l := &refLoad{stop: make(chan struct{}), countries: make([]map[string]int, writers), tags: map[string]int{}}
	fail := func(err error) {
		l.errs.Add(1)
		l.first.CompareAndSwap(nil, err.Error())
	}
	for w := 0; w < writers; w++ {
		acked := map[string]int{}
		l.countries[w] = acked
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close(context.Background())
			for i := 1; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				code := fmt.Sprintf("w%d_%d", w, i)
				var stmt string
				var args []any
				switch {
				case i%5 == 0: // delete an earlier row of this writer
					code = fmt.Sprintf("w%d_%d", w, i-3)
					stmt, args = `DELETE FROM countries WHERE code = $1`, []any{code}
				case i%2 == 0: // increment one (not idempotent: applied twice shows)
					code = fmt.Sprintf("w%d_%d", w, i-1)
					stmt, args = `UPDATE countries SET n = n + 1 WHERE code = $1`, []any{code}
				default:
					stmt, args = `INSERT INTO countries (code, name) VALUES ($1, $2)`, []any{code, "written " + code}
				}
				tag, err := conn.Exec(ctx, stmt, args...)
				if err != nil {
					fail(fmt.Errorf("%s %v: %w (SQLSTATE %s)", stmt, args, err, sqlState(err)))
					continue
				}
				l.writes.Add(1)
				switch {
				case i%5 == 0:
					delete(acked, code)
				case i%2 == 0:
					if tag.RowsAffected() > 0 {
						acked[code]++
					}
				default:
					acked[code] = 0
				}
			}
		}()
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			fail(err)
			return
		}
		defer conn.Close(context.Background())
		for i := 1; ; i++ {
			if wait.Pause(l.stop, 5*time.Millisecond) {
				return
			}
			label := fmt.Sprintf("t%d", i)
			var stmt string
			switch {
			case i%7 == 0:
				label = fmt.Sprintf("t%d", i-5)
				stmt = `DELETE FROM tags WHERE label = $1`
			case i%2 == 0:
				label = fmt.Sprintf("t%d", i-1)
				stmt = `UPDATE tags SET hits = hits + 1 WHERE label = $1`
			default:
				stmt = `INSERT INTO tags VALUES ($1, 0)`
			}
			tag, err := conn.Exec(ctx, stmt, label)
			if err != nil {
				fail(fmt.Errorf("%s %s: %w (SQLSTATE %s)", stmt, label, err, sqlState(err)))
				continue
			}
			switch {
			case i%7 == 0:
				delete(l.tags, label)
			case i%2 == 0:
				if tag.RowsAffected() > 0 {
					l.tags[label]++
				}
			default:
				l.tags[label] = 0
			}
		}
	}()
	return l
}

func (l *refLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// refEnv is a proxy over all but the last shard of a cluster with the
// reference tables of refSyncSchema, whose last shard is added with its
// references syncing; controllers are started (and stopped, as a leader
// losing its leadership would be) by the test.
type refEnv struct {
	cluster *pgcluster.Cluster
	store   *topology.StaticStore
	proxy   *runningProxy
	env     *moveEnv // for its checks
	log     *slog.Logger
	t       *testing.T
}

func startRefEnv(t *testing.T, ctx context.Context, shards int) *refEnv {
	c := pgcluster.StartT(t, pgcluster.Options{Shards: shards})
	store, p, log := startMoveProxy(t, c, shards-1, 1)
	for _, tbl := range []string{"countries", "tags"} {
		if _, err := store.Apply(ctx, topology.ReferenceTable{Table: tbl}); err != nil {
			t.Fatal(err)
		}
	}
	pc := connectPgx(t, ctx, p.dsn("postgres"))
	for _, stmt := range strings.Split(refSyncSchema, ";\n") {
		if _, err := pc.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return &refEnv{cluster: c, store: store, proxy: p, env: &moveEnv{cluster: c, store: store, proxy: p}, log: log, t: t}
}

// controller starts a rebalance controller (the leader's) with the given
// hold timeout; stop ends it and waits until it has.
func (r *refEnv) controller(hold time.Duration) (ctrl *rebalance.Controller, stop func()) {
	return startController(r.t, r.store, hold, r.log)
}

// waitAbortedCutover waits until ctrl has aborted a reference cutover.
func waitAbortedCutover(t *testing.T, ctrl *rebalance.Controller) {
	t.Helper()
	waitFor(t, time.Minute, "an aborted reference cutover", func() bool {
		for _, s := range ctrl.ReferenceSyncs() {
			if s.Attempts >= 1 {
				return true
			}
		}
		return false
	})
}

// addSyncingShard adds the cluster's last shard with its references
// syncing.
func (r *refEnv) addSyncingShard(ctx context.Context) string {
	sh := r.cluster.Shards[len(r.cluster.Shards)-1]
	if _, err := r.store.Apply(ctx, topology.AddShard{Shard: topology.Shard{Name: sh.Name, Primary: sh.Primary.Addr(),
		References: topology.ReferencesSyncing}}); err != nil {
		r.t.Fatal(err)
	}
	return sh.Name
}

// check asserts what a user expects after the sync: no write failed,
// both shards hold identical reference tables containing every
// acknowledged write, and (within a deadline: the slot and publication go
// right after the shard is ready) no replication object left anywhere.
func (r *refEnv) check(ctx context.Context, l *refLoad) {
	t := r.t
	if n := l.errs.Load(); n > 0 {
		t.Errorf("%d reference writes failed, first: %v", n, l.first.Load())
	}
	for _, table := range []string{"countries", "tags"} {
		var sums []string
		for _, sh := range r.cluster.Shards {
			conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
			var rows int
			var sum string
			var xor int64
			if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(hashtextextended(x::text, 0)), 0)::text, coalesce(bit_xor(hashtextextended(x::text, 0)), 0) FROM `+table+` x`).
				Scan(&rows, &sum, &xor); err != nil {
				t.Fatalf("%s: %v", sh.Name, err)
			}
			sums = append(sums, fmt.Sprintf("%d rows, checksum %s/%d", rows, sum, xor))
			var missing, extra int
			if table == "countries" {
				for _, acked := range l.countries {
					m, e := ackedMismatch(ctx, t, conn, `SELECT n FROM countries WHERE code = $1`, acked)
					missing, extra = missing+m, extra+e
				}
				var written int
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM countries WHERE code LIKE 'w%'`).Scan(&written); err != nil {
					t.Fatal(err)
				}
				want := 0
				for _, acked := range l.countries {
					want += len(acked)
				}
				if written != want {
					t.Errorf("%s: %d rows written by the load in countries, %d acknowledged and not deleted", sh.Name, written, want)
				}
			} else {
				missing, extra = ackedMismatch(ctx, t, conn, `SELECT hits FROM tags WHERE label = $1`, l.tags)
			}
			if missing+extra > 0 {
				t.Errorf("%s.%s: %d acknowledged rows missing, %d with another value", sh.Name, table, missing, extra)
			}
			conn.Close(ctx)
		}
		if sums[0] != sums[1] {
			t.Errorf("reference table %s differs between shards: %s vs %s", table, sums[0], sums[1])
		} else {
			t.Logf("%s on both shards: %s", table, sums[0])
		}
	}
	r.waitNoReplication(ctx)
}

// waitNoReplication waits (30 s at most) until no shard has a replication
// slot, publication or subscription, then asserts it.
func (r *refEnv) waitNoReplication(ctx context.Context) {
	left := func() int {
		n := 0
		for _, sh := range r.cluster.Shards {
			conn, err := pgx.Connect(ctx, sh.Primary.DSN("postgres"))
			if err != nil {
				return -1
			}
			var k int
			err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication) +
				(SELECT count(*) FROM pg_subscription)`).Scan(&k)
			conn.Close(ctx)
			if err != nil {
				return -1
			}
			n += k
		}
		return n
	}
	wait.For(30*time.Second, func() bool { return left() == 0 })
	r.env.assertNoReplicationLeft(r.t)
}

// ackedMismatch counts the acknowledged rows (key → value) that q (one
// value by key) does not find (missing) or finds with another value.
func ackedMismatch(ctx context.Context, t *testing.T, conn *pgx.Conn, q string, acked map[string]int) (missing, other int) {
	for k, v := range acked {
		var got int
		if err := conn.QueryRow(ctx, q, k).Scan(&got); err == pgx.ErrNoRows {
			missing++
		} else if err != nil {
			t.Fatal(err)
		} else if got != v {
			other++
		}
	}
	return missing, other
}

func logRefSyncs(t *testing.T, ctrl *rebalance.Controller) []rebalance.ReferenceSync {
	syncs := ctrl.ReferenceSyncs()
	for _, s := range syncs {
		t.Logf("reference sync of %s: %s from %s, %d tables (%d replicated), %d rows copied, hold %.1f ms, %d aborted cutovers, step %q, last error %q",
			s.Shard, s.State, s.Source, s.Tables, s.Replicated, s.RowsCopied, s.HoldMS, s.Attempts, s.Step, s.LastError)
	}
	return syncs
}

// TestRebalanceReferenceSyncUnderWriteLoad adds a shard while four
// connections write a 30,000-row reference table with a primary key as
// fast as they can (and one writes a table without one at a moderate
// pace): the sync must finish within a deadline with a hold under its
// timeout (the primary-key table is replicated logically, so the hold
// waits only for the writes since the precheck), no write may fail, both
// shards must end identical with every acknowledged write, and no slot,
// publication or subscription may be left.
func TestRebalanceReferenceSyncUnderWriteLoad(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	r := startRefEnv(t, ctx, 2)
	ctrl, _ := r.controller(2 * time.Second)
	l := startRefLoad(t, ctx, r.proxy.dsn("postgres"), 4)
	waitFor(t, 30*time.Second, "reference writes through the proxy", func() bool { return l.writes.Load() >= 200 })

	shard := r.addSyncingShard(ctx)
	started, before := time.Now(), l.writes.Load()
	if !r.env.watchTopology(2*time.Minute, func(s *topology.Snapshot) bool { sh, _ := s.Shard(shard); return sh.ReferencesReady() }) {
		logRefSyncs(t, ctrl)
		l.halt()
		t.Fatalf("shard %s did not get its reference tables within 2 minutes under the write load", shard)
	}
	took, during := time.Since(started), l.writes.Load()-before
	// More writes with the new shard in use (broadcast to it as well).
	atReady := l.writes.Load()
	waitFor(t, 30*time.Second, "reference writes after the sync", func() bool { return l.writes.Load() >= atReady+500 })
	l.halt()
	syncs := logRefSyncs(t, ctrl)
	t.Logf("sync took %s under %d reference writes (%.0f/s)", took.Round(time.Millisecond), during, float64(during)/took.Seconds())
	if len(syncs) != 1 || syncs[0].Replicated != 1 || syncs[0].Tables != 2 {
		t.Errorf("want one sync of 2 tables, 1 replicated (countries has a primary key, tags none): %+v", syncs)
	} else if syncs[0].HoldMS <= 0 || syncs[0].HoldMS >= 2000 {
		t.Errorf("hold %.1f ms, want within the 2 s timeout", syncs[0].HoldMS)
	}
	r.check(ctx, l)
}

// TestRebalanceReferenceSyncResumesAfterLeaderChange: a first controller
// (leader) whose hold timeout is too short for any cutover keeps aborting
// with the subscription in place; it then stops (leadership lost) and a
// second one, with a normal timeout, resumes from the topology's state and
// finishes the sync under the same write load: no write fails, the shards
// end identical, nothing is left on any shard.
func TestRebalanceReferenceSyncResumesAfterLeaderChange(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	r := startRefEnv(t, ctx, 2)
	first, stopFirst := r.controller(time.Millisecond)
	l := startRefLoad(t, ctx, r.proxy.dsn("postgres"), 2)
	waitFor(t, 30*time.Second, "reference writes through the proxy", func() bool { return l.writes.Load() >= 100 })
	shard := r.addSyncingShard(ctx)
	waitAbortedCutover(t, first)
	logRefSyncs(t, first)
	stopFirst()
	// The subscription the first leader made is still there for the next.
	conn := connectPgx(t, ctx, r.cluster.Shards[1].Primary.DSN("postgres"))
	var subs int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_subscription`).Scan(&subs); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d subscriptions on %s when the first leader stopped", subs, shard)
	// What a crashed leader's sync for a shard no longer syncing would
	// leave: the next leader's sweep must drop it.
	src := connectPgx(t, ctx, r.cluster.Shards[0].Primary.DSN("postgres"))
	for _, stmt := range []string{
		`CREATE PUBLICATION shardproxy_ref_gone_00000000 FOR TABLE countries`,
		`SELECT pg_create_logical_replication_slot('shardproxy_ref_gone_00000000', 'pgoutput')`,
	} {
		if _, err := src.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	second, _ := r.controller(2 * time.Second)
	if !r.env.watchTopology(2*time.Minute, func(s *topology.Snapshot) bool { sh, _ := s.Shard(shard); return sh.ReferencesReady() }) {
		logRefSyncs(t, second)
		l.halt()
		t.Fatalf("shard %s did not get its reference tables after the leader change", shard)
	}
	atReady := l.writes.Load()
	waitFor(t, 30*time.Second, "reference writes after the sync", func() bool { return l.writes.Load() >= atReady+300 })
	l.halt()
	logRefSyncs(t, second)
	r.check(ctx, l)
}

// TestRebalanceReferenceSyncShardRemovedWhileSyncing: a shard removed from
// the topology while its reference sync replicates (its cutovers keep
// aborting: the hold timeout is too short) has the sync's subscription,
// slot and publication dropped; the writes through the proxy never fail.
func TestRebalanceReferenceSyncShardRemovedWhileSyncing(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	// Three shards, so that the topology stays sharded after the removal
	// and this test is about the sync (a removal down to one shard under
	// extended-protocol writes is TestTopologyShardCountCrossesOne's).
	r := startRefEnv(t, ctx, 3)
	ctrl, _ := r.controller(time.Millisecond)
	l := startRefLoad(t, ctx, r.proxy.dsn("postgres"), 2)
	shard := r.addSyncingShard(ctx)
	waitAbortedCutover(t, ctrl)
	conn := connectPgx(t, ctx, r.cluster.Shards[2].Primary.DSN("postgres"))
	var subs int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_subscription`).Scan(&subs); err != nil || subs != 1 {
		t.Fatalf("want the sync's subscription on %s while it syncs: %d (%v)", shard, subs, err)
	}
	if _, err := r.store.Apply(ctx, topology.RemoveShard{Name: shard}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the sync to end", func() bool {
		for _, s := range ctrl.ReferenceSyncs() {
			if s.Finished != nil {
				return true
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "more reference writes", func() bool { return l.writes.Load() >= 300 })
	l.halt()
	logRefSyncs(t, ctrl)
	if n := l.errs.Load(); n > 0 {
		t.Errorf("%d reference writes failed, first: %v", n, l.first.Load())
	}
	r.waitNoReplication(ctx)
}
