package rebalance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/topology"
)

// Reference sync: a shard added after the reference tables existed
// (topology.ReferencesSyncing) is given every reference table before the
// proxies use it for them, the way Citus replicates reference tables to a
// new node before it is used.
//
//	syncing → cutover → ready
//	            └──→ syncing (abort: hold timeout, failure, new leader)
//
// syncing: the tables (schema, indexes, sequences) are created on the new
// shard from a shard that holds them (the default shard if it can; see
// refSource), with no hold: reference writes go on to the other shards
// meanwhile. Then, per table, one of two ways to keep the copy in step:
//
//   - Tables with a usable replica identity (a primary key, a replica
//     identity index, or REPLICA IDENTITY FULL; plain tables, not
//     partitioned) are replicated logically, as moves are (refsync_repl.go):
//     a publication of those tables on the source, a subscription with
//     copy_data on the new shard, named refReplicationName(shard, db).
//     The step waits until every table finished its initial copy and the
//     slot lags less than Options.LagThreshold, then compares source and
//     target per bucket outside the hold (the move precheck) and records
//     the buckets that did not match for the cutover.
//   - Tables without one (publishing them would make the application's
//     UPDATEs and DELETEs on the source fail) are copied with COPY, then
//     corrected by passes that compare per bucket of a whole-row hash and
//     copy differing buckets again, repeated outside the hold until a pass
//     copies at most refPassBudget rows (or refConvergePasses passes), so
//     the hold only copies what changed during the last pass.
//
// cutover: every proxy holds broadcasts (reference writes, DDL;
// proxy/movehold.go); the source is fenced (transactions already writing
// end); the table definitions are compared; replicated tables: the new
// shard must confirm the fence's WAL position (milliseconds), then row
// counts and the checksums of the buckets the precheck left must agree;
// copied tables: one strict correction pass; sequences advanced; the
// subscriptions dropped (their apply workers stop, so the broadcasts the
// shard receives once ready are not applied twice); then the shard is
// marked ready in the step that ends the hold. The hold is bounded by the
// writes since the precheck and the last correction pass, plus one scan of
// the copied tables (count and hash), not by the replicated tables' size
// beyond a count(*). Failing or exceeding Options.HoldTimeout goes back to
// syncing with the subscriptions kept, so the next attempt starts caught up.
//
// Cleanup: after ready, the slot and publication on the source are dropped;
// a shard removed while syncing has its replication dropped by its worker;
// and every leader sweeps, when it starts and whenever a sync ends, every
// shard for reference-sync publications, slots and subscriptions that no
// syncing shard uses any more (sweepReferenceReplication), so a crash or a
// leader change at any point leaves nothing behind for long.

