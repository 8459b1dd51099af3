package proxy

import (
	"encoding/binary"
	"fmt"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/merge"
	"github.com/shardproxy/shardproxy/topology"
)

// Pulled-out subqueries (plan.PullOut): each subquery's plan runs first
// like any statement of the session — on the transaction's connections
// inside a transaction block, so it sees the transaction's own writes —
// in the extended protocol with binary results (exact whatever the
// session's output settings), its output taken by a pulledRows instead of
// going to the client; then the outer statement, with the captured values
// as extra Bind parameters (plan.PullOut.OuterSQL), is planned and run
// normally. At most plan.MaxPulledRows values per subquery are kept (the
// rest are only counted), and no more bytes than the merge memory limit
// (53200 beyond it), so memory stays bounded.

// pulledRows collects the output of a subquery run for a PullOut.
type pulledRows struct {
	typeOID uint32
	values  [][]byte
	// relation: keep every column (a pulled-out table, plan.PulledSubquery.Relation)
	// in columns instead of the first in values.
	relation bool
	columns  []plan.PulledColumn
	rows     int    // DataRows seen (values holds at most MaxPulledRows+1)
	bytes    int64  // size of values
	limit    int64  // merge.memory_limit: beyond it, 53200 (≤ 0: none)
	keep     []byte // other messages (notices), passed on to the client
	bad      error
}

// take consumes the complete messages buffered in ss.out.
func (p *pulledRows) take(ss *session) {
	err := eachMessage(ss.out, func(typ byte, body []byte) {
		switch typ {
		case msgRowDescription:
			p.describe(body)
		case msgDataRow:
			p.row(body)
		default:
			p.keep = appendMsg(p.keep, typ, body)
		}
	})
	if err != nil {
		p.bad = fmt.Errorf("pull-out: %w", err)
	}
	ss.out = ss.out[:0]
}

// describe notes the type of the first column of a RowDescription (every
// column's name and type for a relation).
func (p *pulledRows) describe(body []byte) {
	if p.relation {
		p.describeAll(body)
		return
	}
	if len(body) < 2 || binary.BigEndian.Uint16(body) != 1 {
		p.bad = &plan.Error{Code: "42601", Message: "subquery has too many columns"}
		return
	}
	_, rest, ok := cstring(body[2:])
	if !ok || len(rest) < 10 {
		p.bad = fmt.Errorf("pull-out: malformed RowDescription")
		return
	}
	p.typeOID = binary.BigEndian.Uint32(rest[6:10])
}

func (p *pulledRows) describeAll(body []byte) {
	if len(body) < 2 {
		p.bad = fmt.Errorf("pull-out: malformed RowDescription")
		return
	}
	n := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	p.columns = make([]plan.PulledColumn, 0, n)
	for range n {
		name, r, ok := cstring(rest)
		if !ok || len(r) < 18 {
			p.bad = fmt.Errorf("pull-out: malformed RowDescription")
			return
		}
		p.columns = append(p.columns, plan.PulledColumn{Name: string(name), TypeOID: binary.BigEndian.Uint32(r[6:10]), Typmod: int32(binary.BigEndian.Uint32(r[12:16]))})
		rest = r[18:]
	}
}

// row keeps the first column of a DataRow (every column for a relation).
func (p *pulledRows) row(body []byte) {
	p.rows++
	if p.rows > plan.MaxPulledRows+1 {
		return
	}
	if p.relation {
		p.rowAll(body)
		return
	}
	if len(body) < 6 {
		p.bad = fmt.Errorf("pull-out: malformed DataRow")
		return
	}
	n := int32(binary.BigEndian.Uint32(body[2:6]))
	if n < 0 {
		p.values = append(p.values, nil)
		return
	}
	if int(n) > len(body)-6 {
		p.bad = fmt.Errorf("pull-out: malformed DataRow")
		return
	}
	if !p.count(int64(n)) {
		return
	}
	p.values = append(p.values, append([]byte{}, body[6:6+n]...))
}

func (p *pulledRows) rowAll(body []byte) {
	if len(body) < 2 || int(binary.BigEndian.Uint16(body)) != len(p.columns) {
		p.bad = fmt.Errorf("pull-out: DataRow does not match the RowDescription")
		return
	}
	rest := body[2:]
	for i := range p.columns {
		if len(rest) < 4 {
			p.bad = fmt.Errorf("pull-out: malformed DataRow")
			return
		}
		n := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if n < 0 {
			p.columns[i].Values = append(p.columns[i].Values, nil)
			continue
		}
		if int(n) > len(rest) {
			p.bad = fmt.Errorf("pull-out: malformed DataRow")
			return
		}
		if !p.count(int64(n)) {
			return
		}
		p.columns[i].Values = append(p.columns[i].Values, append([]byte{}, rest[:n]...))
		rest = rest[n:]
	}
}

// count adds a value of n bytes to the memory used, false (and the
// 53200 error) beyond the limit.
func (p *pulledRows) count(n int64) bool {
	p.bytes += n + 24
	if p.limit > 0 && p.bytes > p.limit {
		if p.bad == nil {
			p.bad = &merge.Error{Code: "53200", Message: fmt.Sprintf("out of memory: the values of a subquery run before the rest of the statement need more than %d bytes", p.limit),
				Hint: "restrict the subquery, or raise the proxy's merge memory limit"}
		}
		return false
	}
	return true
}

