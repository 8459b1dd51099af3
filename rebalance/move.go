package rebalance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// permanentError marks a failure that retrying cannot fix (a table without
// a usable replica identity, a server too old): a move that has not flipped
// is cancelled with its message.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

func permanentf(format string, args ...any) error {
	return &permanentError{msg: fmt.Sprintf(format, args...)}
}

// dbPart is the part of a move in one database: the tables of the
// distribution that exist there, and the publication/subscription/slot
// name (all three share it).
type dbPart struct {
	DB      string
	Name    string // publication = subscription = slot
	Tables  []tableDef
	Filters map[string]string // table → row filter over the moving ranges
	Total   map[string]int64  // table → rows in the ranges on the source at start
}

// worker runs one move. It is owned by one goroutine.
type worker struct {
	c     *Controller
	id    string
	parts []dbPart // nil until setup
	// cutoverAt is when this worker put the move into cutover, and at which
	// topology version; a move found in cutover without it was left there
	// by another leader (or an earlier worker) and is rolled back to
	// catchup first.
	cutoverAt      time.Time
	cutoverVersion uint64
	// preSrc and preDst are connections to the source and target opened
	// just before a cutover starts, so that opening them does not count
	// against the write hold; cutoverSteps takes (and closes) them.
	preSrc, preDst []*pgx.Conn
	// prechecked holds, per part, the result of the verification run just
	// before the cutover (precheck): table → buckets whose rows did not
	// match yet. nil: not pre-checked, the hold compares everything.
	prechecked []map[string][]int
	attempts   int       // failed cutovers
	notBefore  time.Time // next cutover attempt
	warnings   []string
}

// move returns the current record of the move, or ok false once it is gone.
func (w *worker) move() (topology.Move, bool) { return w.c.opts.Store.Current().Move(w.id) }

