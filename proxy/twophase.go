package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Two-phase commit of transactions that wrote on several shards.
//
// At COMMIT the shards that were only read are committed first. The first
// shard written is the decision shard; every other written shard runs
// PREPARE TRANSACTION '<gid>' (all at once). When all are prepared, the
// decision shard inserts the decision row (shardproxy.commit_decisions)
// and COMMITs in one ordinary transaction — the commit point — and then
// the others run COMMIT PREPARED (all at once). A failed PREPARE, or a
// decision shard that refuses its COMMIT, rolls everything back and the
// client gets the shard's error.
//
// The gid is shardproxy:<node>:<boot>:<seq>:<decision shard>. The recovery
// loop (recoverLoop) looks for prepared transactions with that prefix on
// every shard and finishes those no live coordinator owns: ones of this
// process that are not in flight, of an earlier run of this node (another
// boot id), or — on the Raft leader only — of any node when older than
// recoveryGrace. To decide, recovery inserts an abort record for the gid
// on the decision shard: if the decision row is there (or arrives while the
// insert waits for the decision shard's transaction) the insert conflicts
// and the transaction commits; otherwise the abort record stands and the
// transaction is rolled back, and a late COMMIT of the decision shard
// could no longer insert its row.

const (
	gidPrefix      = "shardproxy:"
	decisionTable  = "shardproxy.commit_decisions"
	recoveryGrace  = 2 * time.Minute
	recoveryPeriod = 10 * time.Second
)

// twoPhase is the server-wide state of two-phase commit.
type twoPhase struct {
	boot     string // random per process: tells this run's transactions apart
	seq      atomic.Uint64
	inflight sync.Map // gid → true while its coordinator runs here
	tables   sync.Map // "shard/database" → true: the decision table exists there

	// hook, when set (tests), is called at the named points of a commit;
	// it may block or exit to simulate a coordinator that dies there.
	hook atomic.Pointer[func(stage string)]

	commits  prometheus.Counter
	duration prometheus.Histogram
	resolved *prometheus.CounterVec
	inDoubt  prometheus.Counter
}

func newTwoPhase() *twoPhase {
	var b [4]byte
	rand.Read(b[:])
	return &twoPhase{
		boot: hex.EncodeToString(b[:]),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardproxy_twophase_commits_total", Help: "Transactions committed with two-phase commit."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shardproxy_twophase_commit_duration_seconds", Help: "Time from the first PREPARE to the last COMMIT PREPARED.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		inDoubt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardproxy_twophase_in_doubt_found_total", Help: "Prepared transactions found by the recovery loop without a live coordinator."}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardproxy_twophase_in_doubt_resolved_total", Help: "In-doubt prepared transactions finished by the recovery loop, by outcome."}, []string{"outcome"}),
	}
}

func (tp *twoPhase) collectors() []prometheus.Collector {
	return []prometheus.Collector{tp.commits, tp.duration, tp.inDoubt, tp.resolved}
}

func (tp *twoPhase) at(stage string) {
	if h := tp.hook.Load(); h != nil {
		(*h)(stage)
	}
}

// crashHook is the fault injection of SHARDPROXY_CRASH_AT=<stage>[:<n>]:
// the process exits (like a kill -9: connections are dropped, nothing is
// cleaned up) the n-th time (default 1) a two-phase commit reaches stage.
// End-to-end tests use it to check recovery; it is never set otherwise.
func crashHook(spec string, log func(string)) func(string) {
	stage, nth := spec, 1
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		if n, err := strconv.Atoi(spec[i+1:]); err == nil {
			stage, nth = spec[:i], n
		}
	}
	var count atomic.Int64
	return func(at string) {
		if at == stage && count.Add(1) == int64(nth) {
			log("SHARDPROXY_CRASH_AT reached " + spec + ": exiting")
			os.Exit(3)
		}
	}
}

// newGID names a distributed transaction coordinated by this process.
func (s *Server) newGID(decisionShard string) string {
	return fmt.Sprintf("%s%d:%s:%d:%s", gidPrefix, s.config().NodeID, s.twoPhase.boot, s.twoPhase.seq.Add(1), decisionShard)
}

// parsedGID is a gid taken apart.
type parsedGID struct {
	node          int
	boot          string
	decisionShard string
}

