package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/topology"
)

// Routing over several shards.
//
// A topology with one shard needs none of this: every statement goes to
// that shard's pool exactly as a pooler would send it. With more shards
// each statement is planned (planner.Plan) and:
//
//   - a Route whose SQL is the client's text goes the normal relay path on
//     that shard's server connection (useShard makes it the active one);
//   - everything else (Scatter, Broadcast, SplitInsert, AllocateKeys,
//     CopySplit, Explain, a Route with rewritten SQL) is run by the proxy
//     itself (exec.go), one shard at a time, after everything the client
//     sent earlier has been answered (settle);
//   - transaction control is the proxy's: BEGIN is answered without a
//     server and sent to each shard when the transaction first touches it,
//     COMMIT and ROLLBACK end every shard's part (the shard that wrote
//     last), savepoints are replayed on shards that join later. A
//     transaction that wrote on several shards commits with two-phase
//     commit (twophase.go); an implicit extended-protocol batch may write
//     on one shard only.
//
// The session keeps the active server connection in sc/sr/pool/shard and
// parks the others of its transaction (or open extended-protocol batch) in
// held.

// heldConn is a server connection of the session that is not the active
// one.
type heldConn struct {
	shard    string
	pool     *pool.Pool
	sc       *pool.ServerConn
	br       *bufio.Reader
	inTx     bool // the client's transaction block is open on it
	needSync bool // extended-protocol messages were sent since its last Sync
}

// snapInfo is what routing needs from a snapshot, computed once per
// snapshot.
type snapInfo struct {
	sharded bool
	primary map[string]string // shard → primary host:port
}

type snapInfoKey struct{}

func infoOf(snap *topology.Snapshot) *snapInfo {
	return snap.Memo(snapInfoKey{}, func(s *topology.Snapshot) any {
		in := &snapInfo{primary: make(map[string]string)}
		shards := s.Shards()
		for _, sh := range shards {
			in.primary[sh.Name] = sh.Primary
		}
		in.sharded = len(shards) > 1
		return in
	}).(*snapInfo)
}

// snapshot returns the topology in effect and whether the session routes
// through the planner (sharded) or relays to the one shard (the pooler
// path). When a topology change crosses one shard, the session changes
// paths only between statements (switchPath): the two paths keep a batch's
// portals, a transaction's connections and pending replies in different
// places, so changing in the middle of one would lose them.
func (ss *session) snapshot() (*topology.Snapshot, bool) {
	snap := ss.srv.topo.Current()
	if snap != ss.lastSnap {
		if ss.lastSnap == nil {
			ss.lastSharded = infoOf(snap).sharded
		}
		ss.lastSnap, ss.wantSharded = snap, infoOf(snap).sharded
	}
	if ss.wantSharded != ss.lastSharded {
		ss.switchPath(snap)
	}
	return snap, ss.lastSharded
}

// switchPath moves the session to the path snap wants when nothing is in
// flight: no transaction block, no batch or pending replies, no other
// connections held. An attached server connection (a pinned or
// session-mode session) stays when it is on snap's default shard (the
// shard the pooler path uses and the planner's first choice), is released
// when it may be, and otherwise keeps the session on its path until it is
// released.
func (ss *session) switchPath(snap *topology.Snapshot) {
	if ss.txStatus != 'I' || ss.batch || ss.pendingCount() > 0 || len(ss.sout) > 0 || len(ss.held) > 0 ||
		ss.txBegin != "" || len(ss.multi) > 0 || ss.suspended != nil || ss.execing {
		return
	}
	if ss.sc != nil {
		def := snap.DefaultShard()
		switch {
		case ss.pool != nil && infoOf(snap).primary[def] == ss.pool.Key().Backend:
			ss.shard = def
		case ss.releasable():
			ss.detach()
		default:
			return
		}
	}
	ss.lastSharded = ss.wantSharded
}

// shardPool returns the session's pool for shard's primary.
func (ss *session) shardPool(snap *topology.Snapshot, shard string) (*pool.Pool, error) {
	addr, ok := infoOf(snap).primary[shard]
	if !ok {
		return nil, &plan.Error{Code: "42704", Message: fmt.Sprintf("shard %q does not exist", shard)}
	}
	if ss.pool != nil && ss.pool.Key().Backend == addr {
		return ss.pool, nil
	}
	return ss.srv.poolFor(pool.Key{User: ss.key.User, Database: ss.key.Database, Backend: addr}), nil
}