// run drives the move until it ends (EndMove) or ctx is done.
func (w *worker) run(ctx context.Context) {
	defer w.closeCutoverConns()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		m, ok := w.move()
		if !ok {
			return
		}
		w.c.setPhase(w.id, m)
		var err error
		switch m.State {
		case topology.MovePending:
			err = w.prepare(ctx, m)
		case topology.MoveCopying:
			err = w.waitCopied(ctx, m)
		case topology.MoveCatchup:
			err = w.waitCaughtUp(ctx, m)
		case topology.MoveCutover:
			err = w.cutover(ctx, m)
		case topology.MoveCleanup:
			err = w.cleanup(ctx, m)
		case topology.MoveCancelling:
			err = w.rollback(ctx, m)
		default:
			err = fmt.Errorf("unknown move state %q", m.State)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 200 * time.Millisecond
			continue
		}
		w.c.noteError(w.id, err)
		var pe *permanentError
		if errors.As(err, &pe) && preFlip(m.State) && m.State != topology.MoveCancelling {
			w.c.log.Error("move failed; cancelling it", "move", w.id, "err", err)
			if _, aerr := w.c.opts.Store.Apply(ctx, topology.SetMoveState{ID: w.id, From: m.State, To: topology.MoveCancelling, Error: err.Error()}); aerr != nil {
				w.c.log.Warn("could not record the cancel", "move", w.id, "err", aerr)
			}
			continue
		}
		w.c.log.Warn("move step failed; retrying", "move", w.id, "state", m.State, "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func preFlip(s topology.MoveState) bool { return s != topology.MoveCleanup }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// advance records the move's next state; an error from a concurrent
// change (cancel) is not a failure: the loop re-reads the state.
func (w *worker) advance(ctx context.Context, from, to topology.MoveState) (*topology.Snapshot, error) {
	snap, err := w.c.opts.Store.Apply(ctx, topology.SetMoveState{ID: w.id, From: from, To: to})
	if err != nil && errors.Is(err, topology.ErrInvalid) {
		if m, ok := w.move(); !ok || m.State != from {
			return nil, nil // someone else moved it on (a cancel)
		}
	}
	return snap, err
}

// sourceAddr and targetAddr are the primaries of the move's shards.
func (w *worker) addrs(m topology.Move) (src, dst string, err error) {
	snap := w.c.opts.Store.Current()
	s, ok1 := snap.Shard(m.From)
	d, ok2 := snap.Shard(m.To)
	if !ok1 || !ok2 {
		return "", "", permanentf("move %s: shard %s or %s no longer exists", m.ID, m.From, m.To)
	}
	return s.Primary, d.Primary, nil
}

// setup finds the databases and tables the move covers (once per worker).
func (w *worker) setup(ctx context.Context, m topology.Move) error {
	if w.parts != nil {
		return nil
	}
	snap := w.c.opts.Store.Current()
	dist, ok := snap.Distribution(m.Distribution)
	if !ok {
		return permanentf("move %s: distribution %s does not exist", m.ID, m.Distribution)
	}
	var tables []topology.Table
	for _, t := range snap.Tables() {
		if t.Kind == topology.Distributed && t.Distribution == m.Distribution {
			tables = append(tables, t)
		}
	}
	src, _, err := w.addrs(m)
	if err != nil {
		return err
	}
	dbs, err := w.c.databases(ctx, src)
	if err != nil {
		return err
	}
	var parts []dbPart
	var problems []string
	for _, db := range dbs {
		conn, err := w.c.opts.Connect(ctx, src, db)
		if err != nil {
			return fmt.Errorf("source %s database %s: %w", m.From, db, err)
		}
		p := dbPart{DB: db, Name: replicationName(m.ID, db), Filters: map[string]string{}, Total: map[string]int64{}}
		for _, t := range tables {
			def, ok, err := describeTable(ctx, conn, t.Name, t.KeyColumn)
			if err != nil {
				conn.Close(ctx)
				return err
			}
			if !ok {
				continue
			}
			if def.IdentityOK != "" {
				problems = append(problems, fmt.Sprintf("%s (database %s): %s", t.Name, db, def.IdentityOK))
			}
			f, err := router.MovingRowsFilter(dist, quoteIdent(t.KeyColumn), m.Ranges)
			if err != nil {
				conn.Close(ctx)
				return permanentf("%v", err)
			}
			p.Tables = append(p.Tables, def)
			p.Filters[t.Name] = f
		}
		conn.Close(ctx)
		if len(p.Tables) > 0 {
			parts = append(parts, p)
		}
	}
	if len(problems) > 0 {
		return permanentf("tables that cannot move online (logical replication needs the key column in the replica identity): %s; add the key column to the primary key, or run ALTER TABLE ... REPLICA IDENTITY FULL, then start the move again",
			strings.Join(problems, "; "))
	}
	w.parts = parts
	return nil
}

// CheckTables reports, for distribution dist on the server at addr, the
// tables that cannot move online, one line each (empty when all can).
func (c *Controller) CheckTables(ctx context.Context, addr, dist string) ([]string, error) {
	w := &worker{c: c, id: "check"}
	m := topology.Move{ID: "check", Distribution: dist, Ranges: []topology.Span{{Lo: 0, Hi: 0}}}
	snap := c.opts.Store.Current()
	for _, name := range snap.ShardNames() {
		if sh, _ := snap.Shard(name); sh.Primary == addr {
			m.From, m.To = name, name
		}
	}
	err := w.setup(ctx, m)
	var pe *permanentError
	if errors.As(err, &pe) {
		return []string{pe.msg}, nil
	}
	return nil, err
}

// databases lists the databases on the server at addr that may hold data.
func (c *Controller) databases(ctx context.Context, addr string) ([]string, error) {
	if len(c.opts.Databases) > 0 {
		return c.opts.Databases, nil
	}
	conn, err := c.opts.Connect(ctx, addr, "postgres")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// prepare (pending → copying): schema on the target, publication on the
// source, subscription on the target. A target still being given the
// reference tables (a shard just added) is waited for first: the moved
// rows may reference them, and the proxies send reads joining them to the
// target once it owns the ranges.
func (w *worker) prepare(ctx context.Context, m topology.Move) error {
	if err := w.c.awaitReferences(ctx, w.id, m.To); err != nil {
		return err
	}
	if err := w.setup(ctx, m); err != nil {
		return err
	}
	src, dst, err := w.addrs(m)
	if err != nil {
		return err
	}
	for i := range w.parts {
		p := &w.parts[i]
		if err := w.c.checkSource(ctx, src, p.DB); err != nil {
			return err
		}
		if err := w.c.ensureDatabase(ctx, dst, p.DB); err != nil {
			return err
		}
		sconn, err := w.c.opts.Connect(ctx, src, p.DB)
		if err != nil {
			return err
		}
		tconn, err := w.c.opts.Connect(ctx, dst, p.DB)
		if err != nil {
			sconn.Close(ctx)
			return err
		}
		err = w.prepareDB(ctx, sconn, tconn, src, p)
		sconn.Close(ctx)
		tconn.Close(ctx)
		if err != nil {
			return err
		}
	}
	_, err = w.advance(ctx, topology.MovePending, topology.MoveCopying)
	return err
}

func (w *worker) prepareDB(ctx context.Context, sconn, tconn *pgx.Conn, src string, p *dbPart) error {
	warnings, err := createOnTarget(ctx, tconn, p.Tables)
	if err != nil {
		return err
	}
	w.warnings = append(w.warnings, warnings...)
	for _, t := range p.Tables {
		var n int64
		if err := sconn.QueryRow(ctx, "SELECT count(*) FROM "+qualified(t.Name)+" WHERE "+p.Filters[t.Name]).Scan(&n); err != nil {
			return err
		}
		p.Total[t.Name] = n
	}
	w.c.setTotal(w.id, w.parts)
	var subExists bool
	if err := tconn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)", p.Name).Scan(&subExists); err != nil {
		return err
	}
	if subExists {
		return nil // an earlier attempt got this far
	}
	// Rows of the ranges on the target are leftovers of an attempt that
	// died before its subscription existed: the copy starts from nothing.
	if err := deleteRange(ctx, tconn, deleteOrder(p.Tables), p.Filters, 0, 0, nil); err != nil {
		return err
	}
	if err := dropSlot(ctx, sconn, p.Name); err != nil {
		return err
	}
	var pubExists bool
	if err := sconn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", p.Name).Scan(&pubExists); err != nil {
		return err
	}
	if !pubExists {
		var items []string
		for _, t := range p.Tables {
			items = append(items, qualified(t.Name)+" WHERE "+p.Filters[t.Name])
		}
		// No truncate: a TRUNCATE on the source must never empty the
		// target's table, which holds other ranges too.
		sql := "CREATE PUBLICATION " + quoteIdent(p.Name) + " FOR TABLE " + strings.Join(items, ", ") + " WITH (publish = 'insert, update, delete')"
		if _, err := sconn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("creating the publication on the source: %w", err)
		}
	}
	sql := "CREATE SUBSCRIPTION " + quoteIdent(p.Name) + " CONNECTION " + quoteLiteral(w.c.opts.Conninfo(src, p.DB)) +
		" PUBLICATION " + quoteIdent(p.Name) + " WITH (slot_name = " + quoteLiteral(p.Name) + ", copy_data = true, create_slot = true, streaming = on)"
	if _, err := tconn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("creating the subscription on the target: %w", err)
	}
	w.c.log.Info("move copying", "move", w.id, "database", p.DB, "tables", len(p.Tables))
	return nil
}

