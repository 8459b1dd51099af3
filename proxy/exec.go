package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Plans the proxy runs itself: everything but a Route of the client's own
// text. Each part runs on its shard's connection (made active with
// useShard) as a self-contained request — a simple Query, or
// Parse/Bind/Describe/Execute/Sync on the unnamed statement when there are
// parameters or result formats to honour. Reads over several shards run on
// all of them at once (exec_scatter.go, exec_merge.go); writes and COPY …
// TO STDOUT run one shard after another, rows streamed to the client as
// they arrive. Writes to several shards outside
// a transaction block run inside BEGIN … COMMIT on each shard and commit
// only when every part succeeded (a failure rolls all back); inside a
// transaction block they are refused until two-phase commit exists.

// multiPortal is a portal whose plan the proxy runs itself.
type multiPortal struct {
	op            plan.Operator
	snap          *topology.Snapshot // the topology op was planned with: its Executes run with it
	params        planner.Params
	resultFormats []int16
	live          *rowSource  // running read suspended by an Execute row limit (exec_portal.go)
	ended         bool        // its suspended read was ended by another statement, or failed
	done          bool        // its read ran to the end (another Execute answers "SELECT 0", as PostgreSQL's)
	spent         bool        // it ran a statement without rows (another Execute fails, as PostgreSQL's)
	cursor        *cursorRead // inside a transaction block: the read behind an Execute with a row limit (exec_cursor.go)
	// describeOnExecute: the portal's Describe was left to the Execute
	// right behind it, which sends the RowDescription (deferDescribe).
	describeOnExecute bool
}

// execOut is how a proxy-run statement answers the client.
type execOut struct {
	simple      bool // simple Query: send the RowDescription too
	describe    bool // extended protocol: send the RowDescription too (a deferred portal Describe)
	descSent    bool
	copyStarted bool
	copyHeader  bool // COPY TO with a CSV header: pass only the first shard's
	copyBinary  bool // COPY TO in binary format over several shards: one file header and trailer (copyout_binary.go)
	part        int  // index of the part running
	firstData   bool // the running part has not sent CopyData yet
	// captured, when not nil, takes each part's DataRows (by part index)
	// instead of the client: a split INSERT's RETURNING rows, sent in the
	// order of the VALUES rows once every part ran.
	captured [][][]byte
}

// partArgs are the Bind values of one part; nil runs it as a simple Query.
type partArgs struct {
	values        [][]byte
	formats       []int16
	oids          []uint32
	resultFormats []int16
}

// argsFor selects the values a part uses: all (idx nil) or idx's, in order.
func argsFor(p planner.Params, idx []int, resultFormats []int16, simple bool) *partArgs {
	if simple && len(p.Values) == 0 {
		return nil
	}
	a := &partArgs{resultFormats: resultFormats}
	format := func(i int) int16 {
		switch len(p.Formats) {
		case 0:
			return 0
		case 1:
			return p.Formats[0]
		}
		if i < len(p.Formats) {
			return p.Formats[i]
		}
		return 0
	}
	oid := func(i int) uint32 {
		if i < len(p.OIDs) {
			return p.OIDs[i]
		}
		return 0
	}
	if idx == nil {
		idx = make([]int, len(p.Values))
		for i := range idx {
			idx[i] = i
		}
	}
	for _, i := range idx {
		if i < 0 || i >= len(p.Values) {
			continue
		}
		a.values = append(a.values, p.Values[i])
		a.formats = append(a.formats, format(i))
		a.oids = append(a.oids, oid(i))
	}
	return a
}

// runPart runs one statement on shard and streams its rows (when pass) to
// the client. It returns the command tag, or the shard's error as a
// *sqlError, or *errServerGone.
func (ss *session) runPart(snap *topology.Snapshot, shard, sql string, args *partArgs, out *execOut, pass bool) (string, error) {
	if err := ss.useShard(snap, shard); err != nil {
		return "", err
	}
	return ss.runPartHere(shard, sql, args, out, pass)
}