func parseGID(gid string) (parsedGID, bool) {
	if !strings.HasPrefix(gid, gidPrefix) {
		return parsedGID{}, false
	}
	f := strings.SplitN(strings.TrimPrefix(gid, gidPrefix), ":", 4)
	if len(f) != 4 {
		return parsedGID{}, false
	}
	node, err := strconv.Atoi(f[0])
	if err != nil {
		return parsedGID{}, false
	}
	return parsedGID{node: node, boot: f[1], decisionShard: f[3]}, true
}

// twoPhaseCommit commits the open transaction on writers (two or more
// shards, each inside the client's transaction block) with two-phase
// commit. nil means committed (notices about participants recovery must
// finish are queued for the client). An error before the commit point
// comes after everything was rolled back; a lost commit point is a 08006
// saying recovery decides. Either way the transaction is over on every
// writer afterwards.
func (ss *session) twoPhaseCommit(snap *topology.Snapshot, writers []string) error {
	tp := ss.srv.twoPhase
	if err := ss.ensureDecisionTable(snap, writers[0]); err != nil {
		return ss.abortTwoPhase(snap, writers, nil, "", err)
	}
	gid := ss.srv.newGID(writers[0])
	tp.inflight.Store(gid, true)
	defer tp.inflight.Delete(gid)
	start := time.Now()
	decision, others := writers[0], writers[1:]
	// Phase one: every other writer prepares, all at once.
	prepareSQL := make([]string, len(others))
	for i := range others {
		prepareSQL[i] = "PREPARE TRANSACTION " + quoteLiteral(gid)
	}
	var prepared []string
	var first error
	errs := ss.runOnShards(snap, others, prepareSQL, func(i int, err error) {
		if err == nil {
			prepared = append(prepared, others[i])
			tp.at(fmt.Sprintf("prepared-%d", len(prepared)))
		}
	})
	for _, err := range errs {
		if err != nil && (first == nil || isServerGone(first) && !isServerGone(err)) {
			first = err // a shard's own error explains more than a lost one
		}
	}
	if first != nil {
		return ss.abortTwoPhase(snap, writers, prepared, gid, first)
	}
	// The commit point: the decision shard commits its part together with
	// the decision row, in one ordinary transaction.
	// It must be durable before any participant commits, so an
	// asynchronous commit (synchronous_commit = off) is raised to a local
	// flush; stronger settings are kept.
	if err := ss.runOnShard(snap, decision, "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'; "+
		"INSERT INTO "+decisionTable+" (gid) VALUES ("+quoteLiteral(gid)+"); COMMIT"); err != nil {
		if !isServerGone(err) {
			// The shard refused its part (a deferred constraint, the
			// decision insert): nothing committed anywhere.
			ss.runOnShard(snap, decision, "ROLLBACK")
			return ss.abortTwoPhase(snap, others, prepared, gid, err)
		}
		return &sqlError{errorFields{Code: codeConnectionFailure, Message: "COMMIT failed on shard " + decision + " (" + err.Error() + ") for a transaction over shards " +
			strings.Join(writers, ", ") + "; its outcome is decided by recovery (transaction " + gid + ")"}}
	}
	tp.at("decided")
	// Every participant is decided; no connection is inside a transaction
	// block any more.
	saved := ss.txStatus
	ss.txStatus = 'I'
	defer func() { ss.txStatus = saved }()
	commits := make([]string, len(others))
	for i := range others {
		commits[i] = "COMMIT PREPARED " + quoteLiteral(gid)
	}
	done := 1
	ss.runOnShards(snap, others, commits, func(i int, err error) {
		if err != nil {
			ss.out = appendEncoded(ss.out, &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000",
				Message: "transaction " + gid + " is committed; COMMIT PREPARED is pending on shard " + others[i] + " and will be finished by recovery: " + err.Error()})
		}
		done++
		tp.at(fmt.Sprintf("committed-%d", done))
	})
	tp.commits.Inc()
	tp.duration.Observe(time.Since(start).Seconds())
	return nil
}

// abortTwoPhase rolls back a two-phase commit that failed before its
// commit point and returns the error for the client.
func (ss *session) abortTwoPhase(snap *topology.Snapshot, writers, prepared []string, gid string, err error) error {
	isPrepared := map[string]bool{}
	for _, p := range prepared {
		isPrepared[p] = true
	}
	saved := ss.txStatus
	ss.txStatus = 'I'
	for _, w := range writers {
		sql := "ROLLBACK"
		if isPrepared[w] {
			sql = "ROLLBACK PREPARED " + quoteLiteral(gid)
		}
		if rerr := ss.runOnShard(snap, w, sql); rerr != nil {
			ss.srv.log.Warn("two-phase commit: rollback failed; recovery will finish it", "shard", w, "gid", gid, "err", rerr)
		}
	}
	ss.txStatus = saved
	if isServerGone(err) {
		ss.srv.log.Warn("two-phase commit: shard connection lost before the commit point; rolled back", "gid", gid, "err", err)
		return &sqlError{errorFields{Code: codeConnectionFailure, Message: "a shard connection was lost during COMMIT; the transaction was rolled back"}}
	}
	return err
}

