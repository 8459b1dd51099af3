package proxy

import (
	"errors"
	"io"
	"strconv"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// INSERT … SELECT through the proxy (plan.InsertSelect). The SELECT runs
// as a cursorRead (exec_cursor.go): each shard's part is a portal inside
// the transaction, fetched in batches, so its connections are idle between
// fetches and the batch INSERTs run on the same connections, in the same
// transaction (they see what it wrote; the portals' snapshots, taken before
// the first INSERT, do not see the rows being inserted, as in PostgreSQL).
// Rows are taken from the merge in binary format and kept only until their
// batch is written (plan.InsertSelect.BatchRows rows or
// plan.InsertSelectBatchBytes bytes). Each batch is an INSERT … VALUES
// planned and run like the client's own (split by key, keys allocated,
// broadcast to reference tables).
//
// Outside a transaction block the proxy opens one for the statement on
// every shard it touches and ends it itself: a two-phase commit when
// several shards were written, otherwise COMMIT; any failure rolls every
// shard back, so no row of a failed statement stays anywhere.

// userTypeOIDs: OIDs from here on are user types (enums, domains,
// composites) whose OIDs differ between shards; their values are sent
// without a type and the server reads them as the target column's type.
const userTypeOIDs = 16384

// execInsertSelect runs o; its RETURNING rows go to the client as out
// says, and the command tag (INSERT 0 n) is returned.
func (ss *session) execInsertSelect(snap *topology.Snapshot, o *plan.InsertSelect, params planner.Params, rf []int16, out *execOut) (string, error) {
	switch ss.txStatus {
	case 'E':
		return "", &sqlError{abortedError}
	case 'T':
		return ss.insertSelectRows(snap, o, params, rf, out)
	}
	if ss.txBegin != "" {
		// A BEGIN earlier in this pipelined batch: the client's transaction
		// is open on the shards (joining ones get it too; its ReadyForQuery
		// has not come yet), so the statement joins it as inside a block
		// and the client's COMMIT ends it.
		// A failure leaves it 'T', so the caller marks the transaction
		// failed (failInTx) as PostgreSQL would.
		ss.txStatus = 'T'
		tag, err := ss.insertSelectRows(snap, o, params, rf, out)
		if err == nil && ss.txStatus == 'T' {
			ss.txStatus = 'I'
		}
		return tag, err
	}
	if ss.txWriter != "" {
		return "", &plan.Unsupported{
			Message: "INSERT … SELECT across shards after another write in the same pipelined batch is not supported",
			Hint:    "wrap the batch in BEGIN … COMMIT, or send a Sync before the INSERT … SELECT",
		}
	}
	if err := ss.beginImplicit(); err != nil {
		ss.endImplicit(snap, false)
		return "", err
	}
	tag, err := ss.insertSelectRows(snap, o, params, rf, out)
	if err != nil {
		ss.endImplicit(snap, false)
		return "", err
	}
	if err := ss.endImplicit(snap, true); err != nil {
		return "", err
	}
	return tag, nil
}

// beginImplicit opens the proxy's own transaction block for one statement:
// connections that join later get BEGIN when attached (beginOnJoin); the
// ones already attached get it now.
func (ss *session) beginImplicit() error {
	ss.txStatus = 'T'
	ss.txBegin = "BEGIN"
	if ss.sc != nil && !ss.scTx {
		if err := ss.settle(); err != nil {
			return err
		}
		if ss.sc != nil {
			if err := ss.runRaw(appendQuery(nil, "BEGIN")); err != nil {
				return err
			}
		}
	}
	for i := range ss.held {
		h := &ss.held[i]
		if h.inTx || h.needSync {
			continue
		}
		status, err := ss.exchangeHeld(h, appendQuery(nil, "BEGIN"))
		if err != nil {
			return err
		}
		h.inTx = status != 'I'
	}
	return nil
}

// endImplicit ends the transaction beginImplicit opened: on every shard
// that only read, COMMIT; on the written ones COMMIT (one) or a two-phase
// commit (several); when commit is false, or a COMMIT fails, ROLLBACK
// everywhere. The session is outside a transaction block afterwards.
func (ss *session) endImplicit(snap *topology.Snapshot, commit bool) error {
	defer func() {
		ss.txStatus = 'I'
		ss.resetTx()
		if ss.batch && commit {
			ss.txWriter = multiShardWriter // later writes of the batch are refused, as after runWrite
		}
	}()
	shards := ss.txShards()
	if !commit {
		ss.rollbackShards(snap, shards)
		return nil
	}
	writers := ss.writersIn(shards)
	isWriter := map[string]bool{}
	for _, w := range writers {
		isWriter[w] = true
	}
	for _, s := range shards {
		if isWriter[s] {
			continue
		}
		if err := ss.runOnShard(snap, s, "COMMIT"); err != nil && isServerGone(err) {
			ss.rollbackShards(snap, writers)
			return err
		}
	}
	switch len(writers) {
	case 0:
		return nil
	case 1:
		if err := ss.runOnShard(snap, writers[0], "COMMIT"); err != nil {
			var sg *errServerGone
			if errors.As(err, &sg) {
				return err
			}
			ss.rollbackShards(snap, writers)
			return err
		}
		return nil
	}
	return ss.twoPhaseCommit(snap, writers)
}

// insertSelectRows runs o inside the open transaction block.
func (ss *session) insertSelectRows(snap *topology.Snapshot, o *plan.InsertSelect, params planner.Params, rf []int16, out *execOut) (string, error) {
	selOp, selParams := o.Select, planner.SelectParams(params, o.SelectParams)
	if po, ok := selOp.(*plan.PullOut); ok {
		var err error
		if selOp, selParams, err = ss.pullOutOuter(snap, po, selParams); err != nil {
			return "", err
		}
	}
	if r, ok := selOp.(*plan.Route); ok {
		// One shard: read through a one-shard cursor like the others.
		selParams = planner.SelectParams(selParams, r.ParamIndexes)
		selOp = &plan.Scatter{Shards: []string{r.Shard}, SQL: r.SQL, Reason: r.Reason, ReadOnly: r.ReadOnly}
	}
	cr, err := ss.openCursorRead(snap, selOp, selParams, []int16{1})
	if err != nil {
		return "", err
	}
	defer cr.close()
	desc := cr.rowDescription()
	columns := len(desc.Fields)
	oids := make([]uint32, columns)
	formats := make([]int16, columns)
	for i, f := range desc.Fields {
		formats[i] = 1
		if f.DataTypeOID < userTypeOIDs {
			oids[i] = f.DataTypeOID
		}
	}
	for _, c := range o.UntypedColumns {
		if c < columns {
			// A string literal or NULL: its text (a text value's binary
			// form is its text) read as the target column's input.
			formats[c], oids[c] = 0, 0
		}
	}
	perBatch := o.BatchRows(columns)
	var tags []string
	var batch [][][]byte
	bytes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		tag, err := ss.insertBatch(snap, o, params, batch, oids, formats, rf, out)
		batch, bytes = batch[:0], 0
		if err != nil {
			return err
		}
		tags = append(tags, tag)
		return nil
	}
	cr.primed = true
	if err := cr.prime(); err != nil {
		return "", err
	}
	for {
		row, err := cr.res.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if len(row) != columns {
			return "", &plan.Error{Code: "XX000", Message: "shardproxy: INSERT … SELECT row has " + strconv.Itoa(len(row)) + " columns, expected " + strconv.Itoa(columns)}
		}
		if o.SingleBatch && len(batch) == perBatch {
			return "", &plan.Unsupported{
				Message: "INSERT … SELECT … ON CONFLICT DO UPDATE into " + o.Table + " through the proxy is limited to " + strconv.Itoa(perBatch) + " rows (one batch: PostgreSQL's check that no row is updated twice by the statement cannot span batches)",
				Hint:    "restrict the SELECT, split the statement by key ranges, or use ON CONFLICT DO NOTHING",
			}
		}
		kept := make([][]byte, columns)
		for i, v := range row {
			if v != nil {
				kept[i] = append(make([]byte, 0, len(v)), v...)
				bytes += len(v)
			}
		}
		batch = append(batch, kept)
		if !o.SingleBatch && (len(batch) >= perBatch || bytes >= plan.InsertSelectBatchBytes) {
			if err := flush(); err != nil {
				return "", err
			}
		}
	}
	if err := flush(); err != nil {
		return "", err
	}
	if len(tags) == 0 {
		if o.Returning && out.simple {
			// No row: the client still gets the RETURNING's row shape.
			if _, err := ss.runPart(snap, snap.DefaultShard(), o.EmptySQL(columns), argsFor(params, o.InsertParams, rf, false), out, true); err != nil {
				return "", err
			}
		}
		return "INSERT 0 0", nil
	}
	return sumTags(tags), nil
}