// runReadPart is runPart for a statement the planner marked read-only: it
// may run on a replica of shard (replicaRead, docs/replicas.md).
func (ss *session) runReadPart(snap *topology.Snapshot, shard, sql string, args *partArgs, out *execOut) (string, error) {
	if err := ss.useShardAs(snap, shard, ss.replicaRead(snap, shard, sql)); err != nil {
		return "", err
	}
	return ss.runPartHere(shard, sql, args, out, true)
}

// runPartHere is runPart on the active connection, which is shard's.
func (ss *session) runPartHere(shard, sql string, args *partArgs, out *execOut, pass bool) (string, error) {
	ss.sout = appendPart(ss.sout, sql, args)
	if err := ss.flushServer(); err != nil {
		return "", err
	}
	out.firstData = true
	var tag string
	var first error
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return "", &errServerGone{err}
		}
		switch typ {
		case msgRowDescription:
			if pass && out.simple && !out.descSent {
				ss.out = appendMsg(ss.out, typ, body)
				out.descSent = true
			}
		case msgDataRow:
			if pass && out.captured != nil {
				out.captured[out.part] = append(out.captured[out.part], append([]byte(nil), body...))
			} else if pass {
				ss.out = appendMsg(ss.out, typ, body)
				if len(ss.out) > 64<<10 {
					if err := ss.flushClient(); err != nil {
						return "", err
					}
				}
			}
		case msgCopyOutResponse:
			if pass && !out.copyStarted {
				ss.out = appendMsg(ss.out, typ, body)
				out.copyStarted = true
			}
		case msgCopyData:
			first := out.firstData
			skip := out.copyHeader && out.part > 0 && first
			out.firstData = false
			if out.copyBinary {
				body = joinBinaryCopy(body, first, out.part > 0)
				skip = len(body) == 0
			}
			if pass && !skip {
				ss.out = appendMsg(ss.out, typ, body)
				if len(ss.out) > 64<<10 {
					if err := ss.flushClient(); err != nil {
						return "", err
					}
				}
			}
		case msgCommandComplete:
			t, _, _ := cstring(body)
			tag = string(t)
		case msgCopyInResponse:
			// Not expected for a part; end the COPY so the server answers.
			ss.sout = appendFrontend(ss.sout, &pgproto3.CopyFail{Message: "COPY FROM STDIN is not expected here"})
			if err := ss.flushServer(); err != nil {
				return "", err
			}
		default:
			done, err := ss.internalReply(typ, body, "on shard "+shard, &first)
			if err != nil {
				return "", err
			}
			if done {
				return tag, first
			}
		}
	}
}