// useShard makes shard's server connection the active one: the current
// one is settled and parked (or released when nothing holds it), a held
// one is taken back, or a new one is acquired (and joins the open
// transaction). After an error in what was settled, ss.skip is set and the
// caller must not send anything.
func (ss *session) useShard(snap *topology.Snapshot, shard string) error {
	if err := ss.endSuspended(); err != nil { // it holds shards' connections
		return err
	}
	if err := ss.leaveReplicaFor(snap); err != nil || ss.skip {
		return err
	}
	if ss.shard == shard && ss.sc != nil {
		return nil
	}
	if ss.sc != nil {
		if err := ss.settle(); err != nil {
			return err
		}
		if ss.skip {
			return nil
		}
		if ss.sc != nil {
			if ss.releasable() && !ss.scTx && !ss.execing {
				ss.detach()
			} else {
				ss.park()
			}
		}
	}
	for i := range ss.held {
		if ss.held[i].shard == shard {
			if ss.leaveHeldReplica(snap, i) {
				break // a replica's: not for this, the primary's is acquired
			}
			ss.unpark(i)
			return ss.joinTx()
		}
	}
	p, err := ss.shardPool(snap, shard)
	if err != nil {
		return err
	}
	ss.pool, ss.shard = p, shard
	return ss.ensureServer()
}

// joinTx brings the active connection into the client's open transaction
// when it is not in it: a new one (attach), or a held one made active again
// that was held from before the transaction began (e.g. by a statement the
// proxy ran itself), whose statements would otherwise run outside it.
func (ss *session) joinTx() error {
	if ss.scTx || ss.scBatch || !ss.inTransaction() {
		return nil
	}
	if err := ss.runRaw(appendQuery(nil, ss.beginOnJoin())); err != nil {
		if isServerGone(err) {
			ss.abandonServer(err)
		}
		return err
	}
	return nil
}

// settle sends what is queued for the active server connection and relays
// every pending response, so nothing is in flight on it.
func (ss *session) settle() error {
	if ss.pendingCount() == 0 && len(ss.sout) == 0 {
		return nil
	}
	if ss.sc != nil && ss.batch {
		ss.sout = appendEmpty(ss.sout, msgFlush)
	}
	if ss.sc != nil {
		if err := ss.flushServer(); err != nil {
			return err
		}
	}
	return ss.drain()
}

// park moves the settled active connection to held.
func (ss *session) park() {
	if ss.sc != nil && ss.scStatus == 'E' && ss.txStatus == 'E' {
		// The block failed on this connection; the one the session uses
		// next reports 'T': the proxy keeps the failure (an Execute of an
		// empty portal, a Close there, answered ready T, and a COMMIT then
		// committed that shard's part).
		ss.txAborted = true
	}
	ss.held = append(ss.held, heldConn{shard: ss.shard, pool: ss.pool, sc: ss.sc, br: ss.sr.br,
		inTx: ss.scTx, needSync: ss.batch && ss.scBatch})
	ss.sr.br = nil
	ss.sc = nil
	ss.scTx = false
	ss.scBatch = false
	ss.current.Store(nil)
}

// unpark makes held[i] the active connection.
func (ss *session) unpark(i int) {
	h := ss.held[i]
	ss.held = append(ss.held[:i], ss.held[i+1:]...)
	ss.sc, ss.pool, ss.shard, ss.scTx, ss.scBatch = h.sc, h.pool, h.shard, h.inTx, h.needSync
	ss.sr = msgReader{br: h.br, maxLen: 1 << 30}
	ss.current.Store(h.sc)
}

// releaseHeld gives back held connections once the transaction and batch
// are over (idlePoint); one still inside a transaction is discarded.
func (ss *session) releaseHeld() {
	for _, h := range ss.held {
		h.br.Reset(nil)
		readerPool.Put(h.br)
		if h.inTx || h.needSync {
			h.sc.MarkBroken()
			h.pool.Discard(h.sc)
			continue
		}
		h.pool.Release(h.sc, false)
	}
	ss.held = ss.held[:0]
}

// abortBatchWork ends the implicit transaction of every connection with
// extended-protocol messages since its last Sync (the active one and held
// ones) by making it fail: a Describe of a statement that does not exist,
// then Sync. Their work in the batch rolls back; the answers are consumed
// (the client got the batch's error already).
func (ss *session) abortBatchWork() error {
	poison := appendEmpty(appendDescribeStmt(nil, missingServerStmt), msgSync)
	if ss.sc != nil && ss.scBatch {
		status, err := ss.exchange(ss.sc.Conn, &ss.sr, poison)
		if isServerGone(err) {
			return err
		}
		ss.noteServerStatus(status)
		ss.scBatch = false
	}
	for i := range ss.held {
		h := &ss.held[i]
		if !h.needSync {
			continue
		}
		status, err := ss.exchangeHeld(h, poison)
		if isServerGone(err) {
			return err
		}
		h.needSync, h.inTx = false, status != 'I'
	}
	return nil
}

