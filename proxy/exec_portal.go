package proxy

import (
	"encoding/binary"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Execute with a row limit on a portal the proxy runs itself (a read over
// several shards): the first Execute starts the read on every shard and
// sends up to the limit, then PortalSuspended; the next Execute of the
// portal continues the same merge. The running read holds its shards'
// connections, so it lives only until something else needs a connection:
// Sync (outside or inside a transaction block), another statement of the
// session (useShard), or the client leaving all end it (endSuspended),
// and an Execute of an ended portal fails with 0A000. One suspended portal
// per session (session.suspended).

// executeMulti runs a multiPortal for Execute (body is the Execute
// message's body: portal name, row limit).
func (ss *session) executeMulti(snap *topology.Snapshot, mp *multiPortal, body []byte) error {
	limit := executeLimit(body)
	if s, ok := mp.op.(*plan.Session); ok {
		return ss.executeCursorStatement(s, mp.resultFormats)
	}
	if mp.cursor != nil || (limit > 0 && rowsPlan(mp.op) && ss.inTxBlock() && !mp.done && mp.live == nil && !mp.ended) {
		return ss.executeCursorPortal(snap, mp, limit)
	}
	if mp.done {
		// Like PostgreSQL: a portal run to completion returns no more rows.
		ss.out = appendCommandComplete(ss.out, "SELECT 0")
		return nil
	}
	if mp.live != nil && ss.suspended == mp.live {
		return ss.continuePortal(mp, limit)
	}
	if mp.live != nil || mp.ended {
		return ss.failExtendedTx(&plan.Unsupported{
			Message: "this cross-shard portal was closed when another statement used its shards",
			Hint:    "fetch a cross-shard portal to its end before running other statements, or read it with a single Execute",
		})
	}
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip {
		return nil
	}
	if limit > 0 && rowsPlan(mp.op) {
		ss.execing = true
		src, err := ss.openRows(snap, mp)
		ss.execing = false
		if err != nil {
			return ss.failExtendedTx(err)
		}
		mp.live = src
		ss.suspended = src
		return ss.continuePortal(mp, limit)
	}
	ss.execing = true
	tag, err := ss.execPlan(snap, mp.op, mp.params, mp.resultFormats, &execOut{})
	ss.execing = false
	if err != nil {
		return ss.failExtendedTx(err)
	}
	ss.out = appendCommandComplete(ss.out, tag)
	return nil
}

// continuePortal sends the next rows of a suspended portal.
func (ss *session) continuePortal(mp *multiPortal, limit int) error {
	src := mp.live
	start := src.rows
	tag, err := ss.pumpRows(src, start+limit)
	if err != nil {
		ss.suspended, mp.ended = nil, true
		return ss.failExtendedTx(err)
	}
	if tag == "" && limit > 0 {
		ss.out = appendEmpty(ss.out, msgPortalSuspended)
		return nil
	}
	ss.suspended, mp.live, mp.done = nil, nil, true
	ss.out = appendCommandComplete(ss.out, tag)
	return nil
}

// openRows starts the read of a multiPortal whose plan returns rows.
func (ss *session) openRows(snap *topology.Snapshot, mp *multiPortal) (*rowSource, error) {
	out := &execOut{}
	if sc, ok := mp.op.(*plan.Scatter); ok {
		if ss.txStatus == 'E' {
			return nil, &sqlError{abortedError}
		}
		return ss.openScatterRead(snap, sc, mp.params, mp.resultFormats, out)
	}
	return ss.openMerge(snap, mp.op, mp.params, mp.resultFormats, out)
}

// rowsPlan reports whether op is a cross-shard read the proxy can
// suspend: a read Scatter (not COPY) or merge operators over one.
func rowsPlan(op plan.Operator) bool {
	if sc, ok := op.(*plan.Scatter); ok {
		return !sc.Write && !isCopySQL(sc.SQL)
	}
	return isMergeOp(op)
}

// executeLimit is the row limit of an Execute body (0: no limit).
func executeLimit(body []byte) int {
	_, rest, ok := cstring(body)
	if !ok || len(rest) < 4 {
		return 0
	}
	n := int32(binary.BigEndian.Uint32(rest))
	if n < 0 {
		return 0
	}
	return int(n)
}

// endSuspended ends the session's suspended portal, if any: the shards
// still running are cancelled outside a transaction block, inside one
// read to the end (a cancel would abort the transaction); the rows left
// are dropped.
func (ss *session) endSuspended() error {
	src := ss.suspended
	if src == nil {
		return nil
	}
	ss.suspended = nil
	src.run.dropRows.Store(true)
	err := src.run.stop(ss.txStatus == 'I')
	if isServerGone(err) {
		return err
	}
	return nil
}