// execPlan runs op and returns the command tag for the client.
func (ss *session) execPlan(snap *topology.Snapshot, op plan.Operator, params planner.Params, rf []int16, out *execOut) (string, error) {
	if isMergeOp(op) {
		return ss.execMerge(snap, op, params, rf, out)
	}
	switch o := op.(type) {
	case *plan.Route:
		return ss.execRoute(snap, o, argsFor(params, o.ParamIndexes, rf, out.simple), out)
	case *plan.Scatter:
		if ss.txStatus == 'E' {
			return "", &sqlError{abortedError}
		}
		if o.Write {
			// UPDATE/DELETE without a key: every shard, atomically.
			parts := make([]writePart, len(o.Shards))
			for i, s := range o.Shards {
				parts[i] = writePart{shard: s, sql: o.SQLFor(s), args: argsFor(params, nil, rf, out.simple), pass: true}
			}
			tags, err := ss.runWrite(snap, parts, true, out)
			if err != nil {
				return "", err
			}
			return sumTags(tags), nil
		}
		if !isCopySQL(o.SQL) {
			return ss.execScatterRead(snap, o, params, rf, out)
		}
		// COPY … TO STDOUT: shard after shard, one COPY stream; each
		// shard's part may run on a replica (runReadPart).
		out.copyHeader = o.CopyHeader
		out.copyBinary = o.CopyBinary && len(o.Shards) > 1
		var tags []string
		for i, s := range o.Shards {
			out.part = i
			tag, err := ss.runReadPart(snap, s, o.SQLFor(s), argsFor(params, nil, rf, out.simple), out)
			if err != nil {
				return "", err
			}
			tags = append(tags, tag)
		}
		if out.copyStarted {
			if out.copyBinary {
				ss.out = appendMsg(ss.out, msgCopyData, plan.BinaryCopyTrailer)
			}
			ss.out = appendEmpty(ss.out, msgCopyDone)
		}
		return sumTags(tags), nil
	case *plan.Broadcast:
		if ss.txStatus == 'E' {
			return "", &sqlError{abortedError}
		}
		if o.Copy {
			return ss.copyFanout(snap, o.SQL, o.Shards, nil, o.NeedsAtomic, o.ReturnFrom)
		}
		parts := make([]writePart, len(o.Shards))
		for i, s := range o.Shards {
			parts[i] = writePart{shard: s, sql: o.SQL, args: argsFor(params, nil, rf, out.simple), pass: s == o.ReturnFrom}
		}
		tags, err := ss.runWrite(snap, parts, o.NeedsAtomic, out)
		ss.srv.catalog.invalidate() // DDL may have changed columns or defaults
		if err != nil {
			return "", err
		}
		for i, p := range parts {
			if p.pass {
				return tags[i], nil
			}
		}
		return tags[0], nil
	case *plan.SplitInsert:
		if ss.txStatus == 'E' {
			return "", &sqlError{abortedError}
		}
		parts := make([]writePart, len(o.Parts))
		for i, r := range o.Parts {
			parts[i] = writePart{shard: r.Shard, sql: r.SQL, args: argsFor(params, r.ParamIndexes, rf, out.simple), pass: true}
		}
		if o.Returning && len(o.Parts) > 1 {
			out.captured = make([][][]byte, len(o.Parts))
			defer func() { out.captured = nil }()
		}
		tags, err := ss.runWrite(snap, parts, o.NeedsAtomic, out)
		if err != nil {
			return "", err
		}
		if out.captured != nil {
			for _, row := range returningInRowOrder(o, out.captured) {
				ss.out = appendMsg(ss.out, msgDataRow, row)
			}
		}
		return sumTags(tags), nil
	case *plan.AllocateKeys:
		if ss.txStatus == 'E' {
			return "", &sqlError{abortedError}
		}
		keys, err := ss.allocateFor(snap, o)
		if err != nil {
			return "", err
		}
		p2 := planner.AppendKeys(params, keys)
		a2, err := ss.srv.planner.Analyze(o.SQL)
		if err != nil {
			return "", err
		}
		op2, err := ss.srv.planner.Plan(snap, a2, p2)
		if err != nil {
			return "", err
		}
		if _, again := op2.(*plan.AllocateKeys); again {
			return "", fmt.Errorf("planner: AllocateKeys planned again for %q", o.SQL)
		}
		return ss.execPlan(snap, op2, p2, rf, &execOut{simple: out.simple})
	case *plan.CopySplit:
		if ss.txStatus == 'E' {
			return "", &sqlError{abortedError}
		}
		cs := *o
		if cs.KeyColumnIndex < 0 {
			t := ss.srv.catalog.get(cs.Table)
			if t != nil {
				for i, c := range t.cols {
					if strings.EqualFold(c, cs.KeyColumn) {
						cs.KeyColumnIndex = i
					}
				}
			}
			if cs.KeyColumnIndex < 0 {
				return "", &plan.Unsupported{Message: "cannot find the position of distribution key " + cs.KeyColumn + " in " + cs.Table,
					Hint: "give COPY a column list that includes " + cs.KeyColumn}
			}
		}
		split, err := plan.NewCopySplitter(&cs, snap)
		if err != nil {
			return "", err
		}
		return ss.copyFanout(snap, cs.SQL, cs.Shards, split, cs.NeedsAtomic, "")
	case *plan.Explain:
		return ss.explain(snap, o, params, rf, out)
	case *plan.PullOut:
		return ss.execPullOut(snap, o, params, rf, out)
	case *plan.KeyUpdate:
		return ss.execKeyUpdate(snap, o, params, rf, out) // exec_keyupdate.go
	case *plan.InsertSelect:
		return ss.execInsertSelect(snap, o, params, rf, out) // exec_insert_select.go
	case *twoPhaseCommitOp:
		return ss.commitExtended(snap)
	case *failedCommitOp:
		return ss.rollbackFailed(snap)
	case *batchTxOp:
		return ss.runBatchTxOp(snap, o) // batch_txcontrol.go
	case *plan.CopyOut:
		return ss.execCopyOut(snap, o, params) // exec_copyout.go
	case *plan.DeclareCursor:
		return ss.declareCursor(snap, o, params)
	}
	return "", &plan.Unsupported{Message: "this statement cannot be run across shards here (" + op.Describe().Name + ")",
		Hint: "send it as a separate statement"}
}

