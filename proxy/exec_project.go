package proxy

import (
	"encoding/binary"
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/merge"
	"github.com/shardproxy/shardproxy/topology"
)

// Expressions over aggregates (plan.Evaluate): after the merge combined
// the shards' partial aggregates, PostgreSQL computes each expression —
// one statement per batch of merged rows, run like any part of the
// client's statement on its first shard's connection (inside a
// transaction block the transaction's, with the session's settings), the
// merged values as typed Bind parameters after the statement's own.
// The Aggregate below an Evaluate has read every shard to its end before
// the first evaluation, so the scatter run is stopped first and the
// connections are free again.

// hasEvaluate reports whether a merge tree evaluates expressions.
func hasEvaluate(op plan.Operator) bool {
	for isMergeOp(op) {
		if _, ok := op.(*plan.Evaluate); ok {
			return true
		}
		op = op.Inputs()[0]
	}
	return false
}

// shardEvaluator is the merge.Evaluator of one merged read.
type shardEvaluator struct {
	ss     *session
	snap   *topology.Snapshot
	run    *scatterRun // the read's run, stopped before evaluating (nil: a cursor's portals)
	shard  string
	params planner.Params
}

// evaluatorFor returns the evaluator of a merged read of root (nil when
// root evaluates nothing).
func (ss *session) evaluatorFor(snap *topology.Snapshot, root plan.Operator, run *scatterRun, shard string, params planner.Params) merge.Evaluator {
	if !hasEvaluate(root) {
		return nil
	}
	return &shardEvaluator{ss: ss, snap: snap, run: run, shard: shard, params: params}
}

// typeEvalParams returns params with the types PostgreSQL infers for the
// client's statement filled in for the parameters the client sent
// untyped, when root evaluates expressions with parameters (see
// plan.Evaluate.TypeSQL): one Parse and Describe of that statement on
// shard, on the connection the read then uses. Otherwise params as they
// are.
func (ss *session) typeEvalParams(snap *topology.Snapshot, root plan.Operator, params planner.Params, shard string) (planner.Params, error) {
	var ev *plan.Evaluate
	for op := root; isMergeOp(op); op = op.Inputs()[0] {
		if e, ok := op.(*plan.Evaluate); ok {
			ev = e
		}
	}
	if ev == nil || ev.TypeSQL == "" {
		return params, nil
	}
	untyped := false
	for i := range params.Values {
		if i >= len(params.OIDs) || params.OIDs[i] == 0 {
			untyped = true
		}
	}
	if !untyped {
		return params, nil
	}
	all := argsFor(params, nil, nil, false)
	if err := ss.useShardAs(snap, shard, ss.replicaRead(snap, shard, ev.TypeSQL)); err != nil {
		return params, err
	}
	if ss.skip {
		return params, &plan.Error{Code: "XX000", Message: "shardproxy: an earlier statement failed before a cross-shard read"}
	}
	types, err := ss.describeParamsHere(shard, ev.TypeSQL, all.oids)
	if err != nil {
		return params, err
	}
	typed := params
	typed.OIDs = make([]uint32, len(params.Values))
	for i := range typed.OIDs {
		if i < len(params.OIDs) {
			typed.OIDs[i] = params.OIDs[i]
		}
		if typed.OIDs[i] == 0 && i < len(types) {
			typed.OIDs[i] = types[i]
		}
	}
	return typed, nil
}

