package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/topology"
)

// TestRebalanceNewShardGetsReferenceTablesAndSequences adds a shard to a
// topology with a reference table while a client writes that table through
// the proxy, and moves every range of a distribution to it at once:
//
//   - the new shard is given the reference table (schema, rows, sequence)
//     before it is used: no reference write fails while it syncs (before,
//     the broadcast reached the new shard, which had no such table), none
//     is lost, and afterwards every shard holds the same rows;
//   - the move to the new shard waits until its references are ready;
//   - reads of the reference table in a transaction pinned to the new
//     shard, and joins of it with moved rows there, see every row;
//   - after the move, inserts into the moved rows that take a non-key
//     column from a sequence do not collide with the rows moved in (the
//     target's sequence was advanced past the source's at the cutover).
func TestRebalanceNewShardGetsReferenceTablesAndSequences(t *testing.T) {
	e := startMoveEnv(t, 2, 1, 1, 2*time.Second)
	ctx := testCtx(t, 3*time.Minute)
	for _, c := range []topology.Command{
		topology.ReferenceTable{Table: "countries"},
		topology.DistributeTable{Table: "items", KeyColumn: "owner_id", Distribution: "users"},
	} {
		if _, err := e.store.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	pc := connectPgx(t, ctx, e.proxy.dsn("postgres"))
	const seededCountries, owners, itemsPerOwner = 30000, 50, 4
	for _, stmt := range []string{
		`CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL, seq bigserial NOT NULL, upper_name text GENERATED ALWAYS AS (upper(name)) STORED)`,
		`CREATE INDEX countries_name_idx ON countries (name)`,
		`CREATE TABLE items (owner_id bigint NOT NULL, n bigserial NOT NULL, body text, PRIMARY KEY (owner_id, n))`,
		fmt.Sprintf(`INSERT INTO countries (code, name) SELECT 'c' || g, 'country ' || g FROM generate_series(1, %d) g`, seededCountries),
		fmt.Sprintf(`INSERT INTO users SELECT g, 'user' || g, 0 FROM generate_series(1, %d) g`, owners),
	} {
		if _, err := pc.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for k := 0; k < itemsPerOwner; k++ {
		for o := 1; o <= owners; o++ {
			if _, err := pc.Exec(ctx, `INSERT INTO items (owner_id, body) VALUES ($1, 'before')`, o); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A client writing the reference table through the proxy: inserts new
	// countries and renames earlier ones; names holds what was acknowledged.
	stop := make(chan struct{})
	names := map[string]string{}
	var writeErrs []error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, e.proxy.dsn("postgres"))
		if err != nil {
			writeErrs = append(writeErrs, err)
			return
		}
		defer conn.Close(context.Background())
		for i := 1; ; i++ {
			// A steady stream (a few hundred writes a second at most):
			// reference tables are read far more than written. The
			// unpaced case (several connections as fast as they can) is
			// TestRebalanceReferenceSyncUnderWriteLoad.
			if wait.Pause(stop, 2*time.Millisecond) {
				return
			}
			code, name := fmt.Sprintf("w%d", i), fmt.Sprintf("written %d", i)
			if _, err := conn.Exec(ctx, `INSERT INTO countries (code, name) VALUES ($1, $2)`, code, name); err != nil {
				writeErrs = append(writeErrs, fmt.Errorf("insert %s: %w", code, err))
				continue
			}
			names[code] = name
			if i%3 == 0 && i <= seededCountries {
				old := fmt.Sprintf("c%d", i)
				if _, err := conn.Exec(ctx, `UPDATE countries SET name = name || ' renamed' WHERE code = $1`, old); err != nil {
					writeErrs = append(writeErrs, fmt.Errorf("update %s: %w", old, err))
					continue
				}
				names[old] = fmt.Sprintf("country %d renamed", i)
			}
		}
	}()
	// Let some writes happen before the shard is added.
	waitFor(t, 30*time.Second, "reference writes through the proxy", func() bool {
		var n int
		return pc.QueryRow(ctx, `SELECT count(*) FROM countries WHERE code LIKE 'w%'`).Scan(&n) == nil && n >= 20
	})

	// Watch that the move does not leave pending before the new shard's
	// references are ready, and that the shard went through the sync.
	newShard := e.cluster.Shards[1].Name
	var sawSyncing, movedEarly bool
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for s := range e.store.Watch(watchCtx) {
			sh, ok := s.Shard(newShard)
			if !ok {
				continue
			}
			if !sh.ReferencesReady() {
				sawSyncing = true
				for _, m := range s.Moves() {
					if m.To == newShard && m.State != topology.MovePending {
						movedEarly = true
					}
				}
			}
		}
	}()
	if _, err := e.store.Apply(ctx, topology.AddShard{Shard: topology.Shard{Name: newShard, Primary: e.cluster.Shards[1].Primary.Addr(),
		References: topology.ReferencesSyncing}}); err != nil {
		t.Fatal(err)
	}
	d := mustDist(t, e.store.Current(), "users")
	if _, err := e.ctrl.MoveRange(ctx, rebalance.MoveRequest{Distribution: "users", Lo: d.Ranges[0].Lo, Hi: d.Ranges[0].Hi, To: newShard}); err != nil {
		t.Fatal(err)
	}
	e.waitMovesDone(t, 2*time.Minute)
	if !e.watchTopology(time.Minute, func(s *topology.Snapshot) bool { sh, _ := s.Shard(newShard); return sh.ReferencesReady() }) {
		t.Fatalf("shard %s never got its reference tables: %+v", newShard, e.ctrl.ReferenceSyncs())
	}
	// Some more reference writes with the new shard in use.
	var atReady int
	if err := pc.QueryRow(ctx, `SELECT count(*) FROM countries WHERE code LIKE 'w%'`).Scan(&atReady); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "reference writes after the sync", func() bool {
		var c int
		return pc.QueryRow(ctx, `SELECT count(*) FROM countries WHERE code LIKE 'w%'`).Scan(&c) == nil && c >= atReady+20
	})
	close(stop)
	wg.Wait()
	stopWatch()
	<-watched
	for _, s := range e.ctrl.ReferenceSyncs() {
		t.Logf("reference sync of %s: %s from %s, %d tables, %d rows copied, hold %.1f ms, %d aborted cutovers, last error %q",
			s.Shard, s.State, s.Source, s.Tables, s.RowsCopied, s.HoldMS, s.Attempts, s.LastError)
	}
	if !sawSyncing {
		t.Error("the new shard was never recorded as syncing its reference tables")
	}
	if movedEarly {
		t.Error("a move to the new shard went past pending before its reference tables were ready")
	}
	if len(writeErrs) > 0 {
		t.Errorf("%d reference writes failed, first: %v", len(writeErrs), writeErrs[0])
	}
	t.Logf("%d reference rows written or renamed through the proxy", len(names))

	// Every shard holds the same reference rows, including every
	// acknowledged write and the sequence values.
	var sums []string
	for _, sh := range e.cluster.Shards {
		conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		var rows int
		var sum string
		if err := conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(hashtextextended(c::text, 0)), 0)::text FROM countries c`).Scan(&rows, &sum); err != nil {
			t.Fatalf("%s: %v", sh.Name, err)
		}
		sums = append(sums, fmt.Sprintf("%d rows, checksum %s", rows, sum))
		var missing int
		for code, name := range names {
			var got string
			if err := conn.QueryRow(ctx, `SELECT name FROM countries WHERE code = $1`, code).Scan(&got); err != nil || got != name {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d acknowledged reference writes missing or stale", sh.Name, missing)
		}
		conn.Close(ctx)
	}
	if sums[0] != sums[1] {
		t.Errorf("reference table differs between shards: %s vs %s", sums[0], sums[1])
	}

	// Reads of the reference table on the new shard: a transaction pinned
	// there by a key it now owns, and a join routed there by key.
	tx, err := pc.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var owner int64
	if err := tx.QueryRow(ctx, `SELECT id FROM users WHERE id = 1`).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	var pinnedCount, proxyCount int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM countries`).Scan(&pinnedCount); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pc.QueryRow(ctx, `SELECT count(*) FROM countries`).Scan(&proxyCount); err != nil {
		t.Fatal(err)
	}
	if pinnedCount != proxyCount || pinnedCount < seededCountries {
		t.Errorf("reference reads: %d rows in a transaction on %s, %d outside", pinnedCount, newShard, proxyCount)
	}
	var joined int
	if err := pc.QueryRow(ctx, `SELECT count(*) FROM items i JOIN countries c ON c.code = 'c' || i.n WHERE i.owner_id = 1`).Scan(&joined); err != nil {
		t.Fatalf("join of moved rows with the reference table: %v", err)
	}
	if joined != itemsPerOwner {
		t.Errorf("join of moved rows with the reference table on %s: %d rows, want %d", newShard, joined, itemsPerOwner)
	}

	// The moved rows' sequence column: new rows must not collide.
	for o := 1; o <= owners; o++ {
		if _, err := pc.Exec(ctx, `INSERT INTO items (owner_id, body) VALUES ($1, 'after')`, o); err != nil {
			t.Fatalf("insert into a moved owner's items after the move (sequence collision?): %v (SQLSTATE %s)", err, sqlState(err))
		}
	}
	var total, distinct int
	var minAfter, maxBefore int64
	if err := pc.QueryRow(ctx, `SELECT count(*), count(DISTINCT (owner_id, n)), coalesce(min(n) FILTER (WHERE body = 'after'), 0),
		coalesce(max(n) FILTER (WHERE body = 'before'), 0) FROM items`).Scan(&total, &distinct, &minAfter, &maxBefore); err != nil {
		t.Fatal(err)
	}
	if total != owners*(itemsPerOwner+1) || distinct != total || minAfter <= maxBefore {
		t.Errorf("items after the move: %d rows, %d distinct, new n from %d, moved n up to %d", total, distinct, minAfter, maxBefore)
	}
	e.assertNoReplicationLeft(t)
}