// ensureDecisionTable creates shardproxy.commit_decisions on shard (in the
// session's database) once per process.
func (ss *session) ensureDecisionTable(snap *topology.Snapshot, shard string) error {
	key := shard + "/" + ss.key.Database
	if _, ok := ss.srv.twoPhase.tables.Load(key); ok {
		return nil
	}
	p, err := ss.shardPool(snap, shard)
	if err != nil {
		return err
	}
	sc, err := p.Acquire(ss.srv.forceCtx)
	if err != nil {
		return err
	}
	_, err = simpleQuery(sc, "CREATE SCHEMA IF NOT EXISTS shardproxy; CREATE TABLE IF NOT EXISTS "+decisionTable+
		" (gid text PRIMARY KEY, committed boolean NOT NULL DEFAULT true, created timestamptz NOT NULL DEFAULT now()); "+
		"ALTER TABLE "+decisionTable+" ADD COLUMN IF NOT EXISTS committed boolean NOT NULL DEFAULT true")
	if err != nil && !isServerGone(err) {
		// Concurrent creators race on the catalog; the table exists then.
		var se *sqlError
		if errors.As(err, &se) && (se.f.Code == "23505" || se.f.Code == "42P07" || se.f.Code == "42P06") {
			err = nil
		}
	}
	if isServerGone(err) {
		sc.MarkBroken()
		p.Discard(sc)
		return err
	}
	p.Release(sc, false)
	if err != nil {
		return err
	}
	ss.srv.twoPhase.tables.Store(key, true)
	return nil
}

// recoverLoop finishes in-doubt prepared transactions until ctx ends.
func (s *Server) recoverLoop(ctx context.Context) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.recoverOnce(ctx, first)
		first = false
		t.Reset(recoveryPeriod)
	}
}

// RecoverPreparedNow runs one recovery pass (for tests and shardctl).
func (s *Server) RecoverPreparedNow(ctx context.Context) { s.recoverOnce(ctx, false) }

// recoverOnce scans every shard's prepared transactions once.
func (s *Server) recoverOnce(ctx context.Context, startup bool) {
	snap := s.topo.Current()
	if !infoOf(snap).sharded {
		return
	}
	for _, sh := range snap.Shards() {
		c, err := s.adminConnect(ctx, sh.Primary, "postgres")
		if err != nil {
			s.log.Debug("two-phase recovery: cannot reach shard", "shard", sh.Name, "err", err)
			continue
		}
		if startup {
			if res, err := c.Exec(ctx, "SHOW max_prepared_transactions").ReadAll(); err == nil && len(res) == 1 && len(res[0].Rows) == 1 &&
				string(res[0].Rows[0][0]) == "0" {
				s.log.Error("shard has max_prepared_transactions = 0: transactions that write on several shards will fail to commit",
					"shard", sh.Name, "fix", "set max_prepared_transactions (e.g. 100) in postgresql.conf and restart the shard")
			}
		}
		res, err := c.Exec(ctx, "SELECT gid, database, extract(epoch FROM now() - prepared)::float8::text FROM pg_prepared_xacts WHERE gid LIKE 'shardproxy:%'").ReadAll()
		c.Close(ctx)
		if err != nil || len(res) != 1 {
			continue
		}
		for _, row := range res[0].Rows {
			gid, db := string(row[0]), string(row[1])
			age, _ := strconv.ParseFloat(string(row[2]), 64)
			if !s.ownsNoLonger(gid, time.Duration(age*float64(time.Second))) {
				continue
			}
			s.twoPhase.inDoubt.Inc()
			if err := s.resolve(ctx, snap, sh.Name, gid, db); err != nil {
				s.log.Warn("two-phase recovery: cannot resolve", "shard", sh.Name, "gid", gid, "err", err)
			}
		}
	}
}