// checkSource refuses servers that cannot publish with row filters.
func (c *Controller) checkSource(ctx context.Context, addr, db string) error {
	conn, err := c.opts.Connect(ctx, addr, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var version int
	var walLevel string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('wal_level')").Scan(&version, &walLevel); err != nil {
		return err
	}
	if version < 150000 {
		return permanentf("the source server %s runs PostgreSQL %d; online moves need 15 or later (publication row filters)", addr, version/10000)
	}
	if walLevel != "logical" {
		return permanentf("the source server %s has wal_level=%s; set wal_level=logical and restart it", addr, walLevel)
	}
	return nil
}

// ensureDatabase creates db on the server at addr when it is missing.
func (c *Controller) ensureDatabase(ctx context.Context, addr, db string) error {
	conn, err := c.opts.Connect(ctx, addr, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+quoteIdent(db)); err != nil {
			return fmt.Errorf("creating database %s on the target: %w", db, err)
		}
	}
	return nil
}

// phaseConns prepares the worker for m (setup) and connects to every
// database of the move on the source (source) or the target.
func (w *worker) phaseConns(ctx context.Context, m topology.Move, source bool) ([]*pgx.Conn, error) {
	if err := w.setup(ctx, m); err != nil {
		return nil, err
	}
	src, dst, err := w.addrs(m)
	if err != nil {
		return nil, err
	}
	if source {
		return w.c.connectAll(ctx, src, w.parts)
	}
	return w.c.connectAll(ctx, dst, w.parts)
}

// waitCopied (copying → catchup) waits until every table of every
// subscription finished its initial copy.
func (w *worker) waitCopied(ctx context.Context, m topology.Move) error {
	conns, err := w.phaseConns(ctx, m, false)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	for {
		if cur, ok := w.move(); !ok || cur.State != topology.MoveCopying {
			return nil
		}
		allReady := true
		var copied int64
		for i, p := range w.parts {
			var total, notReady int
			var inProgress int64
			err := conns[i].QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')),
					coalesce((SELECT sum(pc.tuples_processed) FROM pg_stat_progress_copy pc
						WHERE pc.relid IN (SELECT srrelid FROM pg_subscription_rel WHERE srsubid = s.oid)), 0)::int8
				FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
				WHERE s.subname = $1 GROUP BY s.oid`, p.Name).Scan(&total, &notReady, &inProgress)
			if err == pgx.ErrNoRows {
				return permanentf("the subscription %s is missing on the target shard %s", p.Name, m.To)
			}
			if err != nil {
				return err
			}
			if notReady > 0 || total < len(p.Tables) {
				allReady = false
			}
			copied += inProgress
			// Tables whose copy finished count whole.
			rows, err := conns[i].Query(ctx, `SELECT c.relnamespace::regnamespace::text || '.' || c.relname FROM pg_subscription_rel r
				JOIN pg_subscription s ON s.oid = r.srsubid JOIN pg_class c ON c.oid = r.srrelid
				WHERE s.subname = $1 AND r.srsubstate IN ('f', 's', 'r')`, p.Name)
			if err != nil {
				return err
			}
			done, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, t := range done {
				copied += p.Total[strings.Trim(t, `"`)]
			}
		}
		w.c.setCopied(w.id, copied)
		if allReady {
			_, err := w.advance(ctx, topology.MoveCopying, topology.MoveCatchup)
			return err
		}
		if !sleepCtx(ctx, w.c.opts.Poll) {
			return ctx.Err()
		}
	}
}

