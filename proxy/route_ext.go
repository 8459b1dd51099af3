package proxy

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
	"github.com/shardproxy/shardproxy/topology"
)

// Extended protocol over several shards.
//
// Parse and a statement Describe go to the shard that has the statement's
// tables (parseShard); a statement some server already accepted is answered
// without a server and prepared lazily wherever its Bind goes. Bind is where
// the shard is decided: the statement is planned with the Bind values. A
// Route of the statement's own text is bound on that shard (the portal
// remembers it for Describe, Execute and Close); any other plan is kept as
// a multiPortal: Bind is answered by the proxy and Execute runs the plan.

// routeInfo is what routing caches on an interned statement.
type routeInfo struct {
	analysis *planner.Analysis
	err      error
	oids     []uint32
	params   int // the statement's parameter count, as PostgreSQL counts them
}

// route returns e's analysis and parameter types, computed once.
func (ss *session) route(e *stmtEntry) *routeInfo {
	e.routeOnce.Do(func() {
		q, oidBlock := e.key, ""
		if i := strings.IndexByte(q, 0); i >= 0 {
			q, oidBlock = q[:i], q[i+1:]
		}
		ri := &routeInfo{}
		ri.analysis, ri.err = ss.srv.planner.Analyze(q)
		if len(oidBlock) >= 2 {
			n := int(binary.BigEndian.Uint16([]byte(oidBlock[:2])))
			for i := 0; i < n && 2+4*i+4 <= len(oidBlock); i++ {
				ri.oids = append(ri.oids, binary.BigEndian.Uint32([]byte(oidBlock[2+4*i:2+4*i+4])))
			}
		}
		ri.params = max(len(ri.oids), planner.ParamCount(q))
		e.route = ri
	})
	return e.route
}

// failExtendedTx reports a proxy-raised error for an extended-protocol
// message: skipped to Sync, and inside a transaction block the
// transaction is aborted.
func (ss *session) failExtendedTx(err error) error {
	return ss.failExtendedTxUndoing(err, nil)
}

// failExtendedTxUndoing is failExtendedTx with failExtendedUndoing's undo.
func (ss *session) failExtendedTxUndoing(err error, undo func()) error {
	if isServerGone(err) {
		if undo != nil {
			undo()
		}
		return err
	}
	ss.failInTx()
	return ss.failExtendedUndoing(err, undo)
}

// routeParse picks the connection for a Parse over a sharded topology.
// synth reports that the Parse is answered without a server.
func (ss *session) routeParse(snap *topology.Snapshot, e *stmtEntry) (synth bool, err error) {
	ri := ss.route(e)
	if ri.err != nil {
		return false, ri.err
	}
	if e.validated.Load() {
		return true, nil
	}
	return false, ss.useShardForStatement(snap, ss.parseShard(snap, ri.analysis))
}

// bindValues decodes the parameter part of a Bind body (after the portal
// and statement names) as pgproto3.Bind.Decode would: NULL values are nil,
// empty ones non-nil; no parameter format codes give nil Formats; the
// result format codes are never nil; bytes after them are ignored. The
// values alias rest. The slices live in one allocation (bindArgs) for up
// to bindArgsInline values, so planning a Bind costs no per-value
// allocations; nothing else holds them, so callers may keep them.
func bindValues(rest []byte) (planner.Params, []int16, bool) {
	a := new(bindArgs)
	var p planner.Params
	n, rest, ok := uint16At(rest)
	if !ok {
		return p, nil, false
	}
	if n > 0 {
		p.Formats = a.int16s(&a.formats, n)
		if rest, ok = int16sAt(p.Formats, rest); !ok {
			return p, nil, false
		}
	}
	if n, rest, ok = uint16At(rest); !ok {
		return p, nil, false
	}
	if n > 0 {
		if n <= bindArgsInline {
			p.Values = a.values[:n:n]
		} else {
			p.Values = make([][]byte, n)
		}
		for i := range p.Values {
			if len(rest) < 4 {
				return p, nil, false
			}
			size := int(int32(binary.BigEndian.Uint32(rest)))
			rest = rest[4:]
			if size == -1 {
				continue // NULL
			}
			if size < 0 || len(rest) < size {
				return p, nil, false
			}
			p.Values[i] = rest[:size:size]
			rest = rest[size:]
		}
	}
	if n, rest, ok = uint16At(rest); !ok {
		return p, nil, false
	}
	rf := a.int16s(&a.results, n)
	if _, ok = int16sAt(rf, rest); !ok {
		return p, nil, false
	}
	return p, rf, true
}

