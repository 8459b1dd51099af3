package proxy

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

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
	out := &execOut{describe: mp.describeOnExecute}
	mp.describeOnExecute = false
	if s, ok := mp.op.(*plan.Session); ok {
		return ss.executeCursorStatement(s, mp.resultFormats)
	}
	if stop, err := ss.resolvePullOut(snap, mp, limit); stop {
		return err // exec_pullout.go
	}
	if mp.cursor != nil || (limit > 0 && rowsPlan(mp.op) && ss.inTxBlock() && !mp.done && mp.live == nil && !mp.ended) {
		return ss.executeCursorPortal(snap, mp, limit)
	}
	if (mp.done || mp.spent) && ss.pendingCount() > 0 {
		// The answer follows the messages before it, and not at all
		// when one of them fails.
		if err := ss.settle(); err != nil || ss.skip {
			return err
		}
	}
	if mp.done {
		// Like PostgreSQL: a portal run to completion returns no more rows.
		ss.out = appendCommandComplete(ss.out, "SELECT 0")
		return nil
	}
	if mp.spent {
		// Like PostgreSQL: a write is not run twice by one portal.
		name, _, _ := cstring(body)
		return ss.failExtendedTx(newSQLError("55000", fmt.Sprintf("portal %q cannot be run", name)))
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
	if _, txControl := mp.op.(*batchTxOp); ss.batch && !ss.inTransaction() && ss.txWriter != "" && !txControl {
		// The plan's parts end with Sync on their shards, which would
		// commit the batch's earlier write there: the batch becomes the
		// proxy's transaction first, one implicit transaction as on
		// PostgreSQL.
		if err := ss.beginImplicitTx(snap); err != nil {
			return ss.failExtendedTx(err)
		}
	}
	if limit > 0 && rowsPlan(mp.op) {
		ss.execing = true
		src, err := ss.openRows(snap, mp, out)
		ss.execing = false
		if err != nil {
			return ss.failExtendedTx(err)
		}
		mp.live = src
		ss.suspended = src
		return ss.continuePortal(mp, limit)
	}
	ss.execing = true
	tag, err := ss.execPlan(snap, mp.op, mp.params, mp.resultFormats, out)
	ss.execing = false
	if err != nil {
		return ss.failExtendedTx(err)
	}
	if rowsPlan(mp.op) {
		mp.done = true
	} else {
		mp.spent = true
	}
	ss.noteSchemaChange(tag)
	ss.out = appendCommandComplete(ss.out, tag)
	return nil
}

// continuePortal sends the next rows of a suspended portal.
func (ss *session) continuePortal(mp *multiPortal, limit int) error {
	src := mp.live
	start := src.rows
	upTo := 0 // an Execute without a row limit reads the rest
	if limit > 0 {
		upTo = start + limit
	}
	tag, err := ss.pumpRows(src, upTo)
	if err != nil {
		ss.suspended, mp.ended = nil, true
		return ss.failExtendedTx(err)
	}
	if tag == "" && limit > 0 {
		ss.out = appendEmpty(ss.out, msgPortalSuspended)
		return nil
	}
	ss.suspended, mp.live, mp.done = nil, nil, true
	ss.out = appendCommandComplete(ss.out, lastExecuteTag(tag, src.rows-start))
	return nil
}

// lastExecuteTag makes the command tag of a portal's last Execute count
// the rows of that Execute only, as PostgreSQL's does ("SELECT 10" after
// Executes of 50, 50 and 10 rows): the row count is the tag's last field.
func lastExecuteTag(tag string, rows int) string {
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 {
		return tag
	}
	if _, err := strconv.Atoi(tag[i+1:]); err != nil {
		return tag
	}
	return tag[:i+1] + strconv.Itoa(rows)
}

// openRows starts the read of a multiPortal whose plan returns rows.
func (ss *session) openRows(snap *topology.Snapshot, mp *multiPortal, out *execOut) (*rowSource, error) {
	if sc, ok := mp.op.(*plan.Scatter); ok {
		if ss.txStatus == 'E' {
			return nil, &sqlError{abortedError}
		}
		return ss.openScatterRead(snap, sc, mp.params, mp.resultFormats, out)
	}
	return ss.openMerge(snap, mp.op, mp.params, mp.resultFormats, out)
}

// deferDescribe answers a Describe of a multiPortal that reads rows
// together with the Execute of the same portal that the client sent right
// behind it (already buffered, as drivers send Parse/Bind/Describe/Execute
// in one write): the read then sends its RowDescription before the rows,
// instead of a round trip to a shard to describe the statement first. It
// reports whether it did (mp.describeOnExecute is then set); otherwise
// the Describe is answered on its own. A Describe whose Execute is not
// next, or whose Execute would not start the read (a cursor-backed
// portal, a portal already run or suspended), is never deferred.
func (ss *session) deferDescribe(mp *multiPortal) bool {
	if !rowsPlan(mp.op) || mp.cursor != nil || mp.live != nil || mp.done || mp.ended || ss.txStatus == 'E' {
		return false
	}
	portal, limit, ok := ss.peekExecute()
	if !ok || ss.multi[portal] != mp || (limit > 0 && ss.inTxBlock()) {
		return false // executeCursorPortal runs a limited Execute in a transaction block
	}
	mp.describeOnExecute = true
	return true
}

// peekExecute returns the portal name and row limit of the client's next
// message when it is an Execute already read into the buffer; it never
// waits for the client.
func (ss *session) peekExecute() (portal string, limit int, ok bool) {
	br := ss.cr.br
	if br == nil || br.Buffered() < 5 {
		return "", 0, false
	}
	hdr, _ := br.Peek(5)
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if hdr[0] != msgExecute || n < 4 || 1+n > br.Buffered() {
		return "", 0, false
	}
	msg, _ := br.Peek(1 + n)
	name, _, ok := cstring(msg[5:])
	if !ok {
		return "", 0, false
	}
	return string(name), executeLimit(msg[5:]), true
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
