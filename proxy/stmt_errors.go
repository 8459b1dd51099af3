package proxy

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/sqlclass"
	"github.com/shardproxy/shardproxy/topology"
)

// Errors PostgreSQL raises about statement names and inside failed
// transaction blocks, raised by the proxy in PostgreSQL's order where its
// own bookkeeping (the statement intern, lazy preparation, routing)
// would otherwise answer differently.

// parseDuplicate answers a Parse naming a statement the client has: as
// on PostgreSQL, the text's own errors (syntax; 25P02 in a failed
// transaction block) come first, else 42P05, and the error fails the
// transaction block. The server parses the text as its unnamed statement
// and is then asked to describe a statement that does not exist, so it
// fails (and skips to Sync) either way; that second error is reported as
// 42P05 with the client's name.
func (ss *session) parseDuplicate(name string, query, oids []byte) error {
	if shard, snap := ss.duplicateProbeShard(query, oids); shard != "" {
		// The shard the text would be prepared on parses it: another
		// may lack its tables (42P01 where PostgreSQL says 42P05).
		if err := ss.useShardForStatement(snap, shard); err != nil {
			return ss.failExtendedTx(err)
		}
		if ss.skip {
			return nil
		}
	} else if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.probeParse(query, oids, expect{kind: expParseSwallow})
	return ss.raiseOnServer(errorFields{Code: codeDuplicatePrepared,
		Message: fmt.Sprintf("prepared statement %q already exists", name)})
}

// duplicateProbeShard returns the shard a sharded topology would prepare
// the text on, outside a failed transaction block (whose own server
// connection answers 25P02) and when the proxy can route the text; "" for
// the current connection.
func (ss *session) duplicateProbeShard(query, oids []byte) (string, *topology.Snapshot) {
	snap, sharded := ss.snapshot()
	if !sharded || ss.txStatus == 'E' {
		return "", nil
	}
	ri := ss.route(ss.srv.intern.protocol(query, oids))
	if ri.err != nil {
		return "", nil
	}
	return ss.parseShard(snap, ri.analysis), snap
}

// missingServerStmt names no statement on any server connection.
const missingServerStmt = "shardproxy_missing_statement"

// raiseOnServer reports the error f for the current extended-protocol
// message the way the server would have: it asks the server to describe
// a statement that does not exist, so the server fails too — skipping to
// Sync and, inside a transaction block, aborting it, with everything that
// follows answered by the server as PostgreSQL would — and the client
// gets f in place of the server's error. Over a sharded topology the
// proxy's own transaction-abort tracking does this (failExtendedTx).
func (ss *session) raiseOnServer(f errorFields) error {
	if _, sharded := ss.snapshot(); sharded {
		return ss.failExtendedTx(&sqlError{f})
	}
	if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	ss.sout = appendDescribeStmt(ss.sout, missingServerStmt)
	ss.push(expect{kind: expErrorAs, err: f})
	return ss.maybeFlushBatch()
}

// probeParse has the server parse query as its unnamed statement (the
// proxy keeps nothing there between batches), answered as x: the server
// then reports the text's own errors in PostgreSQL's order.
func (ss *session) probeParse(query, oids []byte, x expect) {
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	ss.sout = appendMsg(ss.sout, msgParse, buildParseBody("", query, oids))
	ss.push(x)
}

// failParse fails a client's Parse with a proxy-raised error. As on
// PostgreSQL, a failed Parse of the unnamed statement leaves none — unless
// an earlier message of the batch fails on the server first, so that the
// server never gets to this Parse: then the unnamed statement stays.
func (ss *session) failParse(name string, prev *stmtEntry, err error) error {
	if name != "" || prev == nil {
		return ss.failExtendedTx(err)
	}
	delete(ss.stmts, "")
	return ss.failExtendedTxUndoing(err, func() { ss.stmts[""] = prev })
}