// bindArgsInline is how many parameters and format codes of a Bind
// bindValues decodes without allocating beyond its bindArgs.
const bindArgsInline = 4

// bindArgs is the storage of one decoded Bind's slices.
type bindArgs struct {
	values           [bindArgsInline][]byte
	formats, results [bindArgsInline]int16
}

// int16s returns n int16s: the front of inline when they fit.
func (a *bindArgs) int16s(inline *[bindArgsInline]int16, n int) []int16 {
	if n <= bindArgsInline {
		return inline[:n:n]
	}
	return make([]int16, n)
}

// int16sAt fills dst with the big-endian int16s at the front of b and
// returns the rest of b.
func int16sAt(dst []int16, b []byte) ([]byte, bool) {
	if len(b) < 2*len(dst) {
		return b, false
	}
	for i := range dst {
		dst[i] = int16(binary.BigEndian.Uint16(b[2*i:]))
	}
	return b[2*len(dst):], true
}

// uint16At reads a big-endian uint16 at the front of b.
func uint16At(b []byte) (int, []byte, bool) {
	if len(b) < 2 {
		return 0, b, false
	}
	return int(binary.BigEndian.Uint16(b)), b[2:], true
}

// failedBlockBefore reports whether the client's transaction block had
// failed before this batch and no Execute of the batch may have ended it
// (only COMMIT or ROLLBACK runs there): then PostgreSQL answers 25P02 to
// a Bind of anything but a transaction's end.
func (ss *session) failedBlockBefore() bool { return ss.txStatus == 'E' && !ss.txEndInBatch }