// execRoute runs a Route the proxy runs itself with args (nil: as a
// simple Query).
func (ss *session) execRoute(snap *topology.Snapshot, o *plan.Route, args *partArgs, out *execOut) (string, error) {
	shard := o.Shard
	if o.ReadAnyShard && ss.sc != nil && snap.HasShard(ss.shard) {
		shard = ss.shard
	}
	if ss.blockedByAbort(shard) {
		return "", &sqlError{abortedError}
	}
	if !o.ReadOnly {
		if err := ss.checkWrite([]string{shard}); err != nil {
			return "", err
		}
	}
	if o.ReadOnly {
		return ss.runReadPart(snap, shard, o.SQL, args, out)
	}
	return ss.runPart(snap, shard, o.SQL, args, out, true)
}

// writePart is one statement of a write over one or several shards.
type writePart struct {
	shard string
	sql   string
	args  *partArgs
	pass  bool // its rows go to the client
}

// returningInRowOrder puts the RETURNING rows of a split INSERT's parts
// (captured[i]: part i's, in its VALUES order) in the order of the
// statement's VALUES rows, as one server would return them. When a part
// returned fewer rows than it inserted (ON CONFLICT DO NOTHING, a trigger
// skipping rows) which ones are missing is unknown: the parts' rows are
// then concatenated in part order.
func returningInRowOrder(o *plan.SplitInsert, captured [][][]byte) [][]byte {
	total := 0
	exact := len(o.Rows) == len(captured)
	for i, rows := range captured {
		total += len(rows)
		exact = exact && len(rows) == len(o.Rows[i])
	}
	out := make([][]byte, 0, total)
	if !exact {
		for _, rows := range captured {
			out = append(out, rows...)
		}
		return out
	}
	out = out[:total]
	for i, rows := range captured {
		for j, row := range rows {
			out[o.Rows[i][j]] = row
		}
	}
	return out
}

// runWrite runs parts; over several shards outside a transaction block and
// when atomic, inside BEGIN … COMMIT on each, all committed only when all
// succeeded.
func (ss *session) runWrite(snap *topology.Snapshot, parts []writePart, atomic bool, out *execOut) ([]string, error) {
	var shards []string
	seen := map[string]bool{}
	for _, p := range parts {
		if !seen[p.shard] {
			seen[p.shard] = true
			shards = append(shards, p.shard)
		}
	}
	if err := ss.checkMultiWrite(shards); err != nil {
		return nil, err
	}
	wrap := atomic && !ss.inTransaction() && len(shards) > 1
	var begun []string
	if wrap {
		for _, s := range shards {
			if err := ss.useShard(snap, s); err != nil {
				ss.rollbackShards(snap, begun)
				return nil, err
			}
			if err := ss.runRaw(appendQuery(nil, "BEGIN")); err != nil {
				ss.rollbackShards(snap, begun)
				return nil, err
			}
			begun = append(begun, s)
		}
	}
	tags := make([]string, len(parts))
	for i, p := range parts {
		out.part = i
		tag, err := ss.runPart(snap, p.shard, p.sql, p.args, out, p.pass)
		if err != nil {
			ss.rollbackShards(snap, begun)
			return nil, err
		}
		tags[i] = tag
	}
	if len(begun) > 1 {
		if err := ss.commitWrapped(snap, begun); err != nil {
			return nil, err
		}
	}
	return tags, nil
}