// describeWithoutRows builds PostgreSQL's answer to a Describe of e —
// ParameterDescription and NoData — when e is a statement without result
// rows whose parameter types the proxy knows (all declared by its Parse):
// transaction control, SET/RESET, DISCARD, LISTEN, DEALLOCATE, or empty.
func describeWithoutRows(e *stmtEntry, ri *routeInfo) ([]byte, bool) {
	if ri.params != len(ri.oids) || !withoutRows(e.classes()) {
		return nil, false
	}
	body := make([]byte, 2, 2+4*len(ri.oids))
	binary.BigEndian.PutUint16(body, uint16(len(ri.oids)))
	for _, oid := range ri.oids {
		body = binary.BigEndian.AppendUint32(body, oid)
	}
	msgs := appendMsg(nil, msgParamDesc, body)
	return appendEmpty(msgs, msgNoData), true
}

// withoutRows reports that a statement of classes cs never returns rows:
// none, or one of transaction control, SET/RESET, DISCARD, LISTEN or
// DEALLOCATE.
func withoutRows(cs []sqlclass.Statement) bool {
	if len(cs) > 1 {
		return false
	}
	if len(cs) == 1 {
		switch cs[0].Kind {
		case sqlclass.Begin, sqlclass.Commit, sqlclass.Rollback, sqlclass.Savepoint, sqlclass.Set, sqlclass.SetLocal,
			sqlclass.Reset, sqlclass.ResetAll, sqlclass.Discard, sqlclass.Listen, sqlclass.Unlisten, sqlclass.UnlistenAll,
			sqlclass.Deallocate, sqlclass.DeallocateAll:
		default:
			return false
		}
	}
	return true
}

// endsTx reports whether PostgreSQL parses e in a failed transaction
// block: one COMMIT, ROLLBACK, ROLLBACK TO SAVEPOINT or PREPARE
// TRANSACTION, or no statement at all.
func endsTx(e *stmtEntry) bool {
	cs := e.classes()
	if len(cs) == 0 {
		return true // an empty query: PostgreSQL checks statements only
	}
	if len(cs) != 1 {
		return false
	}
	switch cs[0].Kind {
	case sqlclass.Commit, sqlclass.Rollback:
		return true
	case sqlclass.Savepoint:
		return startsFold(e.text(), "ROLLBACK")
	case sqlclass.Other:
		return startsFold(e.text(), "PREPARE TRANSACTION")
	}
	return false
}

// endsTxStatement reports whether e is one statement that ends a
// transaction block: COMMIT, ROLLBACK, ROLLBACK TO SAVEPOINT or PREPARE
// TRANSACTION (endsTx without the empty statement). PostgreSQL binds and
// runs only these in a failed block.
func endsTxStatement(e *stmtEntry) bool {
	return len(e.classes()) > 0 && endsTx(e)
}

// bindFailsBeforePortal reports whether a Bind that failed with code
// failed before PostgreSQL creates (or replaces) its portal: an unknown
// statement, a failed transaction block, a portal that exists, a wrong
// parameter count.
func bindFailsBeforePortal(code string) bool {
	switch code {
	case codeUndefinedPrepared, "25P02", "42P03", codeProtocolViolation:
		return true
	}
	return false
}

// isCommit reports whether e is one COMMIT statement.
func isCommit(e *stmtEntry) bool {
	cs := e.classes()
	return len(cs) == 1 && cs[0].Kind == sqlclass.Commit
}

// startsFold reports whether s, without leading space, starts with
// prefix, ignoring ASCII case; it does not allocate.
func startsFold(s, prefix string) bool {
	s = strings.TrimSpace(s)
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// missingStmtError is PostgreSQL's error for a client statement name the
// proxy does not know and must answer itself: the unnamed statement (the
// server's unnamed statement is the proxy's, not the client's) and names
// shaped like the proxy's own. Other unknown names go to the server, which
// answers with the client's name.
func missingStmtError(name string) (errorFields, bool) {
	switch {
	case name == "":
		return errorFields{Code: codeUndefinedPrepared, Message: "unnamed prepared statement does not exist"}, true
	case isServerStmtName(name):
		return errorFields{Code: codeUndefinedPrepared, Message: fmt.Sprintf("prepared statement %q does not exist", name)}, true
	}
	return errorFields{}, false
}
