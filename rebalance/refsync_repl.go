package rebalance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/topology"
)

// Logical replication of reference tables to a shard being synced (see the
// design comment in refsync.go). One publication (source), slot (source)
// and subscription (new shard) per database, all named
// refReplicationName(shard, db); the move helpers do the rest (slotLag,
// fence, waitConfirmed, differingBuckets, verify, dropSlot).

// refReplicationName is the name of the publication, subscription and slot
// that give shard the reference tables of database db.
func refReplicationName(shard, db string) string {
	return replicationNameWith(refReplicationPrefix, shard, db)
}

// refReplicationPrefix starts the name of every reference sync's
// publication, slot and subscription (and of nothing else).
const refReplicationPrefix = "shardproxy_ref_"

// refAwaitStep is how long one syncing step waits for its subscriptions
// to finish their initial copy and catch up before it reports progress
// and checks the definitions again.
const refAwaitStep = 5 * time.Second

// splitByIdentity splits defs (tables on sconn, the source) into those
// logical replication can keep in step without affecting the source —
// plain tables whose replica identity is usable (a primary key, an index
// or FULL) — and the others, which are copied.
func splitByIdentity(ctx context.Context, sconn *pgx.Conn, defs []tableDef) (replicated, copies []tableDef, err error) {
	for _, d := range defs {
		var ok bool
		err := sconn.QueryRow(ctx, `SELECT c.relkind = 'r' AND (c.relreplident = 'f'
				OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
				OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
			FROM pg_class c WHERE c.oid = to_regclass($1)`, qualified(d.Name)).Scan(&ok)
		if err != nil {
			return nil, nil, fmt.Errorf("replica identity of %s: %w", d.Name, err)
		}
		if ok {
			replicated = append(replicated, d)
		} else {
			copies = append(copies, d)
		}
	}
	return replicated, copies, nil
}

