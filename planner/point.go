package planner

import (
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Point statements: the planner's hot path.
//
// Most executions through a sharded proxy are prepared statements whose
// only routing rule is `key = $n` on one distributed table (or tables
// joined on their keys): `SELECT … WHERE id = $1`, `UPDATE … WHERE id = $1`,
// `DELETE … WHERE id = $1`. For such a statement the general planner
// (planStmt → planRead → place → shardSet → eval) always ends in a Route to
// the shard of Bind value n, with the statement's own text and the class's
// predicate as the reason. pointTmpl records, once per statement and
// snapshot (on its binding), that the statement has this shape; planPoint
// then decodes the one key, looks its shard up and builds that same Route,
// without the general planner's slices, closures and string joins.
//
// planPoint answers only when it is sure the general planner would answer
// the same Route: no hint or SET shardproxy.shard, a non-NULL key of a type
// it decodes, a key that maps to a shard. Everything else (NULL, a key type
// it cannot tell, a malformed value, a key outside every range) falls back
// to the general planner, which reports or routes it as before.
// TestPointMatchesGeneral compares the two on the golden cases and many
// parameter values.

// pointTmpl is the part of a point statement's Route that does not depend
// on the Bind values.
type pointTmpl struct {
	param    int    // 0-based parameter index of the key (the binding's one class has `key = $param`)
	sql      string // the statement's text (Route.SQL)
	reason   string // the class's predicate as text (Route.Reason)
	readOnly bool
}

// pointOf returns the point template of st (a pointKind statement) bound
// as b, or nil when the general planner must decide (see the package
// comment above for the shape). a is the statement's analysis (for its
// text).
func pointOf(a *Analysis, st *stmtInfo, b *binding) *pointTmpl {
	if b.err != nil || b.keyUpdate {
		return nil
	}
	if st.kind != KindSelect && (st.target < 0 || b.rels[st.target].kind != rbDist) {
		// planWrite: a distributed target is planned as a read of its
		// class; any other target is not a point statement.
		return nil
	}
	if len(b.classes) != 1 || len(b.others) != 0 {
		return nil
	}
	c := &b.classes[0]
	if c.pred == nil || c.pred.op != pCol || len(c.pred.vals) != 1 || c.pred.vals[0].kind != vParam {
		return nil
	}
	return &pointTmpl{param: c.pred.vals[0].param, sql: a.SQL[st.start:st.end], reason: c.reason, readOnly: st.readOnly}
}

// pointKind reports whether st is of a kind that may be a point statement:
// a SELECT, UPDATE or DELETE that planStmt plans by placing its classes
// (not a session statement, EXPLAIN, DDL, DECLARE, INSERT or COPY, and not
// refused outright). Binding st is only valid for such statements.
func pointKind(st *stmtInfo) bool {
	switch st.kind {
	case KindSelect, KindUpdate, KindDelete:
	default:
		return false
	}
	return st.session == nil && st.explain == nil && st.unsupported == nil && st.ddl == nil &&
		st.declare == nil && st.ins == nil && st.cp == nil
}

// planPoint plans a one-statement analysis whose binding under snap has a
// point template, for params; ok is false when the general planner must
// plan it (a.Statements has exactly one element).
func (p *Planner) planPoint(snap *topology.Snapshot, a *Analysis, params *Params) (plan.Operator, bool) {
	if a.Hint != "" || params.ForcedShard != "" {
		return nil, false
	}
	st := a.Statements[0].info
	if !pointKind(st) || snap.DefaultShard() == "" {
		return nil, false
	}
	b := st.bind(snap)
	pt := b.pointTemplate(a, st)
	if pt == nil {
		return nil, false
	}
	c := &b.classes[0]
	k, null, err := paramKey(params, pt.param, c.kt)
	if err != nil || null {
		return nil, false
	}
	shard, err := b.r.ShardForKey(c.dist, k)
	if err != nil {
		return nil, false
	}
	return &plan.Route{Shard: shard, SQL: pt.sql, Reason: pt.reason, ReadOnly: pt.readOnly}, true
}

// pointTemplate returns b's point template (nil: not a point statement),
// computed on first use. A binding belongs to one statement, so a and st
// are the same on every call for b.
func (b *binding) pointTemplate(a *Analysis, st *stmtInfo) *pointTmpl {
	pt := b.point.Load()
	if pt == nil {
		if pt = pointOf(a, st, b); pt == nil {
			pt = noPoint
		}
		b.point.Store(pt)
	}
	if pt == noPoint {
		return nil
	}
	return pt
}

// noPoint marks a binding whose statement is not a point statement.
var noPoint = &pointTmpl{param: -1}
