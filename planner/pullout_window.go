package planner

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Aggregates over the whole result (plan.PullOut with scalar slots). A
// SELECT refused for a window function across shards gets another chance
// when every window call is an aggregate over an empty window — `count(*)
// OVER ()`, the total next to one page of rows — and the statement has no
// GROUP BY, HAVING, DISTINCT or aggregate outside the windows: such a call
// has one value for every row, the aggregate of all rows the FROM and
// WHERE clauses produce. The
// executor first runs `SELECT count(*) FROM … WHERE …` (planned like any
// statement, merged across shards), then the statement with the value in
// place of the call: `$n::bigint AS count`, the column keeping the name
// PostgreSQL gives it.

// windowFrameDefault is PostgreSQL's FRAMEOPTION_DEFAULTS: the frame of a
// window clause that names none.
const windowFrameDefault = 0x02 | 0x20 | 0x400 // RANGE, UNBOUNDED PRECEDING, CURRENT ROW

// pulledValueMarker names the placeholders the deparsed statement is split
// around.
const pulledValueMarker = "shardproxy_pulled_value_"

// pullWholeWindows plans st as a PullOut of its aggregates over empty
// windows, or returns nil when it has none or another shape.
func (p *Planner) pullWholeWindows(snap *topology.Snapshot, sql string, st *stmtInfo, params *Params) plan.Operator {
	sel := st.node.GetSelectStmt()
	if sel == nil || len(sel.DistinctClause) > 0 || len(sel.FromClause) == 0 || aggregates(sel) {
		return nil // over groups (or the one row of a scalar aggregate) OVER () is not over the FROM's rows
	}
	outer := proto.Clone(sel).(*pg_query.SelectStmt)
	var calls []*pg_query.FuncCall
	for _, t := range outer.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return nil
		}
		if fc := rt.Val.GetFuncCall(); fc != nil && fc.Over != nil && rt.Name == "" {
			rt.Name = funcName(fc) // the column's name stays the function's
		}
		ok := true
		rt.Val = replaceNodes(rt.Val, func(n *pg_query.Node) *pg_query.Node {
			fc := n.GetFuncCall()
			if fc == nil || fc.Over == nil {
				return nil
			}
			if !wholeWindow(fc) {
				ok = false
				return nil
			}
			calls = append(calls, fc)
			return pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(pulledValueMarker + string(rune('a'+len(calls)-1)))}, -1)
		})
		if !ok || len(calls) > 26 {
			return nil
		}
	}
	if len(calls) == 0 {
		return nil
	}
	op := &plan.PullOut{SQL: sql, Reason: "aggregates over the whole result run first"}
	for _, fc := range calls {
		agg := proto.Clone(fc).(*pg_query.FuncCall)
		agg.Over = nil
		sub := &pg_query.SelectStmt{
			TargetList:  []*pg_query.Node{pg_query.MakeResTargetNodeWithVal(&pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: agg}}, -1)},
			FromClause:  proto.Clone(&pg_query.SelectStmt{FromClause: sel.FromClause}).(*pg_query.SelectStmt).FromClause,
			WhereClause: cloneNode(sel.WhereClause),
			WithClause:  cloneWith(sel.WithClause),
		}
		pulled := p.planPulled(snap, sub, params) // pullout_rel.go
		if pulled == nil {
			return nil
		}
		pulled.Scalar = true
		op.Subqueries = append(op.Subqueries, pulled)
	}
	outerIdx := []int{}
	renumberParams(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: outer}}, &outerIdx)
	text := deparseSelect(parseTreeVersion(), outer)
	probe := text
	pos := 0
	for i := range calls {
		m := pulledValueMarker + string(rune('a'+i))
		j := strings.Index(text[pos:], m)
		if j < 0 || strings.Count(text, m) != 1 {
			return nil
		}
		op.Outer = append(op.Outer, text[pos:pos+j])
		pos += j + len(m)
		probe = strings.Replace(probe, m, "NULL::bigint", 1)
	}
	op.Outer = append(op.Outer, text[pos:])
	op.OuterParams = outerIdx
	if !p.probePlans(snap, probe, params, outerIdx) { // pullout_rel.go
		return nil
	}
	return op
}

// wholeWindow reports whether fc is an aggregate over an empty window
// (OVER (), no frame) that one value per statement answers.
func wholeWindow(fc *pg_query.FuncCall) bool {
	w := fc.Over
	return w.Name == "" && w.Refname == "" && len(w.PartitionClause) == 0 && len(w.OrderClause) == 0 &&
		w.FrameOptions == windowFrameDefault && !fc.AggDistinct && len(fc.AggOrder) == 0 && !fc.AggWithinGroup &&
		aggregateNames[funcName(fc)]
}

// replaceNodes returns n with every node for which fn returns a
// replacement replaced (not descending into replaced nodes or subqueries).
func replaceNodes(n *pg_query.Node, fn func(*pg_query.Node) *pg_query.Node) *pg_query.Node {
	if n == nil {
		return nil
	}
	if r := fn(n); r != nil {
		return r
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SubLink, *pg_query.Node_SelectStmt:
		return n
	case *pg_query.Node_AExpr:
		x.AExpr.Lexpr = replaceNodes(x.AExpr.Lexpr, fn)
		x.AExpr.Rexpr = replaceNodes(x.AExpr.Rexpr, fn)
	case *pg_query.Node_TypeCast:
		x.TypeCast.Arg = replaceNodes(x.TypeCast.Arg, fn)
	case *pg_query.Node_FuncCall:
		for i := range x.FuncCall.Args {
			x.FuncCall.Args[i] = replaceNodes(x.FuncCall.Args[i], fn)
		}
	case *pg_query.Node_CoalesceExpr:
		for i := range x.CoalesceExpr.Args {
			x.CoalesceExpr.Args[i] = replaceNodes(x.CoalesceExpr.Args[i], fn)
		}
	}
	return n
}

func cloneNode(n *pg_query.Node) *pg_query.Node {
	if n == nil {
		return nil
	}
	return proto.Clone(n).(*pg_query.Node)
}

func cloneWith(w *pg_query.WithClause) *pg_query.WithClause {
	if w == nil {
		return nil
	}
	return proto.Clone(w).(*pg_query.WithClause)
}