// commitWrapped commits the transactions runWrite or copyFanout opened
// on shards with two-phase commit.
func (ss *session) commitWrapped(snap *topology.Snapshot, shards []string) error {
	saved := ss.txStatus
	ss.txStatus = 'T' // the shards are inside transaction blocks of the proxy's
	err := ss.twoPhaseCommit(snap, shards)
	ss.txStatus = saved
	return err
}

// checkMultiWrite applies checkWrite to a write over shards. Outside a
// transaction block a write over several shards runs inside transaction
// blocks of its own (runWrite), committed together; in a pipelined batch
// the batch becomes the proxy's transaction first, so the write commits
// with the rest of it at the Sync.
func (ss *session) checkMultiWrite(shards []string) error {
	if len(shards) > 1 && ss.batch && !ss.inTransaction() {
		snap, _ := ss.snapshot()
		if err := ss.beginImplicitTx(snap); err != nil {
			return err
		}
	}
	return ss.checkWrite(shards)
}

// multiShardWriter marks a batch that already ran a multi-shard write.
const multiShardWriter = "(several shards)"

// rollbackShards rolls back the transactions runWrite opened.
func (ss *session) rollbackShards(snap *topology.Snapshot, shards []string) {
	for _, s := range shards {
		if err := ss.useShard(snap, s); err != nil {
			continue
		}
		if err := ss.runRaw(appendQuery(nil, "ROLLBACK")); err != nil {
			var sg *errServerGone
			if errors.As(err, &sg) {
				ss.abandonServer(err)
			}
		}
	}
}

// sumTags adds up the row counts of the parts' command tags: "INSERT 0 3"
// and "INSERT 0 2" give "INSERT 0 5".
func sumTags(tags []string) string {
	if len(tags) == 0 {
		return "SELECT 0"
	}
	var total int64
	prefix := ""
	for _, t := range tags {
		i := strings.LastIndexByte(t, ' ')
		if i < 0 {
			return tags[0]
		}
		n, err := strconv.ParseInt(t[i+1:], 10, 64)
		if err != nil {
			return tags[0]
		}
		total += n
		if prefix == "" {
			prefix = t[:i+1]
		}
	}
	return prefix + strconv.FormatInt(total, 10)
}

// copyTarget is one shard's connection during a COPY fan-out.
type copyTarget struct {
	shard string
	w     net.Conn
	r     *msgReader
	buf   []byte
	held  *heldConn // nil for the active connection
}

