package proxy

import (
	"strings"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
	"github.com/shardproxy/shardproxy/topology"
)

// Transaction control in the middle of a pipelined batch over shards.
//
// PostgreSQL runs the extended-protocol messages up to a Sync as one
// implicit transaction, and BEGIN, COMMIT and ROLLBACK inside such a batch
// act on it where they stand:
//
//   - outside a transaction block, BEGIN takes the statements before it
//     into the block it opens; COMMIT commits them and ROLLBACK rolls them
//     back, each with a WARNING that no transaction is in progress;
//   - a COMMIT or ROLLBACK that ends a block leaves the statements after
//     it outside any block: they are a new implicit transaction, which the
//     Sync commits (or an error in it rolls back).
//
// Over shards the batch's statements are spread over several server
// connections, each with its own implicit transaction, so the proxy does
// on every connection what the statement does on PostgreSQL's one:
// BEGIN on all of them (beginImplicitTx, then the transaction is the
// client's), or a Sync on all of them (syncMidBatch; after a poison
// Describe for a ROLLBACK) without a ReadyForQuery to the client, whose
// batch goes on.

// batchTxOp is the plan of a BEGIN, COMMIT or ROLLBACK bound outside a
// transaction block after statements of the same batch ran: the proxy
// runs it over every connection of the batch when its portal runs.
type batchTxOp struct {
	verb string // "begin", "commit" or "rollback"
	sql  string // the statement as the client wrote it
}

func (*batchTxOp) Inputs() []plan.Operator { return nil }

func (o *batchTxOp) Describe() plan.Description {
	return plan.Description{Name: "BatchTransactionControl", Fields: map[string]any{"statement": o.verb}}
}

// clientBlockOpen reports whether the client has a transaction block open
// (also one a BEGIN earlier in this batch opened, before any
// ReadyForQuery said so); the proxy's own transaction around a batch
// (implicitTx) is not one.
func (ss *session) clientBlockOpen() bool {
	return ss.txStatus == 'E' || ss.inTxBlock()
}

// batchTxControl returns the plan for a Bind of transaction control verb
// (o.Name of the planner's Session) outside a transaction block, or nil
// when the statement goes to a server as usual: nothing of the batch ran
// before it, so there is nothing on other connections to act on.
func (ss *session) batchTxControl(verb, sql string) *batchTxOp {
	if !ss.batchExecuted || ss.clientBlockOpen() {
		return nil
	}
	switch verb {
	case "begin", "commit", "rollback":
		return &batchTxOp{verb: verb, sql: sql}
	}
	return nil
}

// runBatchTxOp runs o at its Execute and returns its command tag.
func (ss *session) runBatchTxOp(snap *topology.Snapshot, o *batchTxOp) (string, error) {
	if err := ss.settle(); err != nil {
		return "", err
	}
	if ss.skip {
		return "", errBatchFailed // an error before it: PostgreSQL skips it with the rest of the batch
	}
	if o.verb == "begin" {
		if ss.implicitTx && !plainBegin(o.sql) {
			return "", &plan.Unsupported{Message: "transaction modes in a BEGIN after statements on several shards in the same pipelined batch are not supported",
				Hint: "send the BEGIN first in the batch, or a Sync before it"}
		}
		if !ss.implicitTx {
			if err := ss.beginImplicitTxWith(snap, o.sql); err != nil {
				return "", err
			}
		}
		// The transaction around the batch is the client's block now.
		ss.implicitTx = false
		ss.txBegin = o.sql
		ss.batchExecuted = false
		return "BEGIN", nil
	}
	// COMMIT or ROLLBACK: every connection's implicit transaction commits
	// at the Sync syncMidBatch sends, or rolls back after a poison
	// Describe (abortBatchWork); the proxy's own transaction around the
	// batch ends as at the client's Sync (endImplicitTx).
	rollback := o.verb == "rollback"
	ss.out = appendWarning(ss.out, "25P01", "there is no transaction in progress")
	if ss.implicitTx {
		ss.batchFailed = ss.batchFailed || rollback
		commitErr, err := ss.endImplicitTx(snap)
		if err == nil {
			err = commitErr
		}
		if err != nil {
			return "", err
		}
	} else if rollback {
		if err := ss.abortBatchWork(); err != nil {
			return "", err
		}
	}
	return strings.ToUpper(o.verb), ss.syncMidBatch()
}

// plainBegin reports whether sql is BEGIN or START TRANSACTION without
// transaction modes.
func plainBegin(sql string) bool {
	cs := sqlclass.Classify(sql)
	return len(cs) == 1 && cs[0].Kind == sqlclass.Begin && cs[0].Value == ""
}

// syncMidBatch ends the implicit transaction of every connection with
// messages of the batch as the client's Sync would (each commits), without
// a ReadyForQuery to the client, whose batch goes on: the statements after
// this point are a new implicit transaction.
func (ss *session) syncMidBatch() error {
	if err := ss.settle(); err != nil {
		return err
	}
	if err := ss.syncHeld(); err != nil {
		return err
	}
	if ss.sc != nil && ss.scBatch {
		status, err := ss.exchange(ss.sc.Conn, &ss.sr, appendEmpty(nil, msgSync))
		if isServerGone(err) {
			return err
		}
		ss.noteServerStatus(status)
		ss.scBatch = false
	}
	status := byte('I')
	if len(ss.txShards()) > 0 {
		status = 'T'
	}
	ss.readyForQuery(status)
	ss.multiAtSync()
	ss.batchTxEnd, ss.txEndInBatch, ss.blockEnded = false, false, false
	ss.batchExecuted = false
	ss.batch = true
	return nil
}

// beforeExtended runs before each Parse, Bind, Describe, Execute and Close
// of the sharded path: it marks where a batch starts, and after a COMMIT or
// ROLLBACK that ended a transaction earlier in the batch it syncs every
// connection before the next statement (syncMidBatch). skip reports that
// settling it brought an error: the message is skipped, as everything up to
// the Sync.
func (ss *session) beforeExtended(typ byte) (skip bool, err error) {
	switch typ {
	case msgParse, msgBind, msgDescribe, msgExecute, msgClose:
	default:
		return false, nil
	}
	if !ss.batch {
		ss.batchExecuted, ss.blockEnded, ss.mayEndBlock = false, false, false
	}
	if !ss.mayEndBlock {
		return false, nil
	}
	ss.mayEndBlock = false
	if err := ss.settle(); err != nil || ss.skip {
		return ss.skip, err
	}
	if !ss.blockEnded {
		return false, nil
	}
	return false, ss.syncMidBatch()
}
