package proxy

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/merge"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
	"github.com/shardproxy/shardproxy/topology"
)

// Cross-shard reads that live as long as a transaction block: DECLARE …
// CURSOR over several shards, and an extended-protocol portal executed
// with a row limit inside a transaction block (the JDBC fetchSize
// pattern: Execute(n)/Sync, Execute(n)/Sync …, which PostgreSQL allows
// because a portal lives until its transaction ends).
//
// Such a read (cursorRead) must not hold the shards' connections between
// client requests: other statements of the transaction use them. So each
// shard's part is bound to a named portal on the shard's connection
// (Parse/Bind/Describe/Sync), and rows are fetched with Execute(portal,
// batch)/Sync when the merge needs them; between fetches every connection
// is idle inside the transaction. The first fetch goes to all shards at
// once; later ones to the shard whose rows ran out. The merge (proxy/merge)
// runs over one stream per shard as for a streaming read.
//
// A cursorRead lives until CLOSE / Close('P'), or until the transaction
// ends (resetTx calls endCursorReads; the shards drop their portals with
// their transactions). Only forward reading is supported; the planner
// refuses SCROLL and WITH HOLD over several shards.

// Rows asked of a shard per fetch: the client's count, within these bounds.
const (
	cursorBatchMin = 256
	cursorBatchMax = 8192
)

// cursorPortalSeq numbers the shard-side portals (names are per server
// connection; a process-wide counter keeps them distinct).
var cursorPortalSeq atomic.Uint64

// cursorRead is a cross-shard read fetched from shard portals in batches.
// Only the session goroutine uses it.
type cursorRead struct {
	ss      *session
	shards  []*cursorShard
	res     cursorRows // the merge over the shards' portals, or a WITH HOLD cursor's stored rows (heldRows)
	rf      []int16    // the result formats it was opened with
	batch   int
	primed  bool  // the first fetch was sent to every shard
	done    bool  // the merge returned io.EOF
	failed  error // a fetch or the merge failed: the read cannot go on
	flushed bool  // send flushed rows to the client
	// declaredAt is len(txReplay) at DECLARE: a ROLLBACK TO a savepoint
	// made before it drops the cursor (dropCursorsSince).
	declaredAt int
}

// cursorRows is where a cursorRead takes its rows from: *merge.Result over
// the shards' portals, or *heldRows.
type cursorRows interface {
	RowDescription() *pgproto3.RowDescription
	SetResultFormats(rf []int16)
	Next() ([][]byte, error) // io.EOF after the last row
}

// spool is the stored rows of a WITH HOLD cursor, nil for a read of shard
// portals.
func (cr *cursorRead) spool() *heldRows {
	h, _ := cr.res.(*heldRows)
	return h
}

// cursorShard is one shard's portal of a cursorRead; it is the merge's
// Stream for that shard.
type cursorShard struct {
	cr     *cursorRead
	shard  string
	portal string
	buf    []byte // DataRow messages of the last fetch
	pos    int
	more   bool  // the portal may have more rows (not yet run, or suspended)
	err    error // the shard's error, given to the merge after the rows before it
	desc   []byte
	vals   [][]byte
}

// inTxBlock reports whether the client's explicit transaction block is
// open and not failed (the only place a cursorRead can live), also when a
// BEGIN earlier in the pipelined batch opened it and its ReadyForQuery has
// not come yet (JDBC sends BEGIN with the first query of a transaction).
func (ss *session) inTxBlock() bool {
	return ss.txStatus == 'T' || (ss.txStatus == 'I' && ss.txBegin != "" && !ss.implicitTx)
}

// shardResultFormats is what the shards are asked for under a merge root:
// the client's formats when the shard columns are the client's (plus
// hidden ones), else text.
func shardResultFormats(root plan.Operator, rf []int16) []int16 {
	switch {
	case len(rf) <= 1:
		return rf
	case !hasAggregate(root):
		return append(append([]int16(nil), rf...), make([]int16, hiddenColumns(root))...)
	}
	return nil
}