// copyFanout runs COPY … FROM STDIN on every shard and feeds the client's
// data to them: split by key (split != nil) or to all (reference tables).
func (ss *session) copyFanout(snap *topology.Snapshot, sql string, shards []string, split *plan.CopySplitter, atomic bool, returnFrom string) (string, error) {
	if err := ss.checkMultiWrite(shards); err != nil {
		return "", ss.discardCopyIn(err)
	}
	wrap := atomic && !ss.inTransaction() && len(shards) > 1
	var begun []string
	var copyResp []byte
	fail := func(err error) (string, error) {
		ss.rollbackShards(snap, begun)
		return "", ss.discardCopyIn(err)
	}
	for _, s := range shards {
		if err := ss.useShard(snap, s); err != nil {
			return fail(err)
		}
		if wrap {
			if err := ss.runRaw(appendQuery(nil, "BEGIN")); err != nil {
				return fail(err)
			}
			begun = append(begun, s)
		}
		ss.sout = appendQuery(ss.sout, sql)
		if err := ss.flushServer(); err != nil {
			return fail(err)
		}
		resp, err := ss.awaitCopyIn(s)
		if err != nil {
			var sg *errServerGone
			if !errors.As(err, &sg) {
				// The shard refused the COPY; end the ones already copying.
				ss.abortCopies(snap, shards, s)
			}
			return fail(err)
		}
		if copyResp == nil {
			copyResp = append([]byte(nil), resp...)
		}
	}
	// Every shard is copying: address them all directly.
	var targets []*copyTarget
	for _, s := range shards {
		targets = append(targets, ss.copyTargetFor(s))
	}
	byShard := make(map[string]*copyTarget, len(targets))
	for _, t := range targets {
		byShard[t.shard] = t
	}
	ss.out = appendMsg(ss.out, msgCopyInResponse, copyResp)
	if err := ss.flushClient(); err != nil {
		return "", err
	}
	var copyErr error
	var sendErr error
	emit := func(shard string, row []byte) error {
		t := byShard[shard]
		if t == nil {
			return &plan.Error{Code: "XX000", Message: "COPY row routed to shard " + shard + ", which is not part of the COPY"}
		}
		t.buf = appendMsg(t.buf, msgCopyData, row)
		if len(t.buf) >= 64<<10 {
			if _, err := t.w.Write(t.buf); err != nil {
				sendErr = &errServerGone{err}
				return sendErr
			}
			t.buf = t.buf[:0]
		}
		return nil
	}
	for done := false; !done; {
		typ, body, err := ss.cr.next()
		if err != nil {
			return "", errClientGone
		}
		switch typ {
		case msgCopyData:
			if copyErr != nil {
				continue
			}
			if split != nil {
				copyErr = split.Write(body, emit)
			} else {
				for _, t := range targets {
					if copyErr = emit(t.shard, body); copyErr != nil {
						break
					}
				}
			}
		case msgCopyDone:
			if copyErr == nil && split != nil {
				copyErr = split.Close(emit)
			}
			done = true
		case msgCopyFail:
			if copyErr == nil {
				copyErr = &sqlError{errorFields{Code: codeQueryCanceled, Message: "COPY from stdin failed: " + string(trimNUL(body))}}
			}
			done = true
		case msgFlush, msgSync:
		default:
			if copyErr == nil {
				copyErr = &sqlError{errorFields{Code: codeProtocolViolation, Message: fmt.Sprintf("unexpected message type 0x%02X during COPY from stdin", typ)}}
			}
			done = true
		}
	}
	if sendErr != nil {
		return "", sendErr
	}
	var tags []string
	var tagFrom string
	var first error
	for _, t := range targets {
		if copyErr == nil {
			t.buf = appendEmpty(t.buf, msgCopyDone)
		} else {
			t.buf = appendFrontend(t.buf, &pgproto3.CopyFail{Message: "aborted by shardproxy"})
		}
		status, tag, err := ss.finishCopy(t)
		var sg *errServerGone
		if errors.As(err, &sg) {
			return "", err
		}
		if err != nil && first == nil {
			first = err
		}
		if t.held != nil {
			t.held.inTx = status != 'I'
		} else {
			ss.noteServerStatus(status)
		}
		tags = append(tags, tag)
		if t.shard == returnFrom {
			tagFrom = tag
		}
	}
	if copyErr != nil {
		first = copyErr
	}
	if first != nil {
		ss.rollbackShards(snap, begun)
		return "", first
	}
	if len(begun) > 1 {
		if err := ss.commitWrapped(snap, begun); err != nil {
			return "", err
		}
	}
	if tagFrom != "" {
		return tagFrom, nil
	}
	return sumTags(tags), nil
}

// awaitCopyIn reads the active connection's answer to a COPY FROM STDIN:
// the CopyInResponse body, or the error (after its ReadyForQuery).
func (ss *session) awaitCopyIn(shard string) ([]byte, error) {
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return nil, &errServerGone{err}
		}
		switch typ {
		case msgCopyInResponse:
			return body, nil
		case msgErrorResponse:
			f := decodeError(body)
			if isFatal(body) {
				return nil, &errServerGone{&sqlError{f}}
			}
			f.Detail = strings.TrimSpace(f.Detail + "\n(on shard " + shard + ")")
			for {
				typ, body, err := ss.sr.next()
				if err != nil {
					return nil, &errServerGone{err}
				}
				if typ == msgReadyForQuery && len(body) == 1 {
					ss.noteServerStatus(body[0])
					return nil, &sqlError{f}
				}
			}
		case msgNoticeResponse:
			ss.out = appendMsg(ss.out, typ, body)
		}
	}
}