// slotLag returns how far (bytes) the slot's confirmed position is behind
// the source's current WAL position, and the current position.
func slotLag(ctx context.Context, sconn *pgx.Conn, slot string) (lag int64, err error) {
	err = sconn.QueryRow(ctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::int8
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lag)
	if err == pgx.ErrNoRows {
		return 0, permanentf("the replication slot %s is missing on the source", slot)
	}
	return lag, err
}

// waitCaughtUp (catchup → cutover) waits until the subscriptions are close
// behind the source, then starts the cutover.
func (w *worker) waitCaughtUp(ctx context.Context, m topology.Move) error {
	conns, err := w.phaseConns(ctx, m, true)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	for {
		if cur, ok := w.move(); !ok || cur.State != topology.MoveCatchup {
			return nil
		}
		var maxLag int64
		for i, p := range w.parts {
			lag, err := slotLag(ctx, conns[i], p.Name)
			if err != nil {
				return err
			}
			maxLag = max(maxLag, lag)
		}
		w.c.setLag(w.id, maxLag)
		if maxLag <= w.c.opts.LagThreshold && time.Now().After(w.notBefore) {
			if w.prechecked == nil {
				// Compare outside the hold first; then look at the lag
				// again, since the comparison took a while.
				if err := w.precheck(ctx, m); err != nil {
					return err
				}
				continue
			}
			if err := w.openCutoverConns(ctx, m); err != nil {
				return err
			}
			snap, err := w.advance(ctx, topology.MoveCatchup, topology.MoveCutover)
			if err != nil || snap == nil {
				w.closeCutoverConns()
				return err
			}
			w.cutoverAt, w.cutoverVersion = time.Now(), snap.Version()
			return nil
		}
		if !sleepCtx(ctx, w.c.opts.Poll) {
			return ctx.Err()
		}
	}
}

// holdTimeout is the move's write-hold bound.
func (w *worker) holdTimeout(m topology.Move) time.Duration {
	if m.HoldTimeoutMS > 0 {
		return time.Duration(m.HoldTimeoutMS) * time.Millisecond
	}
	return w.c.opts.HoldTimeout
}

// cutover (cutover → cleanup): with the proxies holding writes to the
// ranges, fence the source (wait for writers already in flight), wait until
// the target has applied everything up to the source's WAL position, verify
// (counts, and checksums of what the precheck left), and flip the owner. Anything failing or taking
// longer than the hold timeout aborts back to catchup, releasing the held
// writes to the source.
func (w *worker) cutover(ctx context.Context, m topology.Move) error {
	if w.cutoverAt.IsZero() {
		w.closeCutoverConns()
		// Left in cutover by another leader or worker: release the held
		// writes and try again from catchup.
		w.c.log.Info("move found in cutover after a restart; rolling back to catchup", "move", w.id)
		_, err := w.advance(ctx, topology.MoveCutover, topology.MoveCatchup)
		return err
	}
	started, version := w.cutoverAt, w.cutoverVersion
	w.cutoverAt = time.Time{}
	deadline := started.Add(w.holdTimeout(m))
	var steps cutoverTimes
	err := w.cutoverSteps(ctx, m, version, deadline, &steps)
	if err == nil && time.Now().After(deadline) {
		err = fmt.Errorf("the cutover took longer than the hold timeout %s", w.holdTimeout(m))
	}
	if err == nil {
		if _, err = w.c.opts.Store.Apply(ctx, topology.FlipMove{ID: w.id}); err == nil {
			hold := time.Since(started)
			w.c.met.hold.Observe(hold.Seconds())
			w.c.setHold(w.id, hold)
			w.c.log.Info("move flipped", "move", w.id, "hold", hold, "await_proxies", steps.await, "connect", steps.connect,
				"fence", steps.fence, "target_catchup", steps.catchup, "verify", steps.verify)
			return nil
		}
	}
	// Abort: release the writes to the source.
	w.attempts++
	w.c.met.aborts.Inc()
	w.notBefore = time.Now().Add(time.Duration(w.attempts) * time.Second)
	w.c.log.Warn("cutover aborted; the held writes go to the source", "move", w.id, "attempt", w.attempts, "err", err)
	if cur, ok := w.move(); ok && cur.State == topology.MoveCutover {
		if _, aerr := w.c.opts.Store.Apply(context.WithoutCancel(ctx), topology.SetMoveState{ID: w.id, From: topology.MoveCutover, To: topology.MoveCatchup}); aerr != nil {
			return aerr
		}
	}
	if w.attempts >= w.c.opts.MaxCutoverAttempts {
		return permanentf("cutover failed %d times, last: %v", w.attempts, err)
	}
	return nil
}