// openCursorRead binds root's Scatter part to a portal on every shard
// (joining them to the transaction) and prepares the merge; no row is
// fetched yet. rf are the client's result formats.
func (ss *session) openCursorRead(snap *topology.Snapshot, root plan.Operator, params planner.Params, rf []int16) (*cursorRead, error) {
	sc, ok := mergeScatter(root)
	if !ok || sc.Write || isCopySQL(sc.SQL) {
		return nil, &plan.Unsupported{Message: "this cross-shard statement cannot be read through a cursor (" + root.Describe().Name + ")",
			Hint: "run it without a cursor or a row limit"}
	}
	if ss.txStatus == 'E' {
		return nil, &sqlError{abortedError}
	}
	params, err := ss.typeEvalParams(snap, root, params, sc.Shards[0])
	if err != nil {
		return nil, err
	}
	args := argsFor(params, nil, shardResultFormats(root, rf), false)
	cr := &cursorRead{ss: ss, batch: cursorBatchMin, rf: rf}
	saved := ss.execing
	ss.execing = true
	defer func() { ss.execing = saved }()
	var sendErr error
	for _, s := range sc.Shards {
		// In a READ ONLY transaction each shard's portal may live on a
		// replica (replicaRead), under the rules of any other read.
		if err := ss.useShardAs(snap, s, sc.ReadOnly && ss.replicaRead(snap, s, sc.SQLFor(s))); err != nil {
			sendErr = err
			break
		}
		if ss.skip {
			sendErr = &plan.Error{Code: "XX000", Message: "shardproxy: an earlier statement failed while opening a cross-shard cursor"}
			break
		}
		cs := &cursorShard{cr: cr, shard: s, portal: "shardproxy_cursor_" + strconv.FormatUint(cursorPortalSeq.Add(1), 10), more: true}
		ss.sout = appendFrontend(ss.sout, &pgproto3.Parse{Query: sc.SQLFor(s), ParameterOIDs: args.oids})
		ss.sout = appendFrontend(ss.sout, &pgproto3.Bind{DestinationPortal: cs.portal, ParameterFormatCodes: args.formats, Parameters: args.values, ResultFormatCodes: args.resultFormats})
		ss.sout = appendFrontend(ss.sout, &pgproto3.Describe{ObjectType: 'P', Name: cs.portal})
		ss.sout = appendEmpty(ss.sout, msgSync)
		if err := ss.flushServer(); err != nil {
			sendErr = err
			break
		}
		cr.shards = append(cr.shards, cs)
	}
	// Read every answer that was asked for, even after a failure.
	first := sendErr
	for _, cs := range cr.shards {
		err := cs.receive()
		if err == nil {
			err = cs.err
		}
		if err != nil && (first == nil || isServerGone(err) && !isServerGone(first)) {
			first = err
		}
	}
	if first != nil {
		cr.close()
		return nil, first
	}
	var desc pgproto3.RowDescription
	for _, cs := range cr.shards {
		if cs.desc != nil {
			if err := desc.Decode(cs.desc); err != nil {
				cr.close()
				return nil, err
			}
			break
		}
	}
	if desc.Fields == nil {
		cr.close()
		return nil, &plan.Unsupported{Message: "the shards returned no rows description for a cross-shard cursor"}
	}
	collation, err := ss.shardCollation(snap, sc.Shards[0])
	if err != nil {
		cr.close()
		return nil, err
	}
	streams := make([]merge.Stream, len(cr.shards))
	for i, cs := range cr.shards {
		streams[i] = cs
	}
	cr.res, err = merge.New(root, &desc, streams, merge.Options{ResultFormats: rf, Collation: collation, MemoryLimit: ss.srv.config().Merge.MemoryLimit,
		Evaluator: ss.evaluatorFor(snap, root, nil, sc.Shards[0], params)})
	if err != nil {
		cr.close()
		return nil, err
	}
	return cr, nil
}