// routeBind plans a Bind over a sharded topology. It returns handled=true
// when the proxy answered the Bind itself (a multiPortal, or an error);
// otherwise the active connection is the portal's shard and the caller
// forwards the Bind.
func (ss *session) routeBind(snap *topology.Snapshot, portal, name string, e *stmtEntry, rest []byte) (bool, error) {
	exists := ss.portalExists(portal)
	// A multiPortal of this name is replaced by this Bind; one that fails
	// before PostgreSQL would create the portal (keep) leaves it.
	prev := ss.multi[portal]
	delete(ss.multi, portal)
	keep := func(err error) (bool, error) {
		if prev != nil {
			ss.multi[portal] = prev
		}
		ss.bindKept = true
		return true, err
	}
	if e == nil {
		if prev != nil {
			ss.multi[portal] = prev // 26000 from the server
		}
		return false, ss.useShard(snap, ss.sessionStatementShard(snap))
	}
	ri := ss.route(e)
	if ri.err != nil {
		return keep(ss.failExtendedTx(ri.err))
	}
	if ss.codeOnListedTables(snap, ri.analysis) {
		return keep(ss.failExtendedTx(codeRefusal))
	}
	params, rf, ok := bindValues(rest)
	if !ok {
		return true, newSQLError(codeProtocolViolation, "invalid Bind message format")
	}
	if len(params.Values) != ri.params {
		// PostgreSQL checks this before anything else of the Bind (the
		// proxy would otherwise plan with missing values, or answer
		// BindComplete for a plan it runs itself).
		return keep(ss.failExtendedTx(newSQLError(codeProtocolViolation,
			fmt.Sprintf("bind message supplies %d parameters, but prepared statement %q requires %d", len(params.Values), name, ri.params))))
	}
	// PostgreSQL binds only a transaction's end without parameters in a
	// failed block; when the proxy failed it, no server says so.
	exitBind := endsTxStatement(e) && ri.params == 0
	if ss.failedBlockBefore() && !exitBind && ss.txAborted {
		return keep(ss.failExtendedTx(&sqlError{abortedError}))
	}
	if exists {
		// Bound already, maybe on another shard, or run by the proxy.
		if ss.failedBlockBefore() && !exitBind {
			return keep(ss.failExtendedTx(&sqlError{abortedError}))
		}
		return keep(ss.failExtendedTx(newSQLError("42P03", fmt.Sprintf("cursor %q already exists", portal))))
	}
	params.OIDs = ri.oids
	params.ForcedShard = ss.forcedShard
	if err := ss.loadCatalog(snap, ri.analysis); err != nil {
		return true, ss.failExtendedTx(err)
	}
	snap, op, err := ss.planHeld(snap, func(s *topology.Snapshot) (plan.Operator, error) {
		return ss.srv.planner.Plan(s, ri.analysis, params)
	})
	if err != nil {
		return true, ss.failExtendedTx(err)
	}
	ss.noteRoute(op)
	shard, beginHere, read := "", "", false
	var replay *plan.Session // SAVEPOINT/RELEASE/ROLLBACK TO or SET: recorded for shards that join later, once its shard is attached
	if s, ok := op.(*plan.Session); ok {
		cr, err := ss.proxyCursor(s)
		if err != nil {
			return true, ss.failExtendedTx(err)
		}
		if cr != nil {
			return true, ss.bindMulti(snap, portal, e, op, params, rf) // FETCH/CLOSE of a cross-shard cursor
		}
	}
	switch o := op.(type) {
	case *plan.Route:
		if o.SQL == ri.analysis.SQL && o.ParamIndexes == nil {
			shard = o.Shard
			if o.ReadAnyShard && ss.sc != nil && snap.HasShard(ss.shard) {
				shard = ss.shard
			}
			if ss.failedBlockBefore() && ss.blockedByAbort(shard) {
				return true, ss.failExtendedTx(&sqlError{abortedError})
			}
			ss.noteDeclare(ri.analysis, shard)
			if cs := e.classes(); len(cs) > 0 && cs[0].Kind == sqlclass.DeclareHold {
				ss.pin("WITH HOLD cursor") // it lives in this shard's server connection
			}
			if !o.ReadOnly {
				if err := ss.checkWrite([]string{shard}); err != nil {
					return true, ss.failExtendedTx(err)
				}
				// A READ ONLY transaction may use a replica for anything
				// (e.g. DECLARE; writes fail with 25006 there too).
				read = ss.readOnlyTx() && ss.replicaRead(snap, shard, o.SQL)
			} else {
				read = ss.replicaRead(snap, shard, o.SQL)
			}
		}
	case *plan.Session:
		if o.Proxy {
			return true, ss.failExtendedTx(&plan.Unsupported{Message: "SET shardproxy.* is only supported as a simple query", Hint: "send it with the simple query protocol (e.g. Exec without arguments)"})
		}
		switch o.Kind {
		case "transaction":
			if op := ss.batchTxControl(o.Name, o.SQL); op != nil {
				return true, ss.bindMulti(snap, portal, e, op, params, rf) // batch_txcontrol.go
			}
			switch o.Name {
			case "begin":
				if ss.txStatus == 'I' && ss.txBegin == "" {
					beginHere = o.SQL // the transaction opens in this batch
				}
			case "savepoint", "release", "rollback_to":
				replay = o
			case "commit", "rollback":
				ss.heldCursorsAtTxEnd(o)
				if o.Name == "commit" && ss.txStatus != 'I' {
					if err := ss.settle(); err != nil || ss.skip {
						return true, err
					}
					if ss.failedBlockBefore() && !exitBind {
						return keep(ss.failExtendedTx(&sqlError{abortedError}))
					}
					if ss.txAborted || ss.failedBlockBefore() {
						// Failed: whichever shard the COMMIT went to would
						// commit its part unless the failure was there.
						return true, ss.bindMulti(snap, portal, e, &failedCommitOp{}, params, rf)
					}
				}
				if o.Name == "commit" && !ss.txAborted && ss.txStatus != 'E' {
					if err := ss.settle(); err != nil {
						return true, err
					}
					if ss.skip {
						return true, nil
					}
					if len(ss.txWriters) > 1 {
						// Written on several shards: the proxy commits with
						// two-phase commit when the portal runs.
						return true, ss.bindMulti(snap, portal, e, &twoPhaseCommitOp{}, params, rf)
					}
				}
				// Finish the other shards first; the portal's shard answers.
				shards := ss.txShards()
				if len(shards) > 1 {
					if err := ss.settle(); err != nil {
						return true, err
					}
					if ss.skip {
						return true, nil
					}
					last := shards[0]
					for _, s := range shards {
						if s == ss.txWriter {
							last = s
						}
					}
					verb := "ROLLBACK"
					if o.Name == "commit" && !ss.txAborted && ss.txStatus != 'E' {
						verb = "COMMIT"
					}
					for _, s := range shards {
						if s != last {
							if err := ss.runOnShard(snap, s, verb); err != nil {
								return true, ss.failExtendedTx(err)
							}
						}
					}
					shard = last
				} else if len(shards) == 1 {
					shard = shards[0]
				}
			}
		case "set", "reset", "set_local":
			replay = o
		case "listen", "unlisten", "notify":
			shard = snap.DefaultShard()
		case "fetch", "close":
			shard = ss.cursors[strings.ToLower(o.Name)]
		}
		if replay != nil {
			// SAVEPOINT, RELEASE, ROLLBACK TO or SET inside a transaction:
			// run on every shard of it, the portal's answers.
			if !ss.inTransaction() {
				replay = nil
			} else {
				if err := ss.settle(); err != nil || ss.skip {
					return true, err
				}
				target, err := ss.runOnOtherTxShards(snap, o)
				if err != nil {
					return true, ss.failExtendedTx(err)
				}
				shard = target
			}
		}
		if shard == "" {
			shard = ss.sessionStatementShard(snap)
		}
	default:
		return true, ss.bindMulti(snap, portal, e, op, params, rf)
	}
	if shard == "" {
		shard = ss.sessionStatementShard(snap)
	}
	if ss.failedBlockBefore() && !exitBind && ss.blockedByAbort(shard) {
		// The failure is not on this shard's connection, which would
		// bind the statement: 25P02, as PostgreSQL answers.
		return keep(ss.failExtendedTx(&sqlError{abortedError}))
	}
	if err := ss.useShardAs(snap, shard, read); err != nil {
		return true, ss.failExtendedTx(err)
	}
	if ss.skip {
		return true, nil
	}
	if beginHere != "" {
		// The client's BEGIN runs on this connection; shards the batch
		// touches next join the transaction (attach sends them BEGIN).
		ss.txBegin = beginHere
		ss.scTx = true
	}
	if replay != nil {
		ss.recordReplay(replay)
	}
	if ss.portals == nil {
		ss.portals = make(map[string]string)
	}
	ss.portals[portal] = shard
	ss.routeNotice(op)
	return false, nil
}