// openCutoverConns opens the connections of the next cutover (preSrc,
// preDst).
func (w *worker) openCutoverConns(ctx context.Context, m topology.Move) error {
	w.closeCutoverConns()
	src, dst, err := w.addrs(m)
	if err != nil {
		return err
	}
	if w.preSrc, err = w.c.connectAll(ctx, src, w.parts); err != nil {
		return err
	}
	if w.preDst, err = w.c.connectAll(ctx, dst, w.parts); err != nil {
		w.closeCutoverConns()
		return err
	}
	return nil
}

func (w *worker) closeCutoverConns() {
	closeAll(w.preSrc)
	closeAll(w.preDst)
	w.preSrc, w.preDst = nil, nil
}

// cutoverTimes is how long each step of a cutover took (logged with the
// flip, to see where a long write hold went).
type cutoverTimes struct {
	await, connect, fence, catchup, verify time.Duration
}

func (w *worker) cutoverSteps(ctx context.Context, m topology.Move, version uint64, deadline time.Time, took *cutoverTimes) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	src, dst, err := w.addrs(m)
	if err != nil {
		return err
	}
	step := time.Now()
	lap := func(d *time.Duration) {
		now := time.Now()
		*d += now.Sub(step)
		step = now
	}
	if w.c.opts.AwaitObserved != nil {
		if err := w.c.opts.AwaitObserved(ctx, version); err != nil {
			return fmt.Errorf("waiting for every proxy to hold the writes: %w", err)
		}
	}
	lap(&took.await)
	sconns, tconns := w.preSrc, w.preDst
	w.preSrc, w.preDst = nil, nil
	prechecked := w.prechecked
	w.prechecked = nil // valid for this cutover attempt only
	defer closeAll(sconns)
	defer closeAll(tconns)
	if sconns == nil {
		if sconns, err = w.c.connectAll(ctx, src, w.parts); err != nil {
			return err
		}
	}
	if tconns == nil {
		if tconns, err = w.c.connectAll(ctx, dst, w.parts); err != nil {
			return err
		}
	}
	lap(&took.connect)
	for i, p := range w.parts {
		lsn, err := fence(ctx, sconns[i], p.Tables, time.Until(deadline))
		if err != nil {
			return fmt.Errorf("fencing the source: %w", err)
		}
		lap(&took.fence)
		if err := waitConfirmed(ctx, sconns[i], p.Name, lsn); err != nil {
			return err
		}
		lap(&took.catchup)
		// Pre-checked: counts, and checksums of the buckets that did not
		// match before the hold; otherwise everything is compared here.
		var suspects map[string][]int
		if i < len(prechecked) {
			suspects = prechecked[i]
		}
		if err := verify(ctx, sconns[i], tconns[i], p, suspects); err != nil {
			return err
		}
		// The target's sequences must not hand out values the moved rows
		// already took from the source's.
		if err := syncSequences(ctx, sconns[i], tconns[i], p.Tables); err != nil {
			return err
		}
		lap(&took.verify)
	}
	return nil
}

// waitConfirmed waits until the subscriber of slot has confirmed (applied
// and flushed) everything up to the source's WAL position lsn.
func waitConfirmed(ctx context.Context, sconn *pgx.Conn, slot, lsn string) error {
	for {
		var caught bool
		err := sconn.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot, lsn).Scan(&caught)
		if err != nil {
			return fmt.Errorf("waiting for the target to catch up: %w", err)
		}
		if caught {
			return nil
		}
		if !sleepCtx(ctx, 2*time.Millisecond) {
			return fmt.Errorf("waiting for the target to replay past %s: %w", lsn, ctx.Err())
		}
	}
}

// fence waits until every transaction that was running on the source when
// it was called has ended, then returns the source's WAL position. With the
// proxies already holding new writes to the ranges (a transaction that
// wrote on the source before the hold may go on writing: it is one of those
// waited for), every write to the moving ranges is before that position.
func fence(ctx context.Context, conn *pgx.Conn, tables []tableDef, budget time.Duration) (string, error) {
	var running []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(x::text), '{}') FROM pg_snapshot_xip(pg_current_snapshot()) x`).Scan(&running); err != nil {
		return "", err
	}
	deadline := time.Now().Add(budget)
	for len(running) > 0 {
		var still []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(x::text), '{}') FROM unnest($1::xid8[]) x WHERE pg_xact_status(x) = 'in progress'`, running).Scan(&still); err != nil {
			return "", err
		}
		running = still
		if len(running) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%d transactions still open on the source (e.g. xid %s)", len(running), running[0])
		}
		if !sleepCtx(ctx, 2*time.Millisecond) {
			return "", ctx.Err()
		}
	}
	var lsn string
	err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	return lsn, err
}