// ownsNoLonger reports whether no live coordinator can still finish gid.
func (s *Server) ownsNoLonger(gid string, age time.Duration) bool {
	p, ok := parseGID(gid)
	if !ok {
		return false
	}
	if p.node == s.config().NodeID {
		if p.boot != s.twoPhase.boot {
			return true // an earlier run of this proxy
		}
		if _, running := s.twoPhase.inflight.Load(gid); running {
			return false
		}
		return age > 5*time.Second
	}
	// Another node's: only the Raft leader finishes those (any node when
	// the topology is not replicated), after the grace period.
	return age > recoveryGrace && s.leadsRecovery()
}

// leadsRecovery reports whether this proxy finishes other nodes' in-doubt
// transactions: the Raft leader, or every proxy without Raft.
func (s *Server) leadsRecovery() bool {
	if l, ok := s.topo.(interface{ IsLeader() bool }); ok {
		return l.IsLeader()
	}
	return true
}

// resolve finishes gid on shard (database db) from the decision record.
func (s *Server) resolve(ctx context.Context, snap *topology.Snapshot, shard, gid, db string) error {
	p, _ := parseGID(gid)
	dsh, ok := snap.Shard(p.decisionShard)
	if !ok {
		return fmt.Errorf("decision shard %q is not in the topology", p.decisionShard)
	}
	dc, err := s.adminConnect(ctx, dsh.Primary, db)
	if err != nil {
		return err
	}
	defer dc.Close(ctx)
	commit := false
	res, err := dc.Exec(ctx, "SELECT 1 FROM pg_prepared_xacts WHERE gid = "+quoteLiteral(gid)).ReadAll()
	if err != nil {
		return err
	}
	if len(res) == 1 && len(res[0].Rows) == 1 {
		// Prepared on the decision shard too (older coordinators prepared
		// it): the commit point was not reached. Roll back there first so
		// no later pass can see a commit.
		if _, err := dc.Exec(ctx, "ROLLBACK PREPARED "+quoteLiteral(gid)).ReadAll(); err != nil {
			return err
		}
	} else {
		// The decision shard's ordinary transaction carries the decision
		// row. Inserting an abort record with the same key waits for that
		// transaction if it is still finishing, and then either conflicts
		// (it committed: the row decides) or stands (it never will).
		res, err := dc.Exec(ctx, "SET statement_timeout = '10s'; INSERT INTO "+decisionTable+" (gid, committed) VALUES ("+quoteLiteral(gid)+
			", false) ON CONFLICT (gid) DO NOTHING RETURNING 1; SELECT committed FROM "+decisionTable+" WHERE gid = "+quoteLiteral(gid)).ReadAll()
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42P01" {
				return err
			}
			// No decision table: no transaction ever committed there.
		} else if len(res) == 3 && len(res[1].Rows) == 0 && len(res[2].Rows) == 1 {
			commit = string(res[2].Rows[0][0]) == "t"
		}
	}
	if shard != p.decisionShard {
		sh, ok := snap.Shard(shard)
		if !ok {
			return fmt.Errorf("shard %q is not in the topology", shard)
		}
		c, err := s.adminConnect(ctx, sh.Primary, db)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		verb := "ROLLBACK PREPARED "
		if commit {
			verb = "COMMIT PREPARED "
		}
		if _, err := c.Exec(ctx, verb+quoteLiteral(gid)).ReadAll(); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42704" { // already finished
				return err
			}
		}
	}
	outcome := "rollback"
	if commit {
		outcome = "commit"
	}
	s.twoPhase.resolved.WithLabelValues(outcome).Inc()
	s.log.Info("two-phase recovery: finished an in-doubt transaction", "gid", gid, "shard", shard, "outcome", outcome)
	// Decision rows are needed until every participant is finished; an
	// hour is far beyond any recovery pass.
	dc.Exec(ctx, "DELETE FROM "+decisionTable+" WHERE created < now() - interval '1 hour'").ReadAll()
	return nil
}