// abortCopies ends the COPY on shards before failed, which are waiting for
// data.
func (ss *session) abortCopies(snap *topology.Snapshot, shards []string, failed string) {
	for _, s := range shards {
		if s == failed {
			return
		}
		t := ss.copyTargetFor(s)
		t.buf = appendFrontend(t.buf, &pgproto3.CopyFail{Message: "aborted by shardproxy"})
		status, _, _ := ss.finishCopy(t)
		if t.held != nil {
			t.held.inTx = status != 'I'
		}
	}
}

// copyTargetFor returns shard's connection (active or held) for direct use.
func (ss *session) copyTargetFor(shard string) *copyTarget {
	if ss.sc != nil && ss.shard == shard {
		return &copyTarget{shard: shard, w: ss.sc.Conn, r: &ss.sr}
	}
	for i := range ss.held {
		h := &ss.held[i]
		if h.shard == shard {
			return &copyTarget{shard: shard, w: h.sc.Conn, r: &msgReader{br: h.br, maxLen: 1 << 30}, held: h}
		}
	}
	return nil
}

// finishCopy sends what is buffered (ending in CopyDone or CopyFail) and
// reads the shard's answer up to ReadyForQuery.
func (ss *session) finishCopy(t *copyTarget) (byte, string, error) {
	if _, err := t.w.Write(t.buf); err != nil {
		return 0, "", &errServerGone{err}
	}
	t.buf = t.buf[:0]
	var tag string
	var first error
	for {
		typ, body, err := t.r.next()
		if err != nil {
			return 0, "", &errServerGone{err}
		}
		switch typ {
		case msgCommandComplete:
			tt, _, _ := cstring(body)
			tag = string(tt)
		case msgErrorResponse:
			if first == nil {
				f := decodeError(body)
				f.Detail = strings.TrimSpace(f.Detail + "\n(on shard " + t.shard + ")")
				first = &sqlError{f}
			}
		case msgNoticeResponse:
			ss.out = appendMsg(ss.out, typ, body)
		case msgReadyForQuery:
			if len(body) == 1 {
				return body[0], tag, first
			}
			return 0, "", &errServerGone{fmt.Errorf("malformed ReadyForQuery")}
		}
	}
}

// discardCopyIn answers a COPY FROM STDIN the proxy refuses before any
// shard started it: like PostgreSQL after an error, the client's data is
// read and dropped up to CopyDone or CopyFail. The client only learns of
// the error afterwards, so it is told to start sending first.
func (ss *session) discardCopyIn(err error) error {
	var sg *errServerGone
	if errors.As(err, &sg) || errors.Is(err, errClientGone) {
		return err
	}
	ss.out = appendEncoded(ss.out, &pgproto3.CopyInResponse{OverallFormat: 0})
	if ferr := ss.flushClient(); ferr != nil {
		return ferr
	}
	for {
		typ, _, rerr := ss.cr.next()
		if rerr != nil {
			return errClientGone
		}
		if typ == msgCopyDone || typ == msgCopyFail {
			return err
		}
	}
}

// explain answers EXPLAIN: the proxy's plan first, then each shard's own
// plan of its part.
func (ss *session) explain(snap *topology.Snapshot, o *plan.Explain, params planner.Params, rf []int16, out *execOut) (string, error) {
	lines := plan.Lines(o.Inner)
	emitted := 0
	emit := func(line string) {
		ss.out = appendMsg(ss.out, msgDataRow, dataRowText(line))
		emitted++
	}
	if out.simple {
		ss.out = appendEncoded(ss.out, explainRowDesc())
	}
	emit("shardproxy plan:")
	for _, l := range lines {
		emit("  " + l)
	}
	for _, leaf := range plan.Leaves(o.Inner) {
		if err := ss.explainLeaf(snap, o, leaf, params, out.simple, emit); err != nil {
			return "", err
		}
	}
	return "EXPLAIN", nil
}