// stableOutput makes the text form of rows the same on both servers.
const stableOutput = "SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'"

// checksum is a row count and two order-independent checksums of rows:
// their text forms hashed, summed and xor-ed.
type checksum struct {
	rows int64
	sum  string
	xor  int64
}

// verifyBuckets is how many buckets (by a hash of the key) the precheck
// compares separately, so that rows changing while it runs make only their
// buckets suspect, not the whole table.
const verifyBuckets = 1024

// bucketOf is the SQL bucket of a row of alias t of table d (seed 1:
// independent of the range filter's hash, which uses seed 0): by its key
// column, or by the whole row when d has no key (reference tables), among
// d.Buckets buckets (0: verifyBuckets).
func bucketOf(d tableDef) string {
	n := verifyBuckets
	if d.Buckets > 0 {
		n = d.Buckets
	}
	if d.KeyColumn == "" {
		return fmt.Sprintf("(hashtextextended(t::text, 1) & %d)", n-1)
	}
	return fmt.Sprintf("(hashtextextended(t.%s::text, 1) & %d)", quoteIdent(d.KeyColumn), n-1)
}

// rowHash is the SQL hash of the whole row of alias t.
const rowHash = "hashtextextended(t::text, 0)"

// checksumSQL computes the checksum of the rows of table in filter. With
// suspects nil every row is hashed; otherwise every row is counted but only
// rows in the suspect buckets are hashed (none: a plain count).
func checksumSQL(t tableDef, filter string, suspects []int) string {
	h := rowHash
	if suspects != nil {
		h = "NULL::int8"
		if len(suspects) > 0 {
			h = "CASE WHEN " + bucketOf(t) + " = ANY('" + intArray(suspects) + "'::int[]) THEN " + rowHash + " END"
		}
	}
	return `SELECT count(*), coalesce(sum(h), 0)::text, coalesce(bit_xor(h), 0) FROM (SELECT ` + h + ` AS h FROM ` +
		qualified(t.Name) + ` t WHERE ` + filter + `) s`
}

// bucketChecksumSQL computes the checksum of every bucket of the rows of
// table in filter (only the given buckets when only is not nil).
func bucketChecksumSQL(t tableDef, filter string, only []int) string {
	where := filter
	if only != nil {
		where = "(" + filter + ") AND " + bucketOf(t) + " = ANY('" + intArray(only) + "'::int[])"
	}
	return `SELECT b, count(*), sum(h)::text, bit_xor(h) FROM (SELECT ` + bucketOf(t) + ` AS b, ` + rowHash + ` AS h FROM ` +
		qualified(t.Name) + ` t WHERE ` + where + `) s GROUP BY b`
}

func intArray(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// onBoth runs fn on the source and the target connection concurrently.
func onBoth(sconn, tconn *pgx.Conn, fn func(conn *pgx.Conn) error) error {
	var errA error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errA = fn(sconn)
	}()
	errB := fn(tconn)
	wg.Wait()
	return errors.Join(errA, errB)
}

// verify compares, for every table over the ranges, the source with the
// target: with suspects nil count and checksums of all rows; otherwise
// (after a precheck) the count, and the checksums of the rows in the
// table's suspect buckets.
func verify(ctx context.Context, sconn, tconn *pgx.Conn, p dbPart, suspects map[string][]int) error {
	if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
		return err
	}
	for _, t := range p.Tables {
		var only []int
		if suspects != nil {
			only = suspects[t.Name]
			if only == nil {
				only = []int{}
			}
		}
		q := checksumSQL(t, p.Filters[t.Name], only)
		var a, b checksum
		err := onBoth(sconn, tconn, func(c *pgx.Conn) error {
			into := &a
			if c == tconn {
				into = &b
			}
			return c.QueryRow(ctx, q).Scan(&into.rows, &into.sum, &into.xor)
		})
		if err != nil {
			return fmt.Errorf("verifying %s: %w", t.Name, err)
		}
		if a != b {
			return fmt.Errorf("verification of %s failed: source has %d rows (checksum %s/%d), target %d (%s/%d)", t.Name, a.rows, a.sum, a.xor, b.rows, b.sum, b.xor)
		}
	}
	return nil
}

// precheckPasses is how many times the precheck compares; every pass after
// the first looks only at the buckets that did not match yet, after the
// target has replayed past the source's position.
const precheckPasses = 3

