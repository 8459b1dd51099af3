package proxy

import (
	"errors"
	"time"

	"github.com/shardproxy/shardproxy/topology"
)

// A pipelined batch outside a transaction block (extended-protocol
// messages up to one Sync) is one implicit transaction in PostgreSQL: it
// commits at the Sync, or not at all when a statement of it fails. psycopg
// 3's executemany, pgx's SendBatch and JDBC's executeBatch send their rows
// that way. When such a batch writes on a second shard (or runs a write
// over several), the proxy turns it into a transaction of its own: the
// implicit transaction of every primary connection the batch used so far
// becomes a transaction block (a BEGIN inside an implicit transaction takes
// the statements before it along), connections the batch uses next join
// with BEGIN, and at the client's Sync the proxy commits them all with
// two-phase commit, or rolls them all back when anything in the batch
// failed. The client sees what PostgreSQL sends: the statements' results,
// then ReadyForQuery idle.

// beginImplicitTx opens the proxy's transaction around the batch: every
// primary connection the batch uses so far turns its implicit transaction
// into a transaction block with a simple Query BEGIN once its responses are
// in (see above); replica connections are given back; connections that
// join later begin when they attach.
func (ss *session) beginImplicitTx(snap *topology.Snapshot) error {
	return ss.beginImplicitTxWith(snap, "BEGIN")
}

// beginImplicitTxWith is beginImplicitTx with begin as the BEGIN statement
// (the client's own, when the transaction becomes its block).
func (ss *session) beginImplicitTxWith(snap *topology.Snapshot, begin string) error {
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip {
		return errBatchFailed // a statement before failed: the batch is over
	}
	// Replica connections of the batch only read: their part ends here
	// (synced, released), so no write of the transaction can reach them.
	if ss.onReplica(snap) {
		if err := ss.leaveReplica(); err != nil {
			return err
		}
		if ss.skip {
			return errBatchFailed
		}
		ss.batch = true
	}
	for i := 0; i < len(ss.held); {
		if !ss.leaveHeldReplica(snap, i) {
			i++
		}
	}
	ss.implicitTx = true
	ss.batchFailed = false
	ss.txBegin = begin
	if ss.sc != nil && !ss.scTx {
		if err := ss.runRaw(appendQuery(nil, begin)); err != nil {
			return err
		}
	}
	for i := 0; i < len(ss.held); i++ {
		if h := &ss.held[i]; !h.inTx {
			if err := ss.runOnShard(snap, h.shard, begin); err != nil {
				return err
			}
		}
	}
	return nil
}

// errBatchFailed stops a statement of a pipelined batch in which an
// earlier one failed: its error is already on the way to the client.
var errBatchFailed = errors.New("proxy: the batch already failed")

// syncImplicitTx answers the client's Sync of a batch the proxy turned into
// a transaction: every connection finishes the batch, then all commit (two-
// phase) or, when anything in the batch failed, all roll back; the client
// gets ReadyForQuery idle.
func (ss *session) syncImplicitTx(snap *topology.Snapshot) error {
	commitErr, err := ss.endImplicitTx(snap)
	if err != nil {
		return err
	}
	ss.multiAtSync() // the batch's portals end with it, as PostgreSQL's do
	ss.skip = false
	ss.batch = false
	if commitErr != nil {
		ss.sendError(toErrorFields(commitErr))
	}
	ss.out = appendRFQ(ss.out, 'I')
	ss.observeRequest()
	ss.start = time.Time{}
	return nil
}

// endImplicitTx ends the proxy's transaction around a batch: every
// connection finishes the batch's messages (Sync), then all commit (two-
// phase) or, when anything in the batch failed, all roll back. The
// transaction is over either way, unless err (a lost server) comes back;
// commitErr is the commit's failure, for the client.
func (ss *session) endImplicitTx(snap *topology.Snapshot) (commitErr, err error) {
	if err := ss.settle(); err != nil {
		return nil, err
	}
	if err := ss.syncHeld(); err != nil {
		return nil, err
	}
	if ss.sc != nil && ss.scBatch {
		if err := ss.runRaw(appendEmpty(nil, msgSync)); err != nil {
			if isServerGone(err) {
				return nil, err
			}
			ss.batchFailed = true
		}
		ss.scBatch = false
	}
	failed := ss.batchFailed || ss.txAborted || ss.txStatus == 'E' || (ss.sc != nil && ss.scStatus == 'E')
	if failed {
		ss.rollbackShards(snap, ss.txShards())
	} else {
		_, commitErr = ss.commitExtended(snap)
		if isServerGone(commitErr) {
			return nil, commitErr
		}
	}
	ss.txStatus = 'I'
	ss.resetTx()
	return commitErr, nil
}