// explainLeaf appends the shards' own EXPLAIN output of leaf's statements
// (for a PullOut, of its subqueries: explainPulled).
func (ss *session) explainLeaf(snap *topology.Snapshot, o *plan.Explain, leaf plan.Operator, params planner.Params, simple bool, emit func(string)) error {
	var shards []string
	sqlFor := func(string) string { return "" }
	var idx []int
	switch l := leaf.(type) {
	case *plan.Route:
		shards, sqlFor, idx = []string{l.Shard}, func(string) string { return l.SQL }, l.ParamIndexes
	case *plan.Scatter:
		shards, sqlFor = l.Shards, l.SQLFor
	case *plan.Broadcast:
		shards, sqlFor = l.Shards, func(string) string { return l.SQL }
	case *plan.PullOut:
		return ss.explainPulled(snap, o, l, params, simple, emit)
	case *plan.InsertSelect:
		return ss.explainInsertSelect(snap, o, l, params, simple, emit) // exec_insert_select.go
	default:
		return nil
	}
	for _, s := range shards {
		emit("shard " + s + ":")
		capture := &rowCapture{}
		sql := o.Prefix + " " + sqlFor(s)
		// Plain EXPLAIN only plans; EXPLAIN ANALYZE of a read runs
		// a read: either may run on a replica (replicaRead).
		read := (!o.Analyze || readOnlyLeaf(leaf)) && ss.replicaRead(snap, s, sql)
		if _, err := ss.runCaptured(snap, s, sql, argsFor(params, idx, nil, simple), read, capture); err != nil {
			return err
		}
		for _, r := range capture.rows {
			for _, line := range strings.Split(r0Text(r), "\n") {
				emit("  " + line)
			}
		}
	}
	return nil
}

// rowCapture keeps the first column of each DataRow.
type rowCapture struct{ rows [][]byte }

// readOnlyLeaf reports whether the planner marked a leaf operator as
// only reading.
func readOnlyLeaf(leaf plan.Operator) bool {
	switch l := leaf.(type) {
	case *plan.Route:
		return l.ReadOnly
	case *plan.Scatter:
		return l.ReadOnly && !l.Write
	}
	return false
}

// runCaptured runs a part whose rows the proxy needs itself; read makes
// it a read decision (it may run on a replica of shard).
func (ss *session) runCaptured(snap *topology.Snapshot, shard, sql string, args *partArgs, read bool, c *rowCapture) (string, error) {
	saved := ss.out
	ss.out = nil
	var tag string
	err := ss.useShardAs(snap, shard, read)
	if err == nil {
		tag, err = ss.runPartHere(shard, sql, args, &execOut{}, true)
	}
	captured := ss.out
	ss.out = saved
	for len(captured) >= 5 {
		typ := captured[0]
		n := int(captured[1])<<24 | int(captured[2])<<16 | int(captured[3])<<8 | int(captured[4])
		body := captured[5 : 1+n]
		if typ == msgDataRow {
			c.rows = append(c.rows, append([]byte(nil), body...))
		} else {
			ss.out = appendMsg(ss.out, typ, body) // notices
		}
		captured = captured[1+n:]
	}
	return tag, err
}

// r0Text returns the first column of a DataRow body as text.
func r0Text(body []byte) string {
	if len(body) < 6 {
		return ""
	}
	n := int(int32(uint32(body[2])<<24 | uint32(body[3])<<16 | uint32(body[4])<<8 | uint32(body[5])))
	if n < 0 || 6+n > len(body) {
		return ""
	}
	return string(body[6 : 6+n])
}

// dataRowText builds a one-column text DataRow body.
func dataRowText(s string) []byte {
	b := make([]byte, 0, 6+len(s))
	b = append(b, 0, 1)
	n := len(s)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, s...)
}

func explainRowDesc() *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("QUERY PLAN"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
}

// trimNUL drops the terminating NUL of a message string.
func trimNUL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == 0 {
		return b[:n-1]
	}
	return b
}