// precheck compares source and target outside the write hold, bucket by
// bucket (bucketChecksumSQL), while the subscription is close behind, and
// records in w.prechecked the buckets that did not match (rows written
// while it ran, or a real difference): the hold compares only those, plus
// the counts. See docs/rebalance.md, "Verification", for why that loses no
// acknowledged write.
func (w *worker) precheck(ctx context.Context, m topology.Move) error {
	src, dst, err := w.addrs(m)
	if err != nil {
		return err
	}
	sconns, err := w.c.connectAll(ctx, src, w.parts)
	if err != nil {
		return err
	}
	defer closeAll(sconns)
	tconns, err := w.c.connectAll(ctx, dst, w.parts)
	if err != nil {
		return err
	}
	defer closeAll(tconns)
	started := time.Now()
	result := make([]map[string][]int, len(w.parts))
	var left int
	for i, p := range w.parts {
		sconn, tconn := sconns[i], tconns[i]
		if err := onBoth(sconn, tconn, func(c *pgx.Conn) error { _, err := c.Exec(ctx, stableOutput); return err }); err != nil {
			return err
		}
		result[i] = map[string][]int{}
		for _, t := range p.Tables {
			var only []int // nil: every bucket
			for pass := 0; pass < precheckPasses && (pass == 0 || len(only) > 0); pass++ {
				if pass > 0 {
					if err := replayedNow(ctx, sconn, p.Name); err != nil {
						return err
					}
				}
				only, err = differingBuckets(ctx, sconn, tconn, t, p.Filters[t.Name], only)
				if err != nil {
					return fmt.Errorf("prechecking %s: %w", t.Name, err)
				}
			}
			result[i][t.Name] = only
			left += len(only)
		}
	}
	w.prechecked = result
	w.c.log.Info("move prechecked", "move", w.id, "took", time.Since(started), "buckets_left_for_the_hold", left)
	return nil
}

// replayedNow waits (at most a second) until the target has replayed past
// the source's current WAL position.
func replayedNow(ctx context.Context, sconn *pgx.Conn, slot string) error {
	var lsn string
	if err := sconn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := waitConfirmed(wctx, sconn, slot, lsn); err != nil && ctx.Err() != nil {
		return err
	}
	return nil // behind: the next pass just finds more buckets differing
}

// differingBuckets compares the bucket checksums of t on source and target
// (the buckets in only; nil: all) and returns the buckets that differ,
// sorted.
func differingBuckets(ctx context.Context, sconn, tconn *pgx.Conn, t tableDef, filter string, only []int) ([]int, error) {
	q := bucketChecksumSQL(t, filter, only)
	var a, b map[int]checksum
	err := onBoth(sconn, tconn, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, q)
		if err != nil {
			return err
		}
		got := map[int]checksum{}
		var bucket int
		var cs checksum
		_, err = pgx.ForEachRow(rows, []any{&bucket, &cs.rows, &cs.sum, &cs.xor}, func() error {
			got[bucket] = cs
			return nil
		})
		if c == tconn {
			b = got
		} else {
			a = got
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	diff := []int{}
	for k, v := range a {
		if b[k] != v {
			diff = append(diff, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diff = append(diff, k)
		}
	}
	sort.Ints(diff)
	return diff, nil
}

// cleanup (after the flip): drop the replication, delete the moved rows
// from the source in batches, forget the move.
func (w *worker) cleanup(ctx context.Context, m topology.Move) error {
	if err := w.setup(ctx, m); err != nil {
		return err
	}
	src, dst, err := w.addrs(m)
	if err != nil {
		return err
	}
	for _, p := range w.parts {
		if err := w.c.dropReplication(ctx, src, dst, p); err != nil {
			return err
		}
	}
	for _, p := range w.parts {
		conn, err := w.c.opts.Connect(ctx, src, p.DB)
		if err != nil {
			return err
		}
		err = deleteRange(ctx, conn, deleteOrder(p.Tables), p.Filters, w.c.opts.DeleteBatch, w.c.opts.DeletePause, func(n int64) {
			w.c.addDeleted(w.id, n)
		})
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("deleting moved rows from the source: %w", err)
		}
	}
	return w.end(ctx, m, "done")
}

// rollback (cancelling): drop the replication and the rows copied to the
// target; the source was never changed.
func (w *worker) rollback(ctx context.Context, m topology.Move) error {
	if err := w.setup(ctx, m); err != nil {
		var pe *permanentError
		if !errors.As(err, &pe) || w.parts == nil {
			// A move refused by setup has created nothing; forget it.
			if errors.As(err, &pe) {
				return w.end(ctx, m, "cancelled")
			}
			return err
		}
	}
	src, dst, err := w.addrs(m)
	if err != nil {
		return err
	}
	for _, p := range w.parts {
		if err := w.c.dropReplication(ctx, src, dst, p); err != nil {
			return err
		}
		conn, err := w.c.opts.Connect(ctx, dst, p.DB)
		if err != nil {
			return err
		}
		err = deleteRange(ctx, conn, deleteOrder(p.Tables), p.Filters, w.c.opts.DeleteBatch, 0, nil)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("deleting copied rows from the target: %w", err)
		}
	}
	return w.end(ctx, m, "cancelled")
}

