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
// shard from a shard that holds them (the default shard if it can), and
// their rows copied with COPY, with no hold: reference writes go on to the
// other shards meanwhile. cutover: every proxy holds broadcasts (reference
// writes, DDL; proxy/movehold.go); the source is fenced (transactions
// already writing end), the table definitions are compared, every table's
// rows are compared per bucket of a whole-row hash and the buckets that
// differ are copied again, compared again, the sequences advanced; then the
// shard is marked ready in the same step that ends the hold. Failing or
// exceeding Options.HoldTimeout goes back to syncing.
//
// Why a copy and not logical replication, as moves use: reference tables
// are small (the hold scans them: O(rows of the reference tables), no
// transfer but the changed buckets), a copy needs no replica identity
// (publishing a table without one would make the application's UPDATEs and
// DELETEs on the source fail while the sync runs), and leaves no slot,
// publication or subscription to clean up after a crash.

// ReferenceSync is the progress of one shard's reference sync.
type ReferenceSync struct {
	Shard      string     `json:"shard"`
	State      string     `json:"state"` // the shard's reference state, or "ready" when finished
	Source     string     `json:"source,omitempty"`
	Tables     int        `json:"tables"`
	RowsCopied int64      `json:"rows_copied"`
	HoldMS     float64    `json:"hold_ms,omitempty"`
	Attempts   int        `json:"attempts,omitempty"` // cutovers aborted so far
	Started    time.Time  `json:"started"`
	Finished   *time.Time `json:"finished,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
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
	// buckets is, per database and table, how many buckets the copy is
	// compared in: about 2 rows each, so that a few changed rows make
	// few rows to copy again.
	buckets map[[2]string]int
	// copied marks the databases whose tables this worker copied whole;
	// a later attempt (after an aborted cutover) only corrects them.
	copied    map[string]bool
	attempts  int
	notBefore time.Time
}

func (w *refWorker) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		sh, ok := w.c.opts.Store.Current().Shard(w.shard)
		if !ok || sh.ReferencesReady() {
			w.c.updateRefs(w.shard, func(p *ReferenceSync) {
				if p.Finished == nil {
					now := time.Now()
					p.Finished, p.State, p.LastError = &now, topology.ReferencesReady.String(), ""
				}
			})
			return
		}
		var err error
		switch sh.References {
		case topology.ReferencesSyncing:
			err = w.copy(ctx)
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

// addrs returns the primaries of the shard to copy from and of the new
// shard. The source is the default shard when it holds the reference tables
// and is not offline, else the first such shard.
func (w *refWorker) addrs() (src, dst string, err error) {
	snap := w.c.opts.Store.Current()
	d, ok := snap.Shard(w.shard)
	if !ok {
		return "", "", fmt.Errorf("shard %s no longer exists", w.shard)
	}
	names := append([]string{snap.DefaultShard()}, snap.ShardNames()...)
	for _, n := range names {
		if s, ok := snap.Shard(n); ok && n != w.shard && s.ReferencesReady() && s.State != topology.ShardOffline {
			w.source = n
			return s.Primary, d.Primary, nil
		}
	}
	return "", "", fmt.Errorf("no shard holds the reference tables to copy them to %s", w.shard)
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

// copy (syncing → cutover): create the reference tables on the new shard
// and copy their rows, database by database, without holding anything;
// then start the cutover.
func (w *refWorker) copy(ctx context.Context) error {
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
	tables := w.referenceTables()
	var rows int64
	var count int
	for _, db := range dbs {
		n, copied, err := w.copyDB(ctx, src, dst, db, tables)
		if err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
		count += n
		rows += copied
	}
	w.c.updateRefs(w.shard, func(p *ReferenceSync) { p.Source, p.Tables, p.RowsCopied = w.source, count, rows })
	w.c.log.Info("reference tables copied; starting the cutover", "shard", w.shard, "source", w.source, "tables", count, "rows", rows)
	snap, err := w.setRefs(ctx, topology.ReferencesSyncing, topology.ReferencesCutover)
	if err != nil || snap == nil {
		return err
	}
	w.cutoverAt, w.cutoverVersion = time.Now(), snap.Version()
	return nil
}

// copyDB gives the new shard (dst) database db's reference tables: the
// definitions from the source (a table whose definition differs on the new
// shard, e.g. after DDL sent while the sync ran, is dropped and created
// again) and all their rows.
func (w *refWorker) copyDB(ctx context.Context, src, dst, db string, tables []string) (int, int64, error) {
	sconn, err := w.c.opts.Connect(ctx, src, db)
	if err != nil {
		return 0, 0, err
	}
	defer sconn.Close(ctx)
	defs, err := describeAll(ctx, sconn, tables)
	if err != nil || len(defs) == 0 {
		return 0, 0, err
	}
	if err := w.c.ensureDatabase(ctx, dst, db); err != nil {
		return 0, 0, err
	}
	tconn, err := w.c.opts.Connect(ctx, dst, db)
	if err != nil {
		return 0, 0, err
	}
	defer tconn.Close(ctx)
	for _, d := range defs {
		same, exists, err := sameDefinition(ctx, tconn, d)
		if err != nil {
			return 0, 0, err
		}
		if !same {
			delete(w.copied, db)
		}
		if exists && !same {
			w.c.log.Warn("reference table differs on the new shard; creating it again", "shard", w.shard, "table", d.Name, "database", db)
			if _, err := tconn.Exec(ctx, "DROP TABLE "+qualified(d.Name)+" CASCADE"); err != nil {
				return 0, 0, err
			}
		}
	}
	if _, err := createOnTarget(ctx, tconn, defs); err != nil {
		return 0, 0, err
	}
	var rows int64
	if !w.copied[db] {
		if err := w.copyAll(ctx, sconn, tconn, db, defs, &rows); err != nil {
			return 0, 0, err
		}
		if w.copied == nil {
			w.copied = map[string]bool{}
		}
		w.copied[db] = true
	}
	// Writes went on to the other shards during the copy: correct the
	// buckets they changed, until a pass finds (almost) nothing.
	if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
		return 0, 0, err
	}
	w.withBuckets(db, defs)
	for pass := 0; pass < reconcilePasses; pass++ {
		var n int64
		err := inTargetTx(ctx, tconn, func() error {
			var err error
			n, err = reconcile(ctx, sconn, tconn, defs, false)
			return err
		})
		if err != nil {
			return 0, 0, err
		}
		rows += n
		if n < 100 {
			break
		}
	}
	return len(defs), rows, nil
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
// source, make every reference table on the new shard equal to the
// source's (definitions compared, differing buckets copied again and
// compared again), advance the sequences, mark the shard ready. Failure or
// the hold timeout goes back to syncing.
func (w *refWorker) cutover(ctx context.Context) error {
	if w.cutoverAt.IsZero() {
		w.c.log.Info("shard found in reference cutover after a restart; rolling back to syncing", "shard", w.shard)
		_, err := w.setRefs(ctx, topology.ReferencesCutover, topology.ReferencesSyncing)
		return err
	}
	started, version := w.cutoverAt, w.cutoverVersion
	w.cutoverAt = time.Time{}
	deadline := started.Add(w.c.opts.HoldTimeout)
	fixed, err := w.cutoverSteps(ctx, version, deadline)
	if err == nil && time.Now().After(deadline) {
		err = fmt.Errorf("the cutover took longer than the hold timeout %s", w.c.opts.HoldTimeout)
	}
	if err == nil {
		if _, err = w.c.opts.Store.Apply(ctx, topology.SetShardReferences{Shard: w.shard, From: topology.ReferencesCutover, To: topology.ReferencesReady}); err == nil {
			hold := time.Since(started)
			w.c.met.hold.Observe(hold.Seconds())
			w.c.updateRefs(w.shard, func(p *ReferenceSync) { p.HoldMS = float64(hold.Microseconds()) / 1000 })
			w.c.log.Info("shard holds the reference tables", "shard", w.shard, "hold", hold, "rows_copied_in_hold", fixed)
			return nil
		}
	}
	w.attempts++
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

// cutoverSteps does the work of a cutover inside the hold and returns how
// many rows it copied again.
func (w *refWorker) cutoverSteps(ctx context.Context, version uint64, deadline time.Time) (int64, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if w.c.opts.AwaitObserved != nil {
		if err := w.c.opts.AwaitObserved(ctx, version); err != nil {
			return 0, fmt.Errorf("waiting for every proxy to hold the broadcasts: %w", err)
		}
	}
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
		n, err := w.exactDB(ctx, src, dst, db, tables, deadline)
		if err != nil {
			return fixed, fmt.Errorf("database %s: %w", db, err)
		}
		fixed += n
	}
	return fixed, nil
}

// exactDB makes database db's reference tables on dst equal to src's.
func (w *refWorker) exactDB(ctx context.Context, src, dst, db string, tables []string, deadline time.Time) (int64, error) {
	sconn, err := w.c.opts.Connect(ctx, src, db)
	if err != nil {
		return 0, err
	}
	defer sconn.Close(context.WithoutCancel(ctx))
	t0 := time.Now()
	if _, err := fence(ctx, sconn, nil, time.Until(deadline)); err != nil {
		return 0, fmt.Errorf("fencing the source: %w", err)
	}
	t1 := time.Now()
	defer func() {
		w.c.log.Info("reference cutover steps", "shard", w.shard, "database", db, "fence", t1.Sub(t0), "compare_and_copy", time.Since(t1))
	}()
	defs, err := describeAll(ctx, sconn, tables)
	if err != nil || len(defs) == 0 {
		return 0, err
	}
	tconn, err := w.c.opts.Connect(ctx, dst, db)
	if err != nil {
		return 0, err
	}
	defer tconn.Close(context.WithoutCancel(ctx))
	for _, d := range defs {
		same, exists, err := sameDefinition(ctx, tconn, d)
		if err != nil {
			return 0, err
		}
		if !same {
			// Created or changed since the copy (held DDL cannot run now):
			// the next attempt copies it again, outside the hold.
			return 0, fmt.Errorf("reference table %s changed since the copy (exists on the new shard: %v)", d.Name, exists)
		}
	}
	if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
		return 0, err
	}
	w.withBuckets(db, defs)
	var fixed int64
	err = inTargetTx(ctx, tconn, func() error {
		var err error
		if fixed, err = reconcile(ctx, sconn, tconn, defs, true); err != nil {
			return err
		}
		return syncSequences(ctx, sconn, tconn, defs)
	})
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

// reconcilePasses is how many times the copy is compared and corrected
// outside the hold, so that the hold copies only what changed during the
// last pass.
const reconcilePasses = 3