// bindMulti answers a Bind of stmt whose plan the proxy runs itself: the
// portal becomes a multiPortal.
func (ss *session) bindMulti(snap *topology.Snapshot, portal string, stmt *stmtEntry, op plan.Operator, params planner.Params, rf []int16) error {
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip {
		return nil
	}
	// The proxy answers this Bind, so it raises what PostgreSQL's would:
	// 25P02 in a failed block (a plan the proxy runs is never a
	// transaction's end but failedCommitOp; its two-phase COMMIT comes
	// here only outside one), then the errors of the values it can judge.
	if _, ends := op.(*failedCommitOp); ss.failedBlockBefore() && !ends {
		return ss.failExtendedTx(&sqlError{abortedError})
	}
	if err := planner.CheckParams(params); err != nil {
		return ss.failExtendedTx(err)
	}
	if ss.multi == nil {
		ss.multi = make(map[string]*multiPortal)
	}
	// The values alias the client's read buffer: keep copies.
	vals := make([][]byte, len(params.Values))
	for i, v := range params.Values {
		if v != nil {
			vals[i] = append([]byte{}, v...)
		}
	}
	params.Values = vals
	ss.multi[portal] = &multiPortal{op: op, params: params, resultFormats: rf, snap: snap}
	if portal != "" {
		ss.notePortal(portal, stmt)
	}
	ss.routeNotice(op)
	ss.out = appendEmpty(ss.out, msgBindComplete)
	return nil
}