func (w *worker) end(ctx context.Context, m topology.Move, outcome string) error {
	w.c.ending.Lock()
	defer w.c.ending.Unlock()
	if _, err := w.c.opts.Store.Apply(ctx, topology.EndMove{ID: w.id}); err != nil {
		return err
	}
	w.c.finish(w.id, m, outcome)
	return nil
}

// dropReplication removes the subscription (target), then the slot and the
// publication (source). Both servers must be reachable: dropping the
// subscription while the source is down would leave its slots behind, so
// the caller retries until they are.
func (c *Controller) dropReplication(ctx context.Context, src, dst string, p dbPart) error {
	sconn, err := c.opts.Connect(ctx, src, p.DB)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer sconn.Close(ctx)
	tconn, err := c.opts.Connect(ctx, dst, p.DB)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer tconn.Close(ctx)
	if _, err := tconn.Exec(ctx, "DROP SUBSCRIPTION IF EXISTS "+quoteIdent(p.Name)); err != nil {
		return fmt.Errorf("dropping the subscription: %w", err)
	}
	return dropPublication(ctx, sconn, p.Name)
}

// dropPublicationOnly drops publication name (if it exists) in two steps:
// its tables leave it first, then the empty publication is dropped. A
// write that builds its table's cache entry while a publication of the
// table is dropped can fail with PostgreSQL's internal error "cache lookup
// failed for publication" (XX000): it read the table's publications just
// before the drop and looks one up just after. Once the tables have left,
// no write looks this publication up any more.
func dropPublicationOnly(ctx context.Context, conn *pgx.Conn, name string) error {
	rows, err := conn.Query(ctx, "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = $1", name)
	if err != nil {
		return err
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(tables) > 0 {
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+quoteIdent(name)+" DROP TABLE "+strings.Join(tables, ", ")); err != nil {
			return err
		}
	}
	_, err = conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(name))
	return err
}

// dropSlot drops the replication slot (ending its walsender first) if it
// exists.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	for attempt := 0; ; attempt++ {
		var exists bool
		var pid *int32
		err := conn.QueryRow(ctx, `SELECT true, active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&exists, &pid)
		if err == pgx.ErrNoRows {
			return nil
		}
		if err != nil {
			return err
		}
		if pid != nil {
			if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", *pid); err != nil {
				return err
			}
		}
		_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
		if err == nil {
			return nil
		}
		if attempt > 50 {
			return fmt.Errorf("dropping replication slot %s: %w", slot, err)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// deleteRange deletes the rows of filters from tables (in the given order),
// batch rows at a time with pause between batches (batch 0: one
// statement per table).
func deleteRange(ctx context.Context, conn *pgx.Conn, tables []tableDef, filters map[string]string, batch int, pause time.Duration, progress func(int64)) error {
	for _, t := range tables {
		if batch <= 0 {
			if _, err := conn.Exec(ctx, "DELETE FROM "+qualified(t.Name)+" WHERE "+filters[t.Name]); err != nil {
				return err
			}
			continue
		}
		q := fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %s WHERE %s LIMIT %d))", qualified(t.Name), qualified(t.Name), filters[t.Name], batch)
		for {
			tag, err := conn.Exec(ctx, q)
			if err != nil {
				return err
			}
			if progress != nil {
				progress(tag.RowsAffected())
			}
			if tag.RowsAffected() == 0 {
				break
			}
			if pause > 0 && !sleepCtx(ctx, pause) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// connectAll opens one connection per part's database on addr.
func (c *Controller) connectAll(ctx context.Context, addr string, parts []dbPart) ([]*pgx.Conn, error) {
	out := make([]*pgx.Conn, 0, len(parts))
	for _, p := range parts {
		conn, err := c.opts.Connect(ctx, addr, p.DB)
		if err != nil {
			closeAll(out)
			return nil, err
		}
		out = append(out, conn)
	}
	return out, nil
}

func closeAll(conns []*pgx.Conn) {
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.Close(ctx)
		cancel()
	}
}

// sortedSpans returns spans sorted by Lo.
func sortedSpans(s []topology.Span) []topology.Span {
	out := append([]topology.Span(nil), s...)
	sort.Slice(out, func(i, j int) bool { return out[i].Lo < out[j].Lo })
	return out
}