// Evaluate implements merge.Evaluator.
func (e *shardEvaluator) Evaluate(op *plan.Evaluate, sql string, vals merge.EvalValues, rf []int16) ([][][]byte, []uint32, error) {
	ss := e.ss
	if e.run != nil && !e.run.stopped {
		for _, f := range e.run.feeds {
			if !f.ended {
				return nil, nil, &plan.Error{Code: "XX000", Message: "shardproxy: expressions over aggregates evaluated before every shard answered"}
			}
		}
		if err := e.run.stop(false); err != nil {
			return nil, nil, err
		}
	}
	// A row-limited portal reading this merge is the session's suspended
	// read; switching connections must not end it (its run is stopped
	// and this statement completes before the portal's next row).
	suspended := ss.suspended
	ss.suspended = nil
	defer func() { ss.suspended = suspended }()
	if err := ss.useShardAs(e.snap, e.shard, ss.replicaRead(e.snap, e.shard, sql)); err != nil {
		return nil, nil, err
	}
	if ss.skip {
		return nil, nil, &plan.Error{Code: "XX000", Message: "shardproxy: an earlier statement failed before expressions over aggregates were evaluated"}
	}
	args := &partArgs{resultFormats: rf}
	if len(op.ParamIndexes) > 0 {
		own := argsFor(e.params, op.ParamIndexes, nil, false) // typed by typeEvalParams
		args.values, args.formats, args.oids = own.values, own.formats, own.oids
	}
	args.values = append(args.values, vals.Values...)
	args.formats = append(args.formats, vals.Formats...)
	args.oids = append(args.oids, vals.OIDs...)
	return ss.runEvalHere(e.shard, sql, args)
}

// runEvalHere runs an evaluation statement on the active connection
// (shard's) and returns its rows (copied) and result types. Notices go to
// the client; rows never do.
func (ss *session) runEvalHere(shard, sql string, args *partArgs) ([][][]byte, []uint32, error) {
	ss.sout = appendPartRun(ss.sout, "", sql, args, true)
	if err := ss.flushServer(); err != nil {
		return nil, nil, err
	}
	var rows [][][]byte
	var types []uint32
	var first error
	var vals [][]byte
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return nil, nil, &errServerGone{err}
		}
		switch typ {
		case msgRowDescription:
			types = rowDescTypes(body)
		case msgDataRow:
			var ok bool
			vals, ok = splitDataRow(body, vals[:0])
			if !ok {
				return nil, nil, &errServerGone{errors.New("malformed DataRow from shard " + shard)}
			}
			rows = append(rows, merge.CopyRow(vals))
		default:
			done, err := ss.internalReply(typ, body, "on shard "+shard+", evaluating expressions over the merged aggregates", &first)
			if err != nil {
				return nil, nil, err
			}
			if done {
				if first != nil {
					return nil, nil, first
				}
				return rows, types, nil
			}
		}
	}
}

// describeParamsHere asks the active connection (shard's) for the
// parameter types PostgreSQL infers for sql given oids (0: unspecified).
func (ss *session) describeParamsHere(shard, sql string, oids []uint32) ([]uint32, error) {
	ss.sout = appendFrontend(ss.sout, &pgproto3.Parse{Query: sql, ParameterOIDs: oids})
	ss.sout = appendFrontend(ss.sout, &pgproto3.Describe{ObjectType: 'S'})
	ss.sout = appendEmpty(ss.sout, msgSync)
	if err := ss.flushServer(); err != nil {
		return nil, err
	}
	var types []uint32
	var first error
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return nil, &errServerGone{err}
		}
		switch typ {
		case msgParamDesc:
			if len(body) >= 2 {
				n := int(binary.BigEndian.Uint16(body))
				for i := 0; i < n && 2+4*i+4 <= len(body); i++ {
					types = append(types, binary.BigEndian.Uint32(body[2+4*i:]))
				}
			}
		default:
			done, err := ss.internalReply(typ, body, "on shard "+shard+", describing the statement's parameters", &first)
			if err != nil {
				return nil, err
			}
			if done {
				return types, first
			}
		}
	}
}

// rowDescTypes returns the type OIDs of a RowDescription body.
func rowDescTypes(body []byte) []uint32 {
	if len(body) < 2 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(body))
	out := make([]uint32, 0, n)
	rest := body[2:]
	for i := 0; i < n; i++ {
		_, r, ok := cstring(rest)
		if !ok || len(r) < 18 {
			return out
		}
		out = append(out, binary.BigEndian.Uint32(r[6:10]))
		rest = r[18:]
	}
	return out
}