// ReferenceSync is the progress of one shard's reference sync.
type ReferenceSync struct {
	Shard  string `json:"shard"`
	State  string `json:"state"` // the shard's reference state, or "ready" when finished
	Source string `json:"source,omitempty"`
	Tables int    `json:"tables"`
	// Replicated of Tables are kept in step by logical replication; the
	// others are copied and corrected.
	Replicated int   `json:"replicated_tables"`
	RowsCopied int64 `json:"rows_copied"`
	// Step says what the sync is doing while syncing (initial copy,
	// catching up, correction passes, prechecked); LagBytes is the
	// replication lag of its slots.
	Step      string     `json:"step,omitempty"`
	LagBytes  int64      `json:"lag_bytes"`
	HoldMS    float64    `json:"hold_ms,omitempty"`
	Attempts  int        `json:"attempts,omitempty"` // cutovers aborted so far
	Started   time.Time  `json:"started"`
	Finished  *time.Time `json:"finished,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

func refSyncKey(shard string) string { return "references:" + shard }

// startReferenceSyncs starts a worker per shard whose references are not
// ready. Caller holds c.mu.
func (c *Controller) startReferenceSyncs(ctx context.Context, snap *topology.Snapshot, started func(key string, run func())) {
	for _, sh := range snap.Shards() {
		if sh.ReferencesReady() || c.running[refSyncKey(sh.Name)] {
			continue
		}
		if c.refs[sh.Name] == nil || c.refs[sh.Name].Finished != nil {
			c.refs[sh.Name] = &ReferenceSync{Shard: sh.Name, State: sh.References.String(), Started: time.Now()}
		}
		w := &refWorker{c: c, shard: sh.Name}
		started(refSyncKey(sh.Name), func() { w.run(ctx) })
	}
}

func (c *Controller) updateRefs(shard string, f func(p *ReferenceSync)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.refs[shard]
	if p == nil {
		p = &ReferenceSync{Shard: shard, Started: time.Now()}
		c.refs[shard] = p
	}
	f(p)
}

// ReferenceSyncs lists the reference syncs running and recently finished,
// by shard.
func (c *Controller) ReferenceSyncs() []ReferenceSync {
	snap := c.opts.Store.Current()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ReferenceSync
	for name, p := range c.refs {
		q := *p
		if sh, ok := snap.Shard(name); ok && q.Finished == nil {
			q.State = sh.References.String()
		}
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// awaitReferences returns once shard holds the reference tables (or is
// gone), noting in move id's progress that it waits.
func (c *Controller) awaitReferences(ctx context.Context, id, shard string) error {
	noted := false
	for {
		sh, ok := c.opts.Store.Current().Shard(shard)
		if !ok || sh.ReferencesReady() {
			if noted {
				c.update(id, func(p *Progress) { p.LastError = "" })
			}
			return nil
		}
		if !noted {
			noted = true
			c.update(id, func(p *Progress) {
				p.LastError = fmt.Sprintf("waiting for shard %s to receive the reference tables (references %s)", shard, sh.References)
			})
		}
		if !sleepCtx(ctx, c.opts.Poll) {
			return ctx.Err()
		}
	}
}

// refWorker runs the reference sync of one shard. It is owned by one
// goroutine.
type refWorker struct {
	c     *Controller
	shard string
	// cutoverAt/cutoverVersion: when and at which topology version this
	// worker started the cutover; a shard found in cutover without them is
	// rolled back to syncing (another leader started it).
	cutoverAt      time.Time
	cutoverVersion uint64
	source         string // shard copied from in this attempt
	// buckets is, per database and table, how many buckets a copied table
	// is compared in: about 2 rows each, so that a few changed rows make
	// few rows to copy again.
	buckets map[[2]string]int
	// copied marks the databases whose copied tables this worker copied
	// whole; a later pass only corrects them.
	copied map[string]bool
	// copiedRows counts the rows copied into copied tables so far.
	copiedRows int64
	// dbs is, per database, what the syncing step prepared for the
	// cutover (and, for cleanup, where its replication lives).
	dbs       map[string]*refDB
	attempts  int
	notBefore time.Time
}

// refDB is one database's part of a reference sync.
type refDB struct {
	name             string // publication = subscription = slot (refReplicationName)
	srcAddr, dstAddr string // servers of the publication/slot and of the subscription
	// replicated are the tables the subscription keeps in step, copies the
	// others (no usable replica identity).
	replicated, copies []tableDef
	// suspects is the precheck's result for the next cutover: table →
	// buckets that did not match yet (nil: not prechecked; the hold then
	// compares every row).
	suspects map[string][]int
	// rows counts the replicated tables' rows once their copy finished.
	rows map[string]int64
	// sconn and tconn are opened before the cutover starts, so that
	// connecting does not count against the hold; the cutover takes them.
	sconn, tconn *pgx.Conn
}

func (d *refDB) closeConns() {
	for _, c := range []*pgx.Conn{d.sconn, d.tconn} {
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.Close(ctx)
			cancel()
		}
	}
	d.sconn, d.tconn = nil, nil
}

func (w *refWorker) run(ctx context.Context) {
	defer func() {
		for _, d := range w.dbs {
			d.closeConns()
		}
	}()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		sh, ok := w.c.opts.Store.Current().Shard(w.shard)
		if !ok || sh.ReferencesReady() {
			w.c.updateRefs(w.shard, func(p *ReferenceSync) {
				if p.Finished == nil {
					now := time.Now()
					p.Finished, p.State, p.LastError, p.Step, p.LagBytes = &now, topology.ReferencesReady.String(), "", "", 0
					if !ok {
						p.State = "shard removed"
					}
				}
			})
			w.release(ctx, !ok)
			return
		}
		var err error
		switch sh.References {
		case topology.ReferencesSyncing:
			err = w.sync(ctx)
		case topology.ReferencesCutover:
			err = w.cutover(ctx)
		default:
			err = fmt.Errorf("unknown reference state %q", sh.References)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 200 * time.Millisecond
			continue
		}
		w.c.updateRefs(w.shard, func(p *ReferenceSync) { p.LastError = err.Error() })
		w.c.log.Warn("reference sync step failed; retrying", "shard", w.shard, "state", sh.References, "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// setRefs records the shard's next reference state; ok false when someone
// else changed it first.
func (w *refWorker) setRefs(ctx context.Context, from, to topology.ReferenceState) (*topology.Snapshot, error) {
	snap, err := w.c.opts.Store.Apply(ctx, topology.SetShardReferences{Shard: w.shard, From: from, To: to})
	if err != nil && errors.Is(err, topology.ErrInvalid) {
		if sh, ok := w.c.opts.Store.Current().Shard(w.shard); !ok || sh.References != from {
			return nil, nil
		}
	}
	return snap, err
}

// refSource returns the shard a shard being synced copies its reference
// tables from: the default shard when it holds them and is not offline,
// else the first such shard ("" if none). Deterministic for a snapshot, so
// that the sweep knows which publications are in use.
func refSource(snap *topology.Snapshot, shard string) (topology.Shard, bool) {
	names := append([]string{snap.DefaultShard()}, snap.ShardNames()...)
	for _, n := range names {
		if s, ok := snap.Shard(n); ok && n != shard && s.ReferencesReady() && s.State != topology.ShardOffline {
			return s, true
		}
	}
	return topology.Shard{}, false
}

// addrs returns the primaries of the shard to copy from (refSource) and of
// the new shard.
func (w *refWorker) addrs() (src, dst string, err error) {
	snap := w.c.opts.Store.Current()
	d, ok := snap.Shard(w.shard)
	if !ok {
		return "", "", fmt.Errorf("shard %s no longer exists", w.shard)
	}
	s, ok := refSource(snap, w.shard)
	if !ok {
		return "", "", fmt.Errorf("no shard holds the reference tables to copy them to %s", w.shard)
	}
	w.source = s.Name
	return s.Primary, d.Primary, nil
}

// referenceTables lists the reference tables of the topology.
func (w *refWorker) referenceTables() []string {
	var out []string
	for _, t := range w.c.opts.Store.Current().Tables() {
		if t.Kind == topology.Reference {
			out = append(out, t.Name)
		}
	}
	return out
}

// sync (syncing → cutover): create the reference tables on the new shard,
// start their replication or copy them, database by database, without
// holding anything; once every database is caught up (replication) and
// converged (copies), start the cutover. A step that is not there yet
// returns nil and runs again.
func (w *refWorker) sync(ctx context.Context) error {
	if wait := time.Until(w.notBefore); wait > 0 && !sleepCtx(ctx, wait) {
		return ctx.Err()
	}
	src, dst, err := w.addrs()
	if err != nil {
		return err
	}
	dbs, err := w.c.databases(ctx, src)
	if err != nil {
		return err
	}
	if w.dbs == nil {
		w.dbs = map[string]*refDB{}
	}
	tables := w.referenceTables()
	var rows, lag int64
	var count, replicated int
	var waiting []string
	moved := false
	for _, db := range dbs {
		d := w.dbs[db]
		if d == nil {
			d = &refDB{name: refReplicationName(w.shard, db)}
			w.dbs[db] = d
		}
		if d.srcAddr != "" && d.srcAddr != src {
			moved = true // the source changed: its old publication is the sweep's
		}
		st, err := w.syncDB(ctx, src, dst, db, d, tables)
		if err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
		count += st.tables
		replicated += len(d.replicated)
		w.copiedRows += st.copied
		rows += st.rows
		lag = max(lag, st.lag)
		if st.waiting != "" {
			waiting = append(waiting, db+": "+st.waiting)
		}
	}
	if moved {
		w.c.sweepReferenceReplication(ctx)
	}
	step := "prechecked; starting the cutover"
	if len(waiting) > 0 {
		step = strings.Join(waiting, "; ")
	}
	w.c.updateRefs(w.shard, func(p *ReferenceSync) {
		p.Source, p.Tables, p.Replicated, p.RowsCopied, p.LagBytes, p.Step = w.source, count, replicated, w.copiedRows+rows, lag, step
	})
	if len(waiting) > 0 {
		return nil
	}
	w.c.log.Info("reference tables in step; starting the cutover", "shard", w.shard, "source", w.source, "tables", count, "replicated", replicated, "rows", w.copiedRows+rows)
	if err := w.openCutoverConns(ctx, src, dst); err != nil {
		return err
	}
	snap, err := w.setRefs(ctx, topology.ReferencesSyncing, topology.ReferencesCutover)
	if err != nil || snap == nil {
		for _, d := range w.dbs {
			d.closeConns()
		}
		return err
	}
	w.cutoverAt, w.cutoverVersion = time.Now(), snap.Version()
	return nil
}

// openCutoverConns opens, per database with reference tables, the
// connections the next cutover uses.
func (w *refWorker) openCutoverConns(ctx context.Context, src, dst string) error {
	for db, d := range w.dbs {
		d.closeConns()
		if len(d.replicated)+len(d.copies) == 0 {
			continue
		}
		var err error
		if d.sconn, err = w.c.opts.Connect(ctx, src, db); err != nil {
			return err
		}
		if d.tconn, err = w.c.opts.Connect(ctx, dst, db); err != nil {
			d.closeConns()
			return err
		}
	}
	return nil
}

// dbSync is what one syncing pass over a database did.
type dbSync struct {
	tables  int
	copied  int64  // rows the copies took in this step (copy and corrections)
	rows    int64  // rows of the replicated tables whose initial copy finished
	lag     int64  // bytes the subscription's slot is behind
	waiting string // why the database is not ready for the cutover ("" when it is)
}

// syncDB brings database db's reference tables on the new shard (dst) in
// step with the source's: definitions created (a table whose definition
// differs on the new shard, e.g. after DDL sent while the sync ran, is
// dropped and created again, and the database's replication started
// afresh), replication started or checked, copies corrected until they
// converge, replication waited for and prechecked.
func (w *refWorker) syncDB(ctx context.Context, src, dst, db string, d *refDB, tables []string) (dbSync, error) {
	var st dbSync
	sconn, err := w.c.opts.Connect(ctx, src, db)
	if err != nil {
		return st, err
	}
	defer sconn.Close(context.WithoutCancel(ctx))
	defs, err := describeAll(ctx, sconn, tables)
	if err != nil {
		return st, err
	}
	if len(defs) == 0 {
		if d.srcAddr != "" {
			if err := w.c.dropRefReplication(ctx, d.srcAddr, d.dstAddr, db, d.name); err != nil {
				return st, err
			}
		}
		d.replicated, d.copies, d.srcAddr, d.dstAddr = nil, nil, "", ""
		return st, nil
	}
	st.tables = len(defs)
	if err := w.c.ensureDatabase(ctx, dst, db); err != nil {
		return st, err
	}
	tconn, err := w.c.opts.Connect(ctx, dst, db)
	if err != nil {
		return st, err
	}
	defer tconn.Close(context.WithoutCancel(ctx))
	d.srcAddr, d.dstAddr = src, dst
	replicated, copies, err := splitByIdentity(ctx, sconn, defs)
	if err != nil {
		return st, err
	}
	restart := false
	for _, def := range defs {
		same, exists, err := sameDefinition(ctx, tconn, def)
		if err != nil {
			return st, err
		}
		if same {
			continue
		}
		delete(w.copied, db)
		restart = true
		if exists {
			w.c.log.Warn("reference table differs on the new shard; creating it again", "shard", w.shard, "table", def.Name, "database", db)
			if err := dropSubscription(ctx, tconn, d.name); err != nil {
				return st, err
			}
			if _, err := tconn.Exec(ctx, "DROP TABLE "+qualified(def.Name)+" CASCADE"); err != nil {
				return st, err
			}
		}
	}
	if restart {
		// The subscription (if any) was made for other definitions.
		if err := dropSubscription(ctx, tconn, d.name); err != nil {
			return st, err
		}
		d.suspects, d.rows = nil, nil
	}
	if _, err := createOnTarget(ctx, tconn, defs); err != nil {
		return st, err
	}
	d.replicated, d.copies = replicated, copies
	if err := w.ensureReplication(ctx, sconn, tconn, src, db, d); err != nil {
		return st, err
	}
	if len(copies) > 0 {
		n, err := w.converge(ctx, sconn, tconn, db, copies)
		if err != nil {
			return st, err
		}
		st.copied += n
	}
	if len(replicated) > 0 {
		if err := w.awaitReplication(ctx, sconn, tconn, d, &st); err != nil {
			return st, err
		}
		for _, n := range d.rows {
			st.rows += n
		}
	}
	return st, nil
}

// converge gives the new shard database db's copied tables (copies): all
// their rows the first time, then correction passes until one copies at
// most refPassBudget rows (or refConvergePasses passes ran), so that the
// hold's strict pass finds only what changed during the last pass. It
// returns the rows copied.
func (w *refWorker) converge(ctx context.Context, sconn, tconn *pgx.Conn, db string, copies []tableDef) (int64, error) {
	var rows int64
	if !w.copied[db] {
		if err := w.copyAll(ctx, sconn, tconn, db, copies, &rows); err != nil {
			return rows, err
		}
		if w.copied == nil {
			w.copied = map[string]bool{}
		}
		w.copied[db] = true
	}
	if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
		return rows, err
	}
	w.withBuckets(db, copies)
	var n int64
	pass := 0
	for ; pass < refConvergePasses; pass++ {
		err := inTargetTx(ctx, tconn, func() error {
			var err error
			n, err = reconcile(ctx, sconn, tconn, copies, false)
			return err
		})
		if err != nil {
			return rows, err
		}
		rows += n
		if n <= refPassBudget {
			break
		}
	}
	w.c.log.Debug("reference copies corrected", "shard", w.shard, "database", db, "passes", pass+1, "last_pass_rows", n)
	return rows, nil
}

// copyAll replaces the rows of every table of defs on tconn with the
// source's, in one transaction, adding the rows copied to rows.
func (w *refWorker) copyAll(ctx context.Context, sconn, tconn *pgx.Conn, db string, defs []tableDef, rows *int64) error {
	return inTargetTx(ctx, tconn, func() error {
		for _, d := range deleteOrder(defs) {
			if _, err := tconn.Exec(ctx, "DELETE FROM "+qualified(d.Name)); err != nil {
				return err
			}
		}
		for _, d := range defs {
			n, err := copyRows(ctx, sconn, tconn, d, "true")
			if err != nil {
				return err
			}
			*rows += n
			w.setBuckets(db, d.Name, n)
		}
		return nil
	})
}

// describeAll describes the tables of names that exist on conn.
func describeAll(ctx context.Context, conn *pgx.Conn, names []string) ([]tableDef, error) {
	var defs []tableDef
	for _, name := range names {
		def, ok, err := describeTable(ctx, conn, name, "")
		if err != nil {
			return nil, fmt.Errorf("describing %s: %w", name, err)
		}
		if ok {
			defs = append(defs, def)
		}
	}
	return defs, nil
}

// sameDefinition reports whether table d exists on conn with the same
// columns, constraints, indexes and foreign keys.
func sameDefinition(ctx context.Context, conn *pgx.Conn, d tableDef) (same, exists bool, err error) {
	t, ok, err := describeTable(ctx, conn, d.Name, "")
	if err != nil || !ok {
		return false, ok, err
	}
	same = t.Create == d.Create && strings.Join(t.Indexes, ";") == strings.Join(d.Indexes, ";") && len(t.ForeignKeys) == len(d.ForeignKeys)
	return same, true, nil
}

// inTargetTx runs fn in a transaction on tconn with triggers and foreign
// key checks off (session_replication_role = replica, as logical
// replication applies rows): rows arrive table by table and bucket by
// bucket, complete only at the end.
func inTargetTx(ctx context.Context, tconn *pgx.Conn, fn func() error) error {
	if _, err := tconn.Exec(ctx, "BEGIN; SET LOCAL session_replication_role = replica"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = tconn.Exec(rctx, "ROLLBACK")
		return err
	}
	_, err := tconn.Exec(ctx, "COMMIT")
	return err
}

// copyRows copies the rows of table d matching where (SQL over alias t)
// from sconn to tconn with COPY, and returns how many. Generated columns
// are left to the target to compute.
func copyRows(ctx context.Context, sconn, tconn *pgx.Conn, d tableDef, where string) (int64, error) {
	var cols string
	if err := sconn.QueryRow(ctx, `SELECT coalesce(string_agg(quote_ident(attname), ', ' ORDER BY attnum), '') FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`, qualified(d.Name)).Scan(&cols); err != nil {
		return 0, err
	}
	if cols == "" {
		return 0, nil
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := sconn.PgConn().CopyTo(ctx, pw, "COPY (SELECT "+cols+" FROM "+qualified(d.Name)+" t WHERE "+where+") TO STDOUT")
		pw.CloseWithError(err)
		done <- err
	}()
	tag, err := tconn.PgConn().CopyFrom(ctx, pr, "COPY "+qualified(d.Name)+" ("+cols+") FROM STDIN")
	pr.CloseWithError(errors.New("copy into the target ended"))
	if serr := <-done; serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("copying %s: %w", d.Name, err)
	}
	return tag.RowsAffected(), nil
}

// cutover (cutover → ready): with every proxy holding broadcasts, fence the

// cutover (cutover → ready): with every proxy holding broadcasts, fence the
// source, make every reference table on the new shard equal to the
// source's (replicated tables: caught up past the fence and verified;
// copies: one strict correction pass), advance the sequences, stop the
// subscriptions, mark the shard ready; then drop the slots and
// publications on the source. Failure or the hold timeout goes back to
// syncing, the subscriptions kept.
func (w *refWorker) cutover(ctx context.Context) error {
	if w.cutoverAt.IsZero() {
		w.c.log.Info("shard found in reference cutover after a restart; rolling back to syncing", "shard", w.shard)
		_, err := w.setRefs(ctx, topology.ReferencesCutover, topology.ReferencesSyncing)
		return err
	}
	started, version := w.cutoverAt, w.cutoverVersion
	w.cutoverAt = time.Time{}
	deadline := started.Add(w.c.opts.HoldTimeout)
	var took refCutoverTimes
	fixed, err := w.cutoverSteps(ctx, version, deadline, &took)
	if err == nil && time.Now().After(deadline) {
		err = fmt.Errorf("the cutover took longer than the hold timeout %s", w.c.opts.HoldTimeout)
	}
	if err == nil {
		if _, err = w.c.opts.Store.Apply(ctx, topology.SetShardReferences{Shard: w.shard, From: topology.ReferencesCutover, To: topology.ReferencesReady}); err == nil {
			hold := time.Since(started)
			w.c.met.hold.Observe(hold.Seconds())
			w.c.updateRefs(w.shard, func(p *ReferenceSync) { p.HoldMS = float64(hold.Microseconds()) / 1000 })
			w.c.log.Info("shard holds the reference tables", "shard", w.shard, "hold", hold, "rows_copied_in_hold", fixed,
				"await_proxies", took.await, "fence", took.fence, "target_catchup", took.catchup, "verify", took.verify,
				"correct_copies", took.correct, "stop_subscriptions", took.stop)
			return nil
		}
	}
	w.attempts++
	w.c.met.aborts.Inc()
	w.notBefore = time.Now().Add(min(time.Duration(w.attempts)*time.Second, 10*time.Second))
	w.c.updateRefs(w.shard, func(p *ReferenceSync) { p.Attempts = w.attempts })
	w.c.log.Warn("reference cutover aborted; the held broadcasts go to the other shards", "shard", w.shard, "attempt", w.attempts, "err", err)
	if sh, ok := w.c.opts.Store.Current().Shard(w.shard); ok && sh.References == topology.ReferencesCutover {
		if _, aerr := w.c.opts.Store.Apply(context.WithoutCancel(ctx), topology.SetShardReferences{Shard: w.shard, From: topology.ReferencesCutover, To: topology.ReferencesSyncing}); aerr != nil {
			return aerr
		}
	}
	return err
}

// refCutoverTimes is how long each step of a reference cutover took
// (logged with the result, to see where a long hold went).
type refCutoverTimes struct {
	await, fence, catchup, verify, correct, stop time.Duration
}

// cutoverSteps does the work of a cutover inside the hold and returns how
// many rows it copied again. It takes the connections the syncing step
// opened (opening them if missing) and closes them.
func (w *refWorker) cutoverSteps(ctx context.Context, version uint64, deadline time.Time, took *refCutoverTimes) (int64, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	defer func() {
		for _, d := range w.dbs {
			d.closeConns()
		}
	}()
	step := time.Now()
	lap := func(d *time.Duration) {
		now := time.Now()
		*d += now.Sub(step)
		step = now
	}
	if w.c.opts.AwaitObserved != nil {
		if err := w.c.opts.AwaitObserved(ctx, version); err != nil {
			return 0, fmt.Errorf("waiting for every proxy to hold the broadcasts: %w", err)
		}
	}
	lap(&took.await)
	src, dst, err := w.addrs()
	if err != nil {
		return 0, err
	}
	dbs, err := w.c.databases(ctx, src)
	if err != nil {
		return 0, err
	}
	tables := w.referenceTables()
	var fixed int64
	for _, db := range dbs {
		d := w.dbs[db]
		switch {
		case d == nil:
			return fixed, fmt.Errorf("database %s appeared since the sync", db)
		case d.srcAddr == "":
			continue // no reference tables there
		case d.srcAddr != src || d.dstAddr != dst:
			return fixed, fmt.Errorf("database %s: synced from %s, the source is now %s", db, d.srcAddr, src)
		}
		if d.sconn == nil {
			if d.sconn, err = w.c.opts.Connect(ctx, src, db); err != nil {
				return fixed, err
			}
		}
		if d.tconn == nil {
			if d.tconn, err = w.c.opts.Connect(ctx, dst, db); err != nil {
				return fixed, err
			}
		}
		n, err := w.exactDB(ctx, db, d, tables, deadline, lap, took)
		if err != nil {
			return fixed, fmt.Errorf("database %s: %w", db, err)
		}
		fixed += n
	}
	// Every database verified: stop the subscriptions, so that nothing
	// but the broadcasts writes the new shard's reference tables once it
	// is ready. (If the cutover fails after this, the next syncing step
	// starts their replication afresh.)
	for db, d := range w.dbs {
		if len(d.replicated) == 0 || d.tconn == nil {
			continue
		}
		if err := dropSubscription(ctx, d.tconn, d.name); err != nil {
			return fixed, fmt.Errorf("database %s: stopping the subscription: %w", db, err)
		}
		d.rows = nil
	}
	lap(&took.stop)
	return fixed, nil
}

// exactDB makes database db's reference tables on the new shard equal to
// the source's, on d's connections.
func (w *refWorker) exactDB(ctx context.Context, db string, d *refDB, tables []string, deadline time.Time, lap func(*time.Duration), took *refCutoverTimes) (int64, error) {
	sconn, tconn := d.sconn, d.tconn
	lsn, err := fence(ctx, sconn, nil, time.Until(deadline))
	if err != nil {
		return 0, fmt.Errorf("fencing the source: %w", err)
	}
	lap(&took.fence)
	suspects := d.suspects
	d.suspects = nil // valid for this attempt only
	if len(d.replicated) > 0 {
		if err := waitConfirmed(ctx, sconn, d.name, lsn); err != nil {
			return 0, err
		}
		lap(&took.catchup)
	}
	defs, err := describeAll(ctx, sconn, tables)
	if err != nil {
		return 0, err
	}
	if len(defs) != len(d.replicated)+len(d.copies) {
		return 0, fmt.Errorf("the reference tables changed since the sync (%d now, %d synced)", len(defs), len(d.replicated)+len(d.copies))
	}
	for _, def := range defs {
		same, exists, err := sameDefinition(ctx, tconn, def)
		if err != nil {
			return 0, err
		}
		if !same {
			// Created or changed since the sync (held DDL cannot run now):
			// the next attempt syncs it again, outside the hold.
			return 0, fmt.Errorf("reference table %s changed since the sync (exists on the new shard: %v)", def.Name, exists)
		}
	}
	if len(d.replicated) > 0 {
		// Counts of every replicated table, checksums of the buckets the
		// precheck left (everything when it did not run).
		part := dbPart{DB: db, Name: d.name, Tables: d.replicated, Filters: map[string]string{}}
		for _, t := range d.replicated {
			part.Filters[t.Name] = "true"
		}
		if err := verify(ctx, sconn, tconn, part, suspects); err != nil {
			return 0, err
		}
		lap(&took.verify)
	} else if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
		return 0, err
	}
	w.withBuckets(db, d.copies)
	var fixed int64
	err = inTargetTx(ctx, tconn, func() error {
		if len(d.copies) > 0 {
			var err error
			if fixed, err = reconcile(ctx, sconn, tconn, d.copies, true); err != nil {
				return err
			}
		}
		return syncSequences(ctx, sconn, tconn, defs)
	})
	lap(&took.correct)
	return fixed, err
}

// reconcile compares every table of defs on sconn and tconn per bucket of
// a whole-row hash and copies the buckets that differ again (within the
// caller's transaction on tconn); it returns the rows copied. strict (in
// the hold, nothing changes on the source) compares those buckets once
// more and fails if they still differ.
func reconcile(ctx context.Context, sconn, tconn *pgx.Conn, defs []tableDef, strict bool) (fixed int64, err error) {
	// One snapshot of the source for comparing and copying: rows changing
	// meanwhile must not make the copy disagree with the comparison.
	if _, err := sconn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return 0, err
	}
	defer func() {
		if _, cerr := sconn.Exec(context.WithoutCancel(ctx), "COMMIT"); cerr != nil && err == nil {
			err = cerr
		}
	}()
	for _, d := range defs {
		whole := tableDef{Name: d.Name, Buckets: d.Buckets} // no key: buckets of whole-row hashes
		diff, err := differingBuckets(ctx, sconn, tconn, whole, "true", nil)
		if err != nil {
			return fixed, fmt.Errorf("comparing %s: %w", d.Name, err)
		}
		if len(diff) == 0 {
			continue
		}
		in := bucketOf(whole) + " = ANY('" + intArray(diff) + "'::int[])"
		if _, err := tconn.Exec(ctx, "DELETE FROM "+qualified(d.Name)+" t WHERE "+in); err != nil {
			return fixed, err
		}
		n, err := copyRows(ctx, sconn, tconn, d, in)
		if err != nil {
			return fixed, err
		}
		fixed += n
		if !strict {
			continue
		}
		if again, err := differingBuckets(ctx, sconn, tconn, whole, "true", diff); err != nil {
			return fixed, err
		} else if len(again) > 0 {
			return fixed, fmt.Errorf("reference table %s still differs in %d buckets after copying them again", d.Name, len(again))
		}
	}
	return fixed, nil
}

// setBuckets records how many buckets table of db is compared in, for
// rows rows.
func (w *refWorker) setBuckets(db, table string, rows int64) {
	if w.buckets == nil {
		w.buckets = map[[2]string]int{}
	}
	n := verifyBuckets
	for int64(n)*2 < rows && n < 1<<20 {
		n *= 2
	}
	w.buckets[[2]string{db, table}] = n
}

// withBuckets sets the bucket count of each of defs (tables of db).
func (w *refWorker) withBuckets(db string, defs []tableDef) {
	for i := range defs {
		defs[i].Buckets = w.buckets[[2]string{db, defs[i].Name}]
	}
}

// refConvergePasses bounds the correction passes of a syncing step over
// the copied tables; refPassBudget is the number of rows a pass may copy
// and still count as converged (the hold's strict pass then copies about
// as many).
const (
	refConvergePasses = 20
	refPassBudget     = 200
)