// portalShard returns the multiPortal (the proxy runs it itself) or the
// shard a portal was bound on.
func (ss *session) portalShard(snap *topology.Snapshot, portal string) (*multiPortal, string) {
	if mp := ss.multi[portal]; mp != nil {
		return mp, ""
	}
	shard, ok := ss.portals[portal]
	if !ok {
		if shard, ok = ss.cursors[portal]; !ok { // a SQL cursor is a portal too (psycopg 3 describes it)
			shard = ss.sessionStatementShard(snap)
		}
	}
	return nil, shard
}

// boundStmt returns the statement bound to portal (nil: not known).
func (ss *session) boundStmt(portal string) *stmtEntry {
	if portal == "" {
		return ss.portalStmt
	}
	return ss.portalStmts[portal]
}

// endPortals forgets the session's portals when its transaction ends:
// PostgreSQL drops them then (cursors WITH HOLD are SQL cursors, tracked
// in cursors).
func (ss *session) endPortals() {
	clear(ss.multi)
	clear(ss.portals)
	clear(ss.portalStmts)
	ss.portalsStale, ss.portalsPartial = false, false
	ss.portalStmt = nil
}

// forgetPortal drops what the session knows of portal name for a Close of
// it, and returns what puts it back (the Close skipped after an error
// earlier in the batch).
func (ss *session) forgetPortal(name string) (restore func()) {
	stmt, hadStmt := ss.portalStmts[name]
	unnamed := ss.portalStmt
	mp, hadMulti := ss.multi[name]
	shard, hadShard := ss.portals[name]
	delete(ss.portalStmts, name)
	if name == "" {
		ss.portalStmt = nil
	}
	return func() {
		if hadStmt {
			ss.notePortal(name, stmt)
		}
		if name == "" {
			ss.portalStmt = unnamed
		}
		if hadMulti && ss.multi != nil {
			ss.multi[name] = mp
		}
		if hadShard && ss.portals != nil {
			ss.portals[name] = shard
		}
	}
}

// notePortal records that the named portal is bound to e (portalExists,
// boundStmt).
func (ss *session) notePortal(portal string, e *stmtEntry) {
	if ss.portalStmts == nil {
		ss.portalStmts = make(map[string]*stmtEntry)
	}
	ss.portalStmts[portal] = e
}

// portalExists reports that a Bind to the named portal must fail with
// 42P03, as PostgreSQL's does: the portal was bound in the open
// transaction (on any shard, or as one the proxy runs) and not closed.
// Not after an Execute that may have ended the transaction (it may have
// dropped it): the shard a Bind goes to still checks its own.
func (ss *session) portalExists(portal string) bool {
	_, ok := ss.portalStmts[portal]
	return ok && portal != "" && !ss.portalsStale
}

// failedPortal reports that a Describe (describe) or Execute of a portal
// bound to e on shard must get 25P02 from the proxy: the transaction
// block failed (failed) and shard's server, outside the failure, would
// answer it. PostgreSQL still describes a portal without rows, and runs
// an empty one or one that ends the transaction. e nil: not known; the
// server describes it, and it is not run (it could be a COMMIT, which
// would commit that shard's part).
func (ss *session) failedPortal(e *stmtEntry, shard string, failed, describe bool) bool {
	if !failed || !ss.blockedByAbort(shard) {
		return false
	}
	if e == nil {
		return !describe
	}
	cs := e.classes()
	if describe {
		return !withoutRows(cs)
	}
	return len(cs) > 0 && !endsTx(e)
}