// adminConnect opens a connection of the proxy's own to a shard server
// with the configured server credentials (or the first user with a plain
// password, or postgres).
func (s *Server) adminConnect(ctx context.Context, addr, db string) (*pgconn.PgConn, error) {
	cfg := s.config()
	user, password := cfg.Server.User, cfg.Server.Password
	if user == "" {
		user = "postgres"
		for _, u := range cfg.Users {
			if isPlainPassword(u.Password) {
				user, password = u.Name, u.Password
				break
			}
		}
	}
	host, port, _ := strings.Cut(addr, ":")
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	dsn := fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable connect_timeout=5", quoteConnValue(host), quoteConnValue(port), quoteConnValue(user), quoteConnValue(db))
	if password != "" {
		dsn += " password=" + quoteConnValue(password)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgconn.Connect(cctx, dsn)
}

func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// runOnShards runs sqls[i] on shards[i]'s connection in the transaction,
// all at once: every request is sent before any answer is read. Shards
// without a connection here run one after another, last. each, when set,
// is called as each answer arrives. It returns each shard's
// error (nil for success).
func (ss *session) runOnShards(snap *topology.Snapshot, shards, sqls []string, each func(i int, err error)) []error {
	errs := make([]error, len(shards))
	targets := make([]*copyTarget, len(shards))
	for i, sh := range shards {
		t := ss.copyTargetFor(sh)
		if t == nil {
			continue
		}
		if t.held == nil && len(ss.sout) > 0 {
			t.buf = append(t.buf, ss.sout...)
			ss.sout = ss.sout[:0]
		}
		t.buf = appendQuery(t.buf, sqls[i])
		if _, err := t.w.Write(t.buf); err != nil {
			errs[i] = &errServerGone{err}
			continue
		}
		t.buf = t.buf[:0]
		targets[i] = t
	}
	var gone []string // held connections to drop once all are read
	for i, t := range targets {
		switch {
		case t != nil:
			status, _, err := ss.finishCopy(t)
			errs[i] = err
			switch {
			case isServerGone(err) && t.held != nil:
				gone = append(gone, t.shard)
			case isServerGone(err):
			case t.held != nil:
				t.held.inTx = status != 'I'
			default:
				ss.noteServerStatus(status)
			}
		default:
			continue // not sent
		}
		if each != nil {
			each(i, errs[i])
		}
	}
	for _, sh := range gone {
		for j := range ss.held {
			if ss.held[j].shard == sh {
				ss.dropHeld(&ss.held[j])
				break
			}
		}
	}
	// Shards without a connection here (pointers into held are not used
	// past this point: useShard may reorder it).
	for i, t := range targets {
		if t != nil || errs[i] != nil {
			continue
		}
		errs[i] = ss.runOnShard(snap, shards[i], sqls[i])
		if each != nil {
			each(i, errs[i])
		}
	}
	return errs
}

// twoPhaseCommitOp is the plan of an extended-protocol COMMIT of a
// transaction that wrote on several shards: the proxy runs the two-phase
// commit when the portal executes, in the batch's order.
type twoPhaseCommitOp struct{}

func (*twoPhaseCommitOp) Inputs() []plan.Operator { return nil }

func (*twoPhaseCommitOp) Describe() plan.Description {
	return plan.Description{Name: "TwoPhaseCommit"}
}

// failedCommitOp is the plan of an extended-protocol COMMIT of a failed
// transaction: when the portal executes, the proxy rolls the transaction
// back on every shard and answers ROLLBACK, as PostgreSQL does. (Bound on
// one shard, the COMMIT would commit that shard's part when the failure
// was elsewhere: raised by the proxy, or on another shard.)
type failedCommitOp struct{}

func (*failedCommitOp) Inputs() []plan.Operator { return nil }

func (*failedCommitOp) Describe() plan.Description {
	return plan.Description{Name: "RollbackFailedTransaction"}
}

// rollbackFailed ends a failed transaction for failedCommitOp: ROLLBACK on
// every shard in it; its SET changes are dropped.
func (ss *session) rollbackFailed(snap *topology.Snapshot) (string, error) {
	for _, s := range ss.txShards() {
		if err := ss.runOnShard(snap, s, "ROLLBACK"); err != nil && isServerGone(err) {
			return "", err
		}
	}
	ss.pending = ss.pending[:0]
	ss.txStatus = 'I'
	ss.resetTx()
	ss.blockEnded = true
	return "ROLLBACK", nil
}

// commitExtended commits the client's transaction over several shards for
// an extended-protocol COMMIT; the transaction is over afterwards either
// way.
func (ss *session) commitExtended(snap *topology.Snapshot) (string, error) {
	shards := ss.txShards()
	writers := ss.txWriters
	isWriter := map[string]bool{}
	for _, w := range writers {
		isWriter[w] = true
	}
	for _, s := range shards {
		if !isWriter[s] {
			if err := ss.runOnShard(snap, s, "COMMIT"); err != nil && isServerGone(err) {
				return "", err
			}
		}
	}
	err := ss.twoPhaseCommit(snap, append([]string(nil), writers...))
	ss.txStatus = 'I'
	ss.resetTx()
	ss.blockEnded = true
	if err != nil {
		return "", err
	}
	return "COMMIT", nil
}