// ensureReplication makes sure d's replicated tables are replicated from
// the source (src, on sconn) to the new shard (tconn) by a subscription
// made for exactly those tables and that source; otherwise it drops what
// exists and starts afresh: the tables emptied on the new shard, a
// publication (insert, update, delete, truncate) on the source, a
// subscription with copy_data on the new shard. With no replicated tables
// it drops any replication left.
func (w *refWorker) ensureReplication(ctx context.Context, sconn, tconn *pgx.Conn, src, db string, d *refDB) error {
	if len(d.replicated) == 0 {
		if err := dropSubscription(ctx, tconn, d.name); err != nil {
			return err
		}
		return dropPublication(ctx, sconn, d.name)
	}
	conninfo := w.c.opts.Conninfo(src, db)
	var subConn string
	err := tconn.QueryRow(ctx, `SELECT subconninfo FROM pg_subscription
		WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, d.name).Scan(&subConn)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	var want []string
	for _, t := range d.replicated {
		want = append(want, schemaOf(t.Name)+"."+tableOf(t.Name))
	}
	slices.Sort(want)
	if exists && subConn == conninfo {
		var published []string
		var slot bool
		if err := sconn.QueryRow(ctx, `SELECT coalesce((SELECT array_agg(schemaname || '.' || tablename ORDER BY 1) FROM pg_publication_tables WHERE pubname = $1), '{}'),
				EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, d.name).Scan(&published, &slot); err != nil {
			return err
		}
		slices.Sort(published)
		if slot && slices.Equal(published, want) {
			return nil
		}
	}
	if err := dropSubscription(ctx, tconn, d.name); err != nil {
		return err
	}
	if err := dropPublication(ctx, sconn, d.name); err != nil {
		return err
	}
	d.suspects, d.rows = nil, nil
	// Rows already there come from an earlier attempt; the subscription's
	// copy starts from nothing.
	if err := inTargetTx(ctx, tconn, func() error {
		for _, t := range deleteOrder(d.replicated) {
			if _, err := tconn.Exec(ctx, "DELETE FROM "+qualified(t.Name)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	var items []string
	for _, t := range d.replicated {
		items = append(items, qualified(t.Name))
	}
	// Truncate too: a reference table is the same table on every shard,
	// so a TRUNCATE broadcast to the others empties it here as well.
	if _, err := sconn.Exec(ctx, "CREATE PUBLICATION "+quoteIdent(d.name)+" FOR TABLE "+strings.Join(items, ", ")+
		" WITH (publish = 'insert, update, delete, truncate')"); err != nil {
		return fmt.Errorf("creating the publication on the source: %w", err)
	}
	if _, err := tconn.Exec(ctx, "CREATE SUBSCRIPTION "+quoteIdent(d.name)+" CONNECTION "+quoteLiteral(conninfo)+
		" PUBLICATION "+quoteIdent(d.name)+" WITH (slot_name = "+quoteLiteral(d.name)+", copy_data = true, create_slot = true, streaming = on)"); err != nil {
		return fmt.Errorf("creating the subscription on the new shard: %w", err)
	}
	w.c.log.Info("reference tables replicating", "shard", w.shard, "database", db, "tables", len(d.replicated))
	return nil
}

// awaitReplication waits (at most refAwaitStep) until d's subscription has
// copied every table and its slot lags less than Options.LagThreshold, then
// prechecks (once per cutover attempt). It notes in st the lag, and what it
// still waits for when it returns before that.
func (w *refWorker) awaitReplication(ctx context.Context, sconn, tconn *pgx.Conn, d *refDB, st *dbSync) error {
	if d.rows == nil {
		d.rows = map[string]int64{}
	}
	give := time.Now().Add(refAwaitStep)
	for {
		copied := 0
		for _, t := range d.replicated {
			if _, ok := d.rows[t.Name]; ok {
				copied++
				continue
			}
			var state string
			err := tconn.QueryRow(ctx, `SELECT r.srsubstate::text FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
				WHERE s.subname = $1 AND r.srrelid = to_regclass($2)`, d.name, qualified(t.Name)).Scan(&state)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if state != "r" {
				continue
			}
			var n int64
			if err := tconn.QueryRow(ctx, "SELECT count(*) FROM "+qualified(t.Name)).Scan(&n); err != nil {
				return err
			}
			d.rows[t.Name] = n
			copied++
		}
		lag, err := slotLag(ctx, sconn, d.name)
		if err != nil {
			return err
		}
		st.lag = lag
		switch {
		case copied < len(d.replicated):
			st.waiting = fmt.Sprintf("initial copy: %d of %d tables", copied, len(d.replicated))
		case lag > w.c.opts.LagThreshold:
			st.waiting = fmt.Sprintf("catching up: %d bytes behind", lag)
		default:
			st.waiting = ""
			if d.suspects != nil {
				return nil
			}
			return w.precheck(ctx, sconn, tconn, d)
		}
		if time.Now().After(give) || !sleepCtx(ctx, w.c.opts.Poll) {
			return ctx.Err()
		}
	}
}

// precheck compares d's replicated tables on the source and the new shard
// per bucket of a whole-row hash outside the hold, as a move's precheck
// does (buckets that differ are compared again after the new shard
// replayed past the source's position), and records the buckets still
// differing for the cutover, which checksums only those (and counts every
// table). See docs/rebalance.md, "Verification", for why that loses no
// acknowledged write.
func (w *refWorker) precheck(ctx context.Context, sconn, tconn *pgx.Conn, d *refDB) error {
	started := time.Now()
	if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
		return err
	}
	suspects := map[string][]int{}
	left := 0
	for _, t := range d.replicated {
		var only []int // nil: every bucket
		var err error
		for pass := 0; pass < precheckPasses && (pass == 0 || len(only) > 0); pass++ {
			if pass > 0 {
				if err := replayedNow(ctx, sconn, d.name); err != nil {
					return err
				}
			}
			if only, err = differingBuckets(ctx, sconn, tconn, t, "true", only); err != nil {
				return fmt.Errorf("prechecking %s: %w", t.Name, err)
			}
		}
		suspects[t.Name] = only
		left += len(only)
	}
	d.suspects = suspects
	w.c.log.Info("reference tables prechecked", "shard", w.shard, "took", time.Since(started), "buckets_left_for_the_hold", left)
	return nil
}

// dropSubscription drops subscription name of conn's database if it
// exists, without reaching its publisher for the main slot (disabled and
// detached from its slot first; dropPublication drops the slot on the
// source). Dropping stops its apply worker before it returns.
func dropSubscription(ctx context.Context, conn *pgx.Conn, name string) error {
	var enabled, hasSlot bool
	err := conn.QueryRow(ctx, `SELECT subenabled, subslotname IS NOT NULL FROM pg_subscription
		WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name).Scan(&enabled, &hasSlot)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if enabled {
		if _, err := conn.Exec(ctx, "ALTER SUBSCRIPTION "+quoteIdent(name)+" DISABLE"); err != nil {
			return fmt.Errorf("disabling subscription %s: %w", name, err)
		}
	}
	if hasSlot {
		if _, err := conn.Exec(ctx, "ALTER SUBSCRIPTION "+quoteIdent(name)+" SET (slot_name = NONE)"); err != nil {
			return fmt.Errorf("detaching subscription %s from its slot: %w", name, err)
		}
	}
	if _, err := conn.Exec(ctx, "DROP SUBSCRIPTION IF EXISTS "+quoteIdent(name)); err != nil {
		return fmt.Errorf("dropping subscription %s: %w", name, err)
	}
	return nil
}

// dropPublication drops the slot and the publication name on conn (a
// source) if they exist.
func dropPublication(ctx context.Context, conn *pgx.Conn, name string) error {
	if err := dropSlot(ctx, conn, name); err != nil {
		return err
	}
	if err := dropPublicationOnly(ctx, conn, name); err != nil {
		return fmt.Errorf("dropping publication %s: %w", name, err)
	}
	return nil
}

// dropRefReplication drops reference sync name of database db: the
// subscription on dst, the slot and publication on src. It tries both
// servers even when one cannot be reached.
func (c *Controller) dropRefReplication(ctx context.Context, src, dst, db, name string) error {
	var errs []error
	if dst != "" {
		if conn, err := c.opts.Connect(ctx, dst, db); err != nil {
			errs = append(errs, fmt.Errorf("new shard: %w", err))
		} else {
			errs = append(errs, dropSubscription(ctx, conn, name))
			conn.Close(context.WithoutCancel(ctx))
		}
	}
	if conn, err := c.opts.Connect(ctx, src, db); err != nil {
		errs = append(errs, fmt.Errorf("source: %w", err))
	} else {
		errs = append(errs, dropPublication(ctx, conn, name))
		conn.Close(context.WithoutCancel(ctx))
	}
	return errors.Join(errs...)
}

// release drops the replication of every database of the sync (after
// ready: the slots and publications; for a shard removed from the
// topology: also its subscriptions, if its server still answers), a few
// times on failure, then sweeps what no sync uses (which also covers what
// could not be dropped now, at the next sweep).
func (w *refWorker) release(ctx context.Context, gone bool) {
	for db, d := range w.dbs {
		if d.srcAddr == "" {
			continue
		}
		for attempt := 1; ; attempt++ {
			err := w.c.dropRefReplication(ctx, d.srcAddr, d.dstAddr, db, d.name)
			if err == nil {
				break
			}
			if attempt == 3 || !sleepCtx(ctx, time.Duration(attempt)*time.Second) {
				w.c.log.Warn("could not drop a reference sync's replication; the next sweep will", "shard", w.shard, "database", db, "shard_removed", gone, "err", err)
				break
			}
		}
	}
	w.dbs = nil
	w.c.sweepReferenceReplication(ctx)
}

// sweepReferenceReplication drops, on every shard of the topology that is
// not offline, the reference-sync subscriptions, slots and publications
// that no sync in progress uses: a sync uses its subscription on the shard
// being synced and its slot and publication on refSource. It runs when a
// controller starts (a new leader: whatever a crash or an older leader
// left) and when a sync ends. Failures are logged; the next sweep retries.
func (c *Controller) sweepReferenceReplication(ctx context.Context) {
	for _, sh := range c.opts.Store.Current().Shards() {
		if sh.State == topology.ShardOffline {
			continue
		}
		dbs, err := c.databases(ctx, sh.Primary)
		if err != nil {
			c.log.Warn("reference replication sweep: listing databases", "shard", sh.Name, "err", err)
			continue
		}
		for _, db := range dbs {
			if err := c.sweepDB(ctx, sh.Name, sh.Primary, db); err != nil && ctx.Err() == nil {
				c.log.Warn("reference replication sweep", "shard", sh.Name, "database", db, "err", err)
			}
		}
	}
}

// sweepDB is sweepReferenceReplication for database db of shard (at addr).
func (c *Controller) sweepDB(ctx context.Context, shard, addr, db string) error {
	conn, err := c.opts.Connect(ctx, addr, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT 'subscription', subname::text FROM pg_subscription
			WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND starts_with(subname::text, $1)
		UNION ALL SELECT 'slot', slot_name::text FROM pg_replication_slots WHERE database = current_database() AND starts_with(slot_name::text, $1)
		UNION ALL SELECT 'publication', pubname::text FROM pg_publication WHERE starts_with(pubname::text, $1)`, refReplicationPrefix)
	if err != nil {
		return err
	}
	type object struct{ kind, name string }
	var found []object
	var o object
	if _, err := pgx.ForEachRow(rows, []any{&o.kind, &o.name}, func() error { found = append(found, o); return nil }); err != nil || len(found) == 0 {
		return err
	}
	// What syncs in progress use here, from the topology as it is now.
	snap := c.opts.Store.Current()
	inUse := map[object]bool{}
	for _, x := range snap.Shards() {
		if x.ReferencesReady() {
			continue
		}
		name := refReplicationName(x.Name, db)
		if x.Name == shard {
			inUse[object{"subscription", name}] = true
		}
		if s, ok := refSource(snap, x.Name); ok && s.Name == shard {
			inUse[object{"slot", name}], inUse[object{"publication", name}] = true, true
		}
	}
	var errs []error
	for _, o := range found {
		if inUse[o] {
			continue
		}
		c.log.Info("dropping a reference sync's replication no sync uses", "shard", shard, "database", db, "kind", o.kind, "name", o.name)
		switch o.kind {
		case "subscription":
			errs = append(errs, dropSubscription(ctx, conn, o.name))
		case "slot":
			errs = append(errs, dropSlot(ctx, conn, o.name))
		case "publication":
			errs = append(errs, dropPublicationOnly(ctx, conn, o.name))
		}
	}
	return errors.Join(errs...)
}