// rowDescription is what the read gives the client.
func (cr *cursorRead) rowDescription() *pgproto3.RowDescription { return cr.res.RowDescription() }

// setFormats makes the rows come in the formats a FETCH portal's Bind
// asked for (rf), or in the cursor's own (text, or binary for BINARY)
// when it asked for none.
func (cr *cursorRead) setFormats(rf []int16) {
	if len(rf) == 0 {
		rf = cr.rf
	}
	cr.res.SetResultFormats(rf)
}

// send appends up to limit rows (0: all that are left) to the client's
// output, or skips them when discard is set (MOVE), and returns how many.
func (cr *cursorRead) send(limit int, discard bool) (int, error) {
	if cr.failed != nil {
		return 0, cr.failed
	}
	if h := cr.spool(); h != nil {
		if err := h.formatsErr(); err != nil {
			return 0, err
		}
	}
	ss := cr.ss
	switch {
	case limit <= 0:
		cr.batch = cursorBatchMax
	case limit < cursorBatchMin:
		cr.batch = cursorBatchMin
	case limit > cursorBatchMax:
		cr.batch = cursorBatchMax
	default:
		cr.batch = limit
	}
	if !cr.primed && !cr.done {
		cr.primed = true
		if err := cr.prime(); err != nil {
			cr.failed = err
			return 0, err
		}
	}
	n := 0
	for !cr.done && (limit <= 0 || n < limit) {
		row, err := cr.res.Next()
		if err == io.EOF {
			cr.done = true
			break
		}
		if err != nil {
			cr.failed = err
			return n, err
		}
		n++
		if discard {
			continue
		}
		ss.out = appendDataRow(ss.out, row)
		if len(ss.out) > 64<<10 {
			cr.flushed = true
			if err := ss.flushClient(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// prime sends the first fetch to every shard at once and reads the
// answers.
func (cr *cursorRead) prime() error {
	var first error
	var sent []*cursorShard
	for _, cs := range cr.shards {
		if err := cs.request(); err != nil {
			first = err
			break
		}
		sent = append(sent, cs)
	}
	for _, cs := range sent {
		if err := cs.receive(); err != nil && (first == nil || isServerGone(err) && !isServerGone(first)) {
			first = err
		}
	}
	return first
}

// close closes the shards' portals while the transaction is open (they
// go with the transaction otherwise). Errors are ignored: the portal is
// gone either way.
func (cr *cursorRead) close() {
	if h := cr.spool(); h != nil {
		h.close()
		return
	}
	if cr.ss.txStatus != 'T' {
		return
	}
	for _, cs := range cr.shards {
		t := cr.ss.copyTargetFor(cs.shard)
		if t == nil {
			continue
		}
		msgs := appendFrontend(nil, &pgproto3.Close{ObjectType: 'P', Name: cs.portal})
		msgs = appendEmpty(msgs, msgSync)
		status, err := cr.ss.exchange(t.w, t.r, msgs)
		if isServerGone(err) {
			continue
		}
		cs.noteStatus(t, status)
	}
}

// request sends the next fetch of the shard's portal.
func (cs *cursorShard) request() error {
	t := cs.cr.ss.copyTargetFor(cs.shard)
	if t == nil {
		return &plan.Error{Code: "XX000", Message: "shardproxy: no connection to shard " + cs.shard + " for a cross-shard cursor"}
	}
	msgs := appendFrontend(nil, &pgproto3.Execute{Portal: cs.portal, MaxRows: uint32(cs.cr.batch)})
	msgs = appendEmpty(msgs, msgSync)
	if _, err := t.w.Write(msgs); err != nil {
		return &errServerGone{err}
	}
	return nil
}

// receive reads the shard's answer up to ReadyForQuery: the rows of a
// fetch replace the buffered ones; the row shape, suspension, the shard's
// error (cs.err: a one-server read would fail only when it reaches that
// row, so the rows before it are still given out) and the transaction
// status are noted. It returns only a lost connection's error.
func (cs *cursorShard) receive() error {
	ss := cs.cr.ss
	t := ss.copyTargetFor(cs.shard)
	if t == nil {
		return &plan.Error{Code: "XX000", Message: "shardproxy: no connection to shard " + cs.shard + " for a cross-shard cursor"}
	}
	cs.buf, cs.pos = cs.buf[:0], 0
	for {
		typ, body, err := t.r.next()
		if err != nil {
			return &errServerGone{err}
		}
		switch typ {
		case msgDataRow:
			cs.buf = appendMsg(cs.buf, typ, body)
		case msgRowDescription:
			cs.desc = append([]byte(nil), body...)
		case msgPortalSuspended:
			cs.more = true
		case msgCommandComplete:
			cs.more = false
		case msgErrorResponse:
			fe := decodeError(body)
			if isFatal(body) {
				return &errServerGone{&sqlError{fe}}
			}
			if cs.err == nil {
				fe.Detail = strings.TrimSpace(fe.Detail + "\n(on shard " + cs.shard + ")")
				cs.err = &sqlError{fe}
			}
			cs.more = false
		case msgNoticeResponse, msgNotification:
			ss.out = appendMsg(ss.out, typ, body)
		case msgReadyForQuery:
			if len(body) != 1 {
				return &errServerGone{errors.New("malformed ReadyForQuery")}
			}
			cs.noteStatus(t, body[0])
			return nil
		}
	}
}

// noteStatus applies a ReadyForQuery status of the shard's connection.
func (cs *cursorShard) noteStatus(t *copyTarget, status byte) {
	if t.held != nil {
		t.held.inTx = status != 'I'
	} else {
		cs.cr.ss.noteServerStatus(status)
	}
}

// Next implements merge.Stream: the next buffered row, fetching the next
// batch from the shard when they ran out.
func (cs *cursorShard) Next() ([][]byte, error) {
	for cs.pos+5 > len(cs.buf) {
		if cs.err != nil {
			return nil, cs.err
		}
		if !cs.more {
			return nil, io.EOF
		}
		if err := cs.request(); err != nil {
			return nil, err
		}
		if err := cs.receive(); err != nil {
			return nil, err
		}
	}
	n := int(uint32(cs.buf[cs.pos+1])<<24 | uint32(cs.buf[cs.pos+2])<<16 | uint32(cs.buf[cs.pos+3])<<8 | uint32(cs.buf[cs.pos+4]))
	body := cs.buf[cs.pos+5 : cs.pos+1+n]
	cs.pos += 1 + n
	vals, ok := splitDataRow(body, cs.vals[:0])
	if !ok {
		return nil, &errServerGone{errors.New("malformed DataRow from shard " + cs.shard)}
	}
	cs.vals = vals
	return vals, nil
}

// executeCursorPortal runs Execute (row limit limit, 0 for all) of a
// multiPortal inside a transaction block through a cursorRead, opened at
// its first Execute; the portal then survives Sync until the transaction
// ends.
func (ss *session) executeCursorPortal(snap *topology.Snapshot, mp *multiPortal, limit int) error {
	if mp.cursor != nil && ss.txStatus == 'E' {
		return ss.failExtendedTx(&sqlError{abortedError})
	}
	cr, err := ss.portalCursor(mp)
	if err != nil {
		return ss.failExtendedTx(err)
	}
	cr.setFormats(nil) // a FETCH naming the portal may have asked for others
	n, err := cr.send(limit, false)
	if err != nil {
		return ss.failExtendedTx(err)
	}
	if !cr.done {
		ss.out = appendEmpty(ss.out, msgPortalSuspended)
		return nil
	}
	// Like PostgreSQL: the tag counts the rows of this Execute.
	ss.out = appendCommandComplete(ss.out, "SELECT "+strconv.Itoa(n))
	return nil
}

// declareCursor runs DECLARE … CURSOR over several shards.
func (ss *session) declareCursor(snap *topology.Snapshot, o *plan.DeclareCursor, params planner.Params) (string, error) {
	if ss.txStatus == 'E' {
		return "", &sqlError{abortedError}
	}
	if !ss.clientBlockOpen() && !o.Hold { // a BEGIN earlier in this batch opened one
		return "", &sqlError{errorFields{Code: "25P01", Message: "DECLARE CURSOR can only be used in transaction blocks"}}
	}
	if _, ok := ss.multiCursor[o.Name]; ok {
		return "", &sqlError{errorFields{Code: "42P03", Message: "cursor \"" + o.Name + "\" already exists"}}
	}
	var rf []int16
	if o.Binary {
		rf = []int16{1}
	}
	open := ss.openCursorRead
	if o.Hold {
		open = ss.openHeldRead
	}
	cr, err := open(snap, o.Query, params, rf)
	if err != nil {
		return "", err
	}
	if ss.multiCursor == nil {
		ss.multiCursor = make(map[string]*cursorRead)
	}
	cr.declaredAt = len(ss.txReplay)
	ss.multiCursor[o.Name] = cr
	return "DECLARE CURSOR", nil
}

// dropCursorsSince forgets the cross-shard cursors declared after the
// last SAVEPOINT named savepoint, for a ROLLBACK TO it: PostgreSQL drops
// them (their shards' portals went with the subtransaction).
func (ss *session) dropCursorsSince(savepoint string) {
	at := -1
	for i := len(ss.txReplay) - 1; i >= 0 && at < 0; i-- {
		if cs := sqlclass.Classify(ss.txReplay[i]); len(cs) == 1 && cs[0].Kind == sqlclass.Savepoint && cs[0].Name == savepoint &&
			hasPrefixFold([]byte(cs[0].Text), "savepoint") { // not a RELEASE or ROLLBACK TO of it
			at = i
		}
	}
	if at < 0 {
		return
	}
	for name, cr := range ss.multiCursor {
		if cr.declaredAt > at {
			delete(ss.multiCursor, name)
			if h := cr.spool(); h != nil {
				h.close() // a WITH HOLD cursor's rows
			}
		}
	}
}

// proxyCursor returns the cross-shard cursor a FETCH/MOVE/CLOSE names, if
// the proxy runs it: a SQL cursor (DECLARE), or a protocol-level portal of
// a cross-shard read inside a transaction block, which FETCH and MOVE may
// name as well (asyncpg moves its cursors with MOVE FORWARD n portal). A
// portal not executed yet starts its read here. A nil cursor and nil error:
// the statement is not the proxy's.
func (ss *session) proxyCursor(o *plan.Session) (*cursorRead, error) {
	if o.Kind != "fetch" && o.Kind != "close" {
		return nil, nil
	}
	if cr := ss.multiCursor[o.Name]; cr != nil {
		return cr, nil
	}
	mp := ss.multi[o.Name]
	if mp == nil || o.Name == "" {
		return nil, nil
	}
	if mp.cursor != nil || !ss.inTxBlock() || !rowsPlan(mp.op) || mp.live != nil || mp.done || mp.ended {
		return mp.cursor, nil
	}
	return ss.portalCursor(mp)
}

// portalCursor returns the cursorRead behind a cross-shard portal inside a
// transaction block, opening it at the first use (its first Execute, or a
// FETCH or MOVE naming it). errBatchFailed: an earlier message of the
// batch failed, the rest is skipped to Sync.
func (ss *session) portalCursor(mp *multiPortal) (*cursorRead, error) {
	if mp.cursor != nil {
		return mp.cursor, nil
	}
	if err := ss.settle(); err != nil {
		return nil, err
	}
	if ss.skip {
		return nil, errBatchFailed
	}
	cr, err := ss.openCursorRead(mp.snap, mp.op, mp.params, mp.resultFormats)
	if err != nil {
		return nil, err
	}
	mp.cursor = cr
	return cr, nil
}

// cursorStatement answers FETCH, MOVE or CLOSE of a cross-shard cursor
// (describe: the simple protocol, which sends the RowDescription too).
// FETCH returns the cursor's formats (text, or binary for BINARY).
func (ss *session) cursorStatement(o *plan.Session, cr *cursorRead, rf []int16, describe bool) (string, error) {
	if o.Kind == "close" {
		if ss.multiCursor[o.Name] == cr {
			delete(ss.multiCursor, o.Name)
		} else {
			delete(ss.multi, o.Name) // a protocol-level portal
		}
		cr.close()
		return "CLOSE CURSOR", nil
	}
	if ss.txStatus == 'E' {
		return "", &sqlError{abortedError}
	}
	f := o.Fetch
	if f == nil || !f.Forward {
		return "", &plan.Unsupported{Message: "a cursor over several shards can only fetch forward (FETCH n, FETCH NEXT, FETCH ALL, MOVE n)",
			Hint: "fetch forward only, or add a condition on the distribution key that selects one shard"}
	}
	limit := 0
	if !f.All {
		if f.Count > 1<<30 {
			f = &plan.Fetch{Forward: true, All: true, Move: f.Move}
		} else {
			limit = int(f.Count)
		}
	}
	if f.Move {
		rf = nil // the rows are skipped: their formats do not matter
	}
	cr.setFormats(rf)
	// PostgreSQL runs a FETCH to its end before sending anything, so a
	// FETCH that fails sends no rows (unless some had to be flushed).
	start := len(ss.out)
	cr.flushed = false
	if describe && !f.Move {
		ss.out = appendEncoded(ss.out, cr.rowDescription())
	}
	n, err := cr.send(limit, f.Move)
	if err != nil {
		if !cr.flushed {
			ss.out = ss.out[:start]
		}
		return "", err
	}
	if f.Move {
		return "MOVE " + strconv.Itoa(n), nil
	}
	return "FETCH " + strconv.Itoa(n), nil
}

// describeProxyCursor answers Describe of the portal a cross-shard cursor
// is (a SQL cursor is a portal too; psycopg 3 describes its server-side
// cursors that way): the rows' shape in the cursor's own formats.
func (ss *session) describeProxyCursor(cr *cursorRead) error {
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip {
		return nil
	}
	cr.setFormats(nil)
	ss.out = appendEncoded(ss.out, cr.rowDescription())
	return nil
}

// describeCursorStatement answers Describe of a FETCH on a cross-shard
// cursor (its row shape in the formats rf; a statement Describe passes
// formats all zero, as PostgreSQL reports them) or of CLOSE and DECLARE
// (NoData). It reports whether op was such a statement.
func (ss *session) describeCursorStatement(op plan.Operator, rf []int16) bool {
	switch o := op.(type) {
	case *plan.DeclareCursor:
		ss.out = appendEmpty(ss.out, msgNoData)
		return true
	case *plan.Session:
		cr, err := ss.proxyCursor(o)
		if cr == nil || err != nil {
			return false
		}
		if o.Kind == "fetch" && o.Fetch != nil && !o.Fetch.Move {
			cr.setFormats(rf)
			ss.out = appendEncoded(ss.out, cr.rowDescription())
		} else {
			ss.out = appendEmpty(ss.out, msgNoData)
		}
		return true
	}
	return false
}

// endCursorReads forgets every cursorRead when the transaction ends (the
// shards dropped their portals with it).
func (ss *session) endCursorReads() {
	for name, cr := range ss.multiCursor {
		if h := cr.spool(); h == nil { // WITH HOLD cursors outlive the transaction
			delete(ss.multiCursor, name)
		} else {
			h.inTx = false
		}
	}
	for name, mp := range ss.multi {
		if mp.cursor != nil {
			delete(ss.multi, name)
		}
	}
}

// multiAtSync drops the proxy's portals at Sync outside a transaction
// block; inside one they live on, as PostgreSQL's portals do.
func (ss *session) multiAtSync() {
	if ss.txStatus == 'I' && !ss.inTxBlock() {
		ss.endPortals()
	}
}

// cursorQuery answers FETCH/MOVE/CLOSE of a cross-shard cursor sent as a
// simple Query; CLOSE ALL closes the cross-shard cursors and is then
// relayed for the others (handled false).
func (ss *session) cursorQuery(o *plan.Session) (handled bool, err error) {
	if ss.txStatus == 'E' {
		// As every statement but a transaction's end in a failed block
		// (the proxy closed its own cursor and answered CLOSE CURSOR).
		return true, ss.queryFailed(&sqlError{abortedError})
	}
	if o.Kind == "close" && o.Name == "" {
		for name, cr := range ss.multiCursor {
			delete(ss.multiCursor, name)
			cr.close()
		}
		for name, mp := range ss.multi { // CLOSE ALL drops the protocol-level portals too
			if mp.cursor != nil {
				delete(ss.multi, name)
				mp.cursor.close()
			}
		}
		return false, nil
	}
	cr, err := ss.proxyCursor(o)
	if err != nil {
		return true, ss.queryFailed(err)
	}
	if cr == nil {
		return false, nil
	}
	ss.routeNotice(o)
	if err := ss.settle(); err != nil {
		return true, err
	}
	tag, err := ss.cursorStatement(o, cr, nil, true)
	if err != nil {
		return true, ss.queryFailed(err)
	}
	return true, ss.querySynthetic(tag)
}

// executeCursorStatement runs Execute of a portal bound to FETCH/MOVE/
// CLOSE of a cross-shard cursor.
func (ss *session) executeCursorStatement(o *plan.Session, rf []int16) error {
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip {
		return nil
	}
	cr, err := ss.proxyCursor(o)
	if err != nil {
		return ss.failExtendedTx(err)
	}
	if cr == nil {
		return ss.failExtendedTx(&sqlError{errorFields{Code: "34000", Message: "cursor \"" + o.Name + "\" does not exist"}})
	}
	tag, err := ss.cursorStatement(o, cr, rf, false)
	if err != nil {
		return ss.failExtendedTx(err)
	}
	ss.out = appendCommandComplete(ss.out, tag)
	return nil
}

// describeCursorStmt answers Describe('S') of a prepared FETCH/MOVE/CLOSE
// of a cross-shard cursor (drivers prepare FETCH before binding it): no
// parameters, and the cursor's row shape. It reports whether it answered.
func (ss *session) describeCursorStmt(snap *topology.Snapshot, a *planner.Analysis) (bool, error) {
	if (len(ss.multiCursor) == 0 && len(ss.multi) == 0) || len(a.Statements) != 1 || a.Statements[0].Kind != planner.KindCursor {
		return false, nil
	}
	op, err := ss.srv.planner.Plan(snap, a, planner.Params{})
	if err != nil {
		return false, nil
	}
	s, ok := op.(*plan.Session)
	if !ok {
		return false, nil
	}
	if cr, err := ss.proxyCursor(s); err != nil {
		return true, ss.failExtendedTx(err)
	} else if cr == nil {
		return false, nil
	}
	if err := ss.settle(); err != nil {
		return true, err
	}
	if ss.skip {
		return true, nil
	}
	ss.out = appendEncoded(ss.out, &pgproto3.ParameterDescription{})
	ss.describeCursorStatement(s, []int16{0})
	return true, nil
}