// syncHeld sends Sync to held connections with an open extended batch and
// consumes their ReadyForQuery (the active connection's goes to the client).
func (ss *session) syncHeld() error {
	for i := range ss.held {
		h := &ss.held[i]
		if !h.needSync {
			continue
		}
		status, err := ss.exchangeHeld(h, appendEmpty(nil, msgSync))
		var sg *errServerGone
		if errors.As(err, &sg) {
			return err
		}
		h.needSync = false
		h.inTx = status != 'I'
	}
	return nil
}

// exchangeHeld runs msgs (ending in Sync or a Query) on a held connection
// and consumes everything up to ReadyForQuery. A lost connection is
// dropped from held and returned as *errServerGone.
func (ss *session) exchangeHeld(h *heldConn, msgs []byte) (byte, error) {
	r := msgReader{br: h.br, maxLen: 1 << 30}
	status, err := ss.exchange(h.sc.Conn, &r, msgs)
	if isServerGone(err) {
		ss.dropHeld(h)
	}
	return status, err
}

// dropHeld discards a held connection whose server is gone.
func (ss *session) dropHeld(h *heldConn) {
	for i := range ss.held {
		if &ss.held[i] == h {
			h.sc.MarkBroken()
			h.pool.Discard(h.sc)
			h.br.Reset(nil)
			ss.held = append(ss.held[:i], ss.held[i+1:]...)
			return
		}
	}
}

// runRaw runs msgs (ending in Sync or a Query) on the active connection and
// consumes everything up to ReadyForQuery.
func (ss *session) runRaw(msgs []byte) error {
	if len(ss.sout) > 0 {
		msgs = append(ss.sout, msgs...)
		ss.sout = ss.sout[:0]
	}
	status, err := ss.exchange(ss.sc.Conn, &ss.sr, msgs)
	var sg *errServerGone
	if errors.As(err, &sg) {
		return err
	}
	ss.noteServerStatus(status)
	return err
}

// exchange writes msgs to a server connection and reads up to
// ReadyForQuery, relaying notices and notifications to the client. It
// returns the ReadyForQuery status and the first server error as a
// *sqlError, or *errServerGone when the connection failed.
func (ss *session) exchange(c interface{ Write([]byte) (int, error) }, r *msgReader, msgs []byte) (byte, error) {
	if _, err := c.Write(msgs); err != nil {
		return 0, &errServerGone{err}
	}
	var first error
	for {
		typ, body, err := r.next()
		if err != nil {
			return 0, &errServerGone{err}
		}
		switch typ {
		case msgErrorResponse:
			if isFatal(body) {
				return 0, &errServerGone{&sqlError{decodeError(body)}}
			}
			if first == nil {
				first = &sqlError{decodeError(body)}
			}
		case msgNotification, msgNoticeResponse:
			ss.out = appendMsg(ss.out, typ, body)
		case msgReadyForQuery:
			if len(body) != 1 {
				return 0, &errServerGone{fmt.Errorf("malformed ReadyForQuery")}
			}
			return body[0], first
		}
	}
}

// noteServerStatus records the transaction status the active server
// connection reported.
func (ss *session) noteServerStatus(status byte) {
	ss.scStatus = status
	ss.scTx = status != 'I'
}

// parseShard is where a Parse or statement Describe of a goes: the shard a
// hint names, the default shard when it names tables the topology does not
// list (catalogs, unsharded tables live there), else the active shard.
func (ss *session) parseShard(snap *topology.Snapshot, a *planner.Analysis) string {
	if a.Hint != "" && snap.HasShard(a.Hint) {
		return a.Hint
	}
	if ss.forcedShard != "" && snap.HasShard(ss.forcedShard) {
		return ss.forcedShard
	}
	for _, st := range a.Statements {
		for _, t := range st.Tables {
			if _, ok := snap.Table(t); !ok {
				return snap.DefaultShard()
			}
		}
	}
	if ss.sc != nil && snap.HasShard(ss.shard) {
		return ss.shard
	}
	return snap.DefaultShard()
}