// insertBatch plans and runs the INSERT of rows (values of the SELECT's
// columns, in formats, whose types are oids; 0: the target column's).
func (ss *session) insertBatch(snap *topology.Snapshot, o *plan.InsertSelect, params planner.Params, rows [][][]byte, oids []uint32, formats []int16, rf []int16, out *execOut) (string, error) {
	columns := len(oids)
	sql := o.BatchSQL(len(rows), columns)
	p := planner.SelectParams(params, o.InsertParams)
	if len(p.Formats) == 1 && len(p.Values) != 1 {
		p.Formats = nil // no value of its own: nothing the one format applies to
	}
	for len(p.Formats) < len(p.Values) {
		p.Formats = append(p.Formats, 0)
	}
	for _, row := range rows {
		p.Values = append(p.Values, row...)
		p.OIDs = append(p.OIDs, oids...)
		p.Formats = append(p.Formats, formats...)
	}
	a, err := ss.srv.planner.Analyze(sql)
	if err != nil {
		return "", err
	}
	op, err := ss.srv.planner.Plan(snap, a, p)
	if err != nil {
		return "", err
	}
	if ak, ok := op.(*plan.AllocateKeys); ok {
		// Allocated here rather than by execPlan, so the batches share out
		// (one RowDescription for all RETURNING rows).
		keys, err := ss.allocateFor(snap, ak)
		if err != nil {
			return "", err
		}
		p = planner.AppendKeys(p, keys)
		a2, err := ss.srv.planner.Analyze(ak.SQL)
		if err != nil {
			return "", err
		}
		if op, err = ss.srv.planner.Plan(snap, a2, p); err != nil {
			return "", err
		}
		if _, again := op.(*plan.AllocateKeys); again {
			return "", errors.New("planner: AllocateKeys planned again for an INSERT … SELECT batch")
		}
	}
	if _, again := op.(*plan.InsertSelect); again {
		return "", errors.New("planner: InsertSelect planned again for an INSERT … SELECT batch")
	}
	return ss.execPlan(snap, op, p, rf, out)
}

// explainInsertSelect appends the shards' EXPLAIN of the SELECT of an
// InsertSelect (the INSERT batches are planned only when its rows come).
func (ss *session) explainInsertSelect(snap *topology.Snapshot, o *plan.Explain, is *plan.InsertSelect, params planner.Params, simple bool, emit func(string)) error {
	emit("select:")
	sp := planner.SelectParams(params, is.SelectParams)
	for _, leaf := range plan.Leaves(is.Select) {
		if err := ss.explainLeaf(snap, o, leaf, sp, simple, emit); err != nil {
			return err
		}
	}
	return nil
}