// execPullOut runs a PullOut: the subqueries, then the outer statement,
// whose rows and command tag go to the client as out says.
func (ss *session) execPullOut(snap *topology.Snapshot, o *plan.PullOut, params planner.Params, rf []int16, out *execOut) (string, error) {
	op, outerParams, err := ss.pullOutOuter(snap, o, params)
	if err != nil {
		return "", err
	}
	return ss.execPlan(snap, op, outerParams, rf, out)
}

// resolvePullOut, for an Execute with a row limit of a PullOut portal,
// runs the subqueries and makes the portal the outer statement's plan
// with its parameters, so the read suspends at the limit like any
// cross-shard read (exec_portal.go). stop: the Execute is answered (err
// is what to return).
func (ss *session) resolvePullOut(snap *topology.Snapshot, mp *multiPortal, limit int) (stop bool, err error) {
	o, ok := mp.op.(*plan.PullOut)
	if !ok || limit <= 0 {
		return false, nil
	}
	if err := ss.settle(); err != nil || ss.skip {
		return true, err
	}
	op, params, err := ss.pullOutOuter(snap, o, mp.params)
	if err != nil {
		return true, ss.failExtendedTx(err)
	}
	mp.op, mp.params = op, params
	return false, nil
}

// pullOutOuter runs o's subqueries and plans its outer statement: the
// plan and the Bind values it takes.
func (ss *session) pullOutOuter(snap *topology.Snapshot, o *plan.PullOut, params planner.Params) (plan.Operator, planner.Params, error) {
	if ss.txStatus == 'E' {
		return nil, params, &sqlError{abortedError}
	}
	results := make([]plan.PulledRows, len(o.Subqueries))
	if o.Distribution != "" && !ss.pullingForWrite {
		ss.pullingForWrite = true // a write's values come from primaries, never stale
		defer func() { ss.pullingForWrite = false }()
	}
	for i, sq := range o.Subqueries {
		r, err := ss.runPulled(snap, sq, params)
		if err != nil {
			return nil, params, err
		}
		results[i] = r
	}
	sql, pulled, err := o.OuterSQL(results)
	if err != nil {
		return nil, params, err
	}
	a, err := ss.srv.planner.Analyze(sql)
	if err != nil {
		return nil, params, err
	}
	own := o.OuterParams
	if own == nil {
		own = []int{} // the statement has no parameters of its own
	}
	outerParams := planner.SelectParams(params, own)
	outerParams.Values = append(outerParams.Values, pulled.Values...)
	outerParams.OIDs = append(outerParams.OIDs, pulled.OIDs...)
	for range pulled.Values {
		outerParams.Formats = append(outerParams.Formats, 1)
	}
	op, err := ss.srv.planner.Plan(snap, a, outerParams)
	if err != nil {
		return nil, params, err
	}
	if _, again := op.(*plan.PullOut); again {
		return nil, params, fmt.Errorf("planner: PullOut planned again for %q", sql)
	}
	return op, outerParams, nil
}

// runPulled runs one subquery of a PullOut and returns its rows.
func (ss *session) runPulled(snap *topology.Snapshot, sq *plan.PulledSubquery, params planner.Params) (plan.PulledRows, error) {
	saved, savedFilter := ss.out, ss.filter // a PullOut inside a subquery of another
	ss.out = nil
	p := &pulledRows{limit: ss.srv.config().Merge.MemoryLimit, relation: sq.Relation != ""}
	if p.limit == 0 {
		p.limit = merge.DefaultMemoryLimit
	}
	ss.filter = p
	_, err := ss.runBinary(snap, sq.Plan, planner.SelectParams(params, sq.ParamIndexes))
	p.take(ss)
	ss.filter = savedFilter
	ss.out = append(saved, p.keep...)
	switch {
	case err != nil:
		return plan.PulledRows{}, err
	case p.bad != nil:
		return plan.PulledRows{}, p.bad
	}
	return plan.PulledRows{TypeOID: p.typeOID, Values: p.values, Columns: p.columns}, nil
}

// runBinary runs a subquery's plan with binary results and a
// RowDescription in front of its rows (a Route always in the extended
// protocol; a PullOut's outer statement the same way).
func (ss *session) runBinary(snap *topology.Snapshot, op plan.Operator, params planner.Params) (string, error) {
	return ss.runRows(snap, op, params, []int16{1})
}

// runRows runs a read plan with results in the formats rf and a
// RowDescription in front of its rows.
func (ss *session) runRows(snap *topology.Snapshot, op plan.Operator, params planner.Params, rf []int16) (string, error) {
	switch o := op.(type) {
	case *plan.PullOut:
		outer, outerParams, err := ss.pullOutOuter(snap, o, params)
		if err != nil {
			return "", err
		}
		return ss.runRows(snap, outer, outerParams, rf)
	case *plan.Route:
		return ss.execRoute(snap, o, argsFor(params, o.ParamIndexes, rf, false), &execOut{simple: true})
	}
	return ss.execPlan(snap, op, params, rf, &execOut{describe: true})
}

// explainPulled appends the shards' EXPLAIN of a PullOut's subqueries.
// The outer statement is planned only once their values are known, so
// EXPLAIN shows just its template (in the plan lines).
func (ss *session) explainPulled(snap *topology.Snapshot, o *plan.Explain, po *plan.PullOut, params planner.Params, simple bool, emit func(string)) error {
	for i, sq := range po.Subqueries {
		emit(fmt.Sprintf("$subquery%d:", i+1))
		sp := planner.SelectParams(params, sq.ParamIndexes)
		for _, leaf := range plan.Leaves(sq.Plan) {
			if err := ss.explainLeaf(snap, o, leaf, sp, simple, emit); err != nil {
				return err
			}
		}
	}
	return nil
}