// checkWrite records the shards a transaction writes on. Inside a
// transaction block any number may be written (COMMIT uses two-phase
// commit when there are several). An extended-protocol batch outside one
// is one implicit transaction in PostgreSQL: when it writes on a second
// shard the proxy makes it a transaction of its own, committed with
// two-phase commit at the Sync (implicit_tx.go). Only after a write the
// proxy already committed on several shards itself (INSERT … SELECT, a
// key update) is another write of the batch refused.
func (ss *session) checkWrite(shards []string) error {
	if ss.txStatus == 'I' && !ss.batch {
		return nil
	}
	explicit := ss.inTransaction()
	for _, s := range shards {
		if ss.txWriter == "" {
			ss.txWriter = s
		}
		if !slices.Contains(ss.txWriters, s) {
			ss.txWriters = append(ss.txWriters, s)
		}
		if explicit || ss.txWriter == s {
			continue
		}
		if ss.txWriter == multiShardWriter {
			return &plan.Unsupported{
				Message: "a write after a write to several shards in the same pipelined batch is not supported",
				Hint:    "wrap the batch in BEGIN … COMMIT (two-phase commit makes it atomic), or send a Sync between the writes",
			}
		}
		snap, _ := ss.snapshot()
		if err := ss.beginImplicitTx(snap); err != nil {
			return err
		}
		explicit = true
	}
	return nil
}

// inTransaction reports whether the client's statements run inside a
// transaction block: one the client opened (also with a BEGIN earlier in
// this pipelined batch, before any ReadyForQuery said so), or one the
// proxy opened around a batch.
func (ss *session) inTransaction() bool { return ss.txStatus != 'I' || ss.txBegin != "" }

// abortedError is PostgreSQL's answer to statements in a failed transaction.
var abortedError = errorFields{Code: "25P02", Message: "current transaction is aborted, commands ignored until end of transaction block"}

// failInTx reports a proxy-raised error inside a transaction block (also
// one a BEGIN earlier in the same pipelined batch opened, before any
// ReadyForQuery said so): like PostgreSQL, the transaction is aborted, so
// nothing of it commits.
func (ss *session) failInTx() {
	if ss.txStatus != 'I' || ss.txBegin != "" {
		ss.txAborted = true
		ss.txStatus = 'E'
	}
}

// blockedByAbort reports whether a statement for shard must get 25P02
// because the transaction failed somewhere other than on that shard's
// server connection (whose own server would answer 25P02 itself).
func (ss *session) blockedByAbort(shard string) bool {
	if ss.txStatus != 'E' {
		return false
	}
	if ss.txAborted {
		return true
	}
	if ss.sc != nil && ss.shard == shard {
		return ss.scStatus != 'E'
	}
	for _, h := range ss.held {
		if h.shard == shard {
			return true // a held connection is never the failed one: failures happen on the active one
		}
	}
	return true
}

// txShards returns the shards whose connections are inside the client's
// transaction block.
func (ss *session) txShards() []string {
	var out []string
	if ss.sc != nil && ss.scTx {
		out = append(out, ss.shard)
	}
	for _, h := range ss.held {
		if h.inTx {
			out = append(out, h.shard)
		}
	}
	return out
}

// resetTx forgets the state of a finished transaction.
func (ss *session) resetTx() {
	ss.txBegin = ""
	ss.txReplay = ss.txReplay[:0]
	ss.txWriter = ""
	ss.txWriters = ss.txWriters[:0]
	ss.txAborted = false
	ss.implicitTx = false
	ss.endCursorReads()
}

// beginOnJoin is the SQL that brings a connection joining an open
// transaction into it: BEGIN (as the client wrote it) and the savepoints
// made so far.
func (ss *session) beginOnJoin() string {
	b := ss.txBegin
	if b == "" {
		b = "BEGIN"
	}
	if len(ss.txReplay) == 0 {
		return b
	}
	return b + ";\n" + strings.Join(ss.txReplay, ";\n")
}

// routeNotice sends the shardproxy.show_routes NOTICE for op.
func (ss *session) routeNotice(op plan.Operator) {
	if !ss.showRoutes {
		return
	}
	ss.out = appendNotice(ss.out, "shardproxy: "+strings.Join(plan.Lines(op), "; "))
}

// sessionStatementShard is where a statement the planner leaves to the
// session rules goes (SET, SHOW, LISTEN ...): the active shard, else the
// default shard.
func (ss *session) sessionStatementShard(snap *topology.Snapshot) string {
	if ss.forcedShard != "" && snap.HasShard(ss.forcedShard) {
		return ss.forcedShard
	}
	if ss.sc != nil && snap.HasShard(ss.shard) {
		return ss.shard
	}
	return snap.DefaultShard()
}

var errNotRoutable = errors.New("not routable")