// describeMulti answers Describe of a multiPortal: EXPLAIN's own row
// shape, else the shape the first shard reports for its part.
func (ss *session) describeMulti(snap *topology.Snapshot, mp *multiPortal) error {
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip {
		return nil
	}
	if _, ok := mp.op.(*plan.Explain); ok {
		ss.out = appendEncoded(ss.out, explainRowDesc())
		return nil
	}
	if ss.describeCursorStatement(mp.op, mp.resultFormats) {
		return nil
	}
	if ss.deferDescribe(mp) {
		return nil // the Execute right behind it describes the rows
	}
	shard, sql, idx := "", "", []int(nil)
	for _, leaf := range plan.Leaves(mp.op) {
		switch l := leaf.(type) {
		case *plan.Route:
			shard, sql, idx = l.Shard, l.SQL, l.ParamIndexes
		case *plan.Scatter:
			shard = l.Shards[0]
			sql = l.SQLFor(shard)
		case *plan.Broadcast:
			shard, sql = l.ReturnFrom, l.SQL
		case *plan.AllocateKeys:
			// The rewritten INSERT has the same result shape; describe it
			// with placeholder keys.
			shard, sql = snap.DefaultShard(), l.SQL
		case *plan.PullOut:
			shard, sql = snap.DefaultShard(), l.SQL // the client's statement: same shape
		case *plan.KeyUpdate:
			shard, sql = snap.DefaultShard(), l.SQL // the client's statement: same shape
		case *plan.InsertSelect:
			shard, sql = snap.DefaultShard(), l.SQL // the client's INSERT … SELECT: same shape
		}
		if shard != "" {
			break
		}
	}
	if shard == "" {
		ss.out = appendEmpty(ss.out, msgNoData)
		return nil
	}
	args := argsFor(mp.params, idx, mp.resultFormats, false)
	if err := ss.useShard(snap, shard); err != nil {
		return ss.failExtendedTx(err)
	}
	ss.sout = appendFrontend(ss.sout, &pgproto3.Parse{Query: sql, ParameterOIDs: args.oids})
	ss.sout = appendFrontend(ss.sout, &pgproto3.Describe{ObjectType: 'S'})
	ss.sout = appendEmpty(ss.sout, msgSync)
	if err := ss.flushServer(); err != nil {
		return err
	}
	var first error
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return &errServerGone{err}
		}
		switch typ {
		case msgRowDescription, msgNoData:
			if first != nil {
				break
			}
			if typ == msgRowDescription && isMergeOp(mp.op) {
				// The shards' columns are partials or carry hidden sort
				// keys: describe what the merge gives the client.
				rd, err := mergedDescription(mp.op, body, mp.resultFormats)
				if err != nil {
					first = err
					break
				}
				ss.out = appendEncoded(ss.out, rd)
				break
			}
			ss.out = appendMsg(ss.out, typ, applyResultFormats(typ, body, mp.resultFormats))
		case msgErrorResponse:
			if first == nil {
				first = &sqlError{decodeError(body)}
			}
		case msgReadyForQuery:
			if len(body) == 1 {
				ss.noteServerStatus(body[0])
			}
			if first != nil {
				return ss.failExtendedTx(first)
			}
			return nil
		}
	}
}

// applyResultFormats sets the format codes of a statement's RowDescription
// to what the portal's Bind asked for.
func applyResultFormats(typ byte, body []byte, rf []int16) []byte {
	if typ != msgRowDescription || len(rf) == 0 {
		return body
	}
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return body
	}
	for i := range rd.Fields {
		switch {
		case len(rf) == 1:
			rd.Fields[i].Format = rf[0]
		case i < len(rf):
			rd.Fields[i].Format = rf[i]
		}
	}
	out, err := rd.Encode(nil)
	if err != nil || len(out) < 5 {
		return body
	}
	return out[5:]
}
