package planner

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Pulled-out relations (plan.PullOut with a Relation slot). A SELECT the
// routing rules refuse because it joins distributed tables that are not
// colocated on their keys gets another chance when one of those tables,
// R, is restricted by conditions on R alone (`f.follower_id = 1` in a
// timeline query joining follows with posts): the executor first runs
//
//	SELECT R.* FROM <R's table> R WHERE <the conditions on R alone>
//
// as a statement of its own (usually on one shard), then runs the rest of
// the statement with R replaced by those rows — `unnest($n::t1[], …) AS
// R(c1, …)`, a constant relation every shard can join — planned like any
// statement (Vitess's nested-loop join at the router, Citus's recursive
// planning of one side). Only inner joins qualify: moving a condition on
// R before the join is the same query only then. The conditions moved
// leave the outer statement (each runs once, as written).
//
// A condition is "on R alone" when every column it references is
// qualified with R's range name, or is unqualified and named like R's
// distribution key (a column R has; if another table had it too the
// statement would be ambiguous in PostgreSQL); it contains no subquery.

// relationSlot is one FROM item of a cloned statement that could be
// pulled out, and how to put something else in its place.
type relationSlot struct {
	rv  *pg_query.RangeVar       // a table (or WITH query) name
	sub *pg_query.RangeSubselect // or a derived table
	set func(*pg_query.Node)
}

// pulledRelationMarker names the FROM item standing for the pulled rows in
// the deparsed outer statement, which is split around it.
const pulledRelationMarker = "shardproxy_pulled_relation_"

// fromParts are the pieces of a statement the pull-out of a table works
// on: the FROM list (USING for DELETE, FROM for UPDATE: not the target),
// the WHERE clause and the WITH clause.
type fromParts struct {
	from  *[]*pg_query.Node
	where **pg_query.Node
	with  **pg_query.WithClause
}

func partsOf(n *pg_query.Node) (fromParts, bool) {
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		sel := x.SelectStmt
		return fromParts{&sel.FromClause, &sel.WhereClause, &sel.WithClause}, sel.Op == pg_query.SetOperation_SETOP_NONE
	case *pg_query.Node_DeleteStmt:
		d := x.DeleteStmt
		return fromParts{&d.UsingClause, &d.WhereClause, &d.WithClause}, true
	case *pg_query.Node_UpdateStmt:
		u := x.UpdateStmt
		return fromParts{&u.FromClause, &u.WhereClause, &u.WithClause}, true
	}
	return fromParts{}, false
}

// pullRelation plans st as a PullOut of one of its tables, or returns
// refusal when none qualifies. distribution is set for an UPDATE or
// DELETE (PullOut.Distribution): the tables of its FROM or USING list may
// be pulled out, never its target.
func (p *Planner) pullRelation(snap *topology.Snapshot, sql string, st *stmtInfo, params *Params, distribution string, refusal error) (plan.Operator, error) {
	parts, ok := partsOf(st.node)
	if !ok || len(*parts.from) == 0 {
		return nil, refusal
	}
	ctes := map[string]bool{}
	if w := *parts.with; w != nil {
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				ctes[strings.ToLower(cte.Ctename)] = true
			}
		}
	}
	probe := proto.Clone(st.node).(*pg_query.Node)
	probeParts, _ := partsOf(probe)
	slots, ok := innerRelations(probeParts.from)
	if !ok || (distribution == "" && len(slots) < 2) {
		return nil, refusal
	}
	// The first table whose rows come from one shard, else the first
	// that qualifies at all (its read is bounded by MaxPulledRows).
	var fallback plan.Operator
	for i, s := range slots {
		if s.rv == nil || (s.rv.Schemaname == "" && ctes[strings.ToLower(s.rv.Relname)]) {
			continue
		}
		t, ok := snap.Table(rangeVarName(s.rv))
		if !ok || t.Kind != topology.Distributed || (s.rv.Alias != nil && len(s.rv.Alias.Colnames) > 0) {
			continue
		}
		op := p.pullRelationAt(snap, sql, st.node, i, t, params)
		if op == nil {
			continue
		}
		op.Distribution = distribution
		if _, one := op.Subqueries[0].Plan.(*plan.Route); one {
			return op, nil
		}
		if fallback == nil {
			fallback = op
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, refusal
}

// pullRelationAt builds the PullOut of the i-th relation of sel (see
// innerRelations), or nil when it has no conditions of its own or either
// part would not plan.
func (p *Planner) pullRelationAt(snap *topology.Snapshot, sql string, stmt *pg_query.Node, i int, t topology.Table, params *Params) *plan.PullOut {
	outerNode := proto.Clone(stmt).(*pg_query.Node)
	outer, _ := partsOf(outerNode)
	slots, _ := innerRelations(outer.from)
	r := slots[i].rv
	name := rangeName(r)

	// Conditions on R alone go to the subquery. Those naming R's key
	// unqualified (and calling no function, so evaluating them twice
	// changes nothing) also stay in the outer statement, where
	// PostgreSQL reports the name as ambiguous if another table has it.
	var moved []*pg_query.Node
	split := func(quals *pg_query.Node) *pg_query.Node {
		if quals == nil {
			return nil
		}
		var rest []*pg_query.Node
		for _, c := range andConjuncts(quals, nil) {
			switch onRelationAlone(c, name, t.KeyColumn) {
			case onlyQualified:
				moved = append(moved, c)
			case withUnqualifiedKey:
				moved = append(moved, proto.Clone(c).(*pg_query.Node))
				rest = append(rest, c)
			default:
				rest = append(rest, c)
			}
		}
		return andOf(rest)
	}
	*outer.where = split(*outer.where)
	for _, f := range *outer.from {
		walkJoins(f, func(j *pg_query.JoinExpr) {
			if j.Quals == nil {
				return
			}
			j.Quals = split(j.Quals)
			if j.Quals == nil {
				j.Quals = &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: true}}}}}
			}
		})
	}
	if len(moved) == 0 {
		return nil // pulling the whole table would not help
	}

	// The subquery: R's columns under its conditions, its parameters
	// renumbered from $1 (ParamIndexes maps them back).
	sub := &pg_query.SelectStmt{
		TargetList:  []*pg_query.Node{pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(name), pg_query.MakeAStarNode()}, -1), -1)},
		FromClause:  []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: proto.Clone(r).(*pg_query.RangeVar)}}},
		WhereClause: andOf(moved),
	}
	pulled := p.planPulled(snap, sub, params)
	if pulled == nil {
		return nil
	}

	reason := fmt.Sprintf("%s (%s) is not joined on its distribution key: its rows are read first", name, rangeVarName(r))
	return p.finishPull(snap, sql, outerNode, slots[i], name, pulled, reason, params, nil)
}

// finishPull builds the PullOut of pulled, whose rows take the place of
// slot (a FROM item of outerNode, named name in the rest of the
// statement): the outer statement is deparsed with a marker there and split
// around it, its parameters renumbered. reject, if set, sees the outer
// statement with the marker in place and may refuse it. nil when the outer
// statement would not plan whatever rows come back.
func (p *Planner) finishPull(snap *topology.Snapshot, sql string, outerNode *pg_query.Node, slot relationSlot, name string,
	pulled *plan.PulledSubquery, reason string, params *Params, reject func(*pg_query.Node) bool) *plan.PullOut {
	pulled.Relation = name
	marker := pulledRelationMarker + "1"
	slot.set(pg_query.MakeSimpleRangeVarNode(marker, -1))
	if reject != nil && reject(outerNode) {
		return nil
	}
	outerIdx := []int{}
	renumberParams(outerNode, &outerIdx)
	text, err := pg_query.Deparse(&pg_query.ParseResult{Version: parseTreeVersion(), Stmts: []*pg_query.RawStmt{{Stmt: outerNode}}})
	if err != nil {
		return nil
	}
	parts := strings.Split(text, marker)
	if len(parts) != 2 {
		return nil
	}
	op := &plan.PullOut{
		SQL:         sql,
		Subqueries:  []*plan.PulledSubquery{pulled},
		Outer:       parts,
		OuterParams: outerIdx,
		Reason:      reason,
	}
	// Refuse up front what stays refused whatever rows come back: the
	// outer statement with a relation of that name in its place, of the
	// form the executor puts there.
	probe := parts[0] + "unnest(NULL::text[]) AS " + quoteIdent(name) + parts[1]
	if !p.probePlans(snap, probe, params, op.OuterParams) {
		return nil
	}
	return op
}

// probePlans reports whether probe, an outer statement with placeholders
// where the pulled values go, plans without another pull-out.
func (p *Planner) probePlans(snap *topology.Snapshot, probe string, params *Params, idx []int) bool {
	pa, err := p.Analyze(probe)
	if err != nil {
		return false
	}
	po, err := p.Plan(snap, pa, SelectParams(*params, idx))
	if err != nil {
		return false
	}
	_, again := po.(*plan.PullOut)
	return !again
}

// innerRelations lists the tables named in a FROM list (directly or in
// inner joins) with setters that replace them in it; ok is false when the
// list has an outer join, whose conditions cannot move.
func innerRelations(from *[]*pg_query.Node) ([]relationSlot, bool) {
	var out []relationSlot
	ok := true
	var visit func(n *pg_query.Node, set func(*pg_query.Node))
	visit = func(n *pg_query.Node, set func(*pg_query.Node)) {
		switch x := n.Node.(type) {
		case *pg_query.Node_RangeVar:
			out = append(out, relationSlot{rv: x.RangeVar, set: set})
		case *pg_query.Node_RangeSubselect:
			out = append(out, relationSlot{sub: x.RangeSubselect, set: set})
		case *pg_query.Node_JoinExpr:
			j := x.JoinExpr
			if j.Jointype != pg_query.JoinType_JOIN_INNER || j.Alias != nil {
				ok = false
				return
			}
			visit(j.Larg, func(m *pg_query.Node) { j.Larg = m })
			visit(j.Rarg, func(m *pg_query.Node) { j.Rarg = m })
		}
	}
	for i := range *from {
		visit((*from)[i], func(m *pg_query.Node) { (*from)[i] = m })
	}
	return out, ok
}

// walkJoins calls fn for every join expression of a FROM item.
func walkJoins(n *pg_query.Node, fn func(*pg_query.JoinExpr)) {
	if j := n.GetJoinExpr(); j != nil {
		fn(j)
		walkJoins(j.Larg, fn)
		walkJoins(j.Rarg, fn)
	}
}

// conditionScope says which relations a condition references.
type conditionScope int

const (
	notAlone           conditionScope = iota // other relations, a subquery, or no column at all
	onlyQualified                            // R's columns, each qualified with R's name
	withUnqualifiedKey                       // R's columns, R's key unqualified among them, no function call
)

// onRelationAlone says whether condition e references columns of the
// relation named name only (see the comment at the top of this file).
func onRelationAlone(e *pg_query.Node, name, key string) conditionScope {
	refs, alone, unqualified, calls := 0, true, false, false
	walkNodes(e, func(c *pg_query.Node) bool {
		if !alone {
			return false
		}
		switch x := c.Node.(type) {
		case *pg_query.Node_SubLink, *pg_query.Node_SelectStmt:
			alone = false
			return false
		case *pg_query.Node_FuncCall:
			calls = true
		case *pg_query.Node_ColumnRef:
			parts := make([]string, 0, len(x.ColumnRef.Fields))
			for _, f := range x.ColumnRef.Fields {
				s := f.GetString_()
				if s == nil {
					alone = false // R.* in a condition
					return false
				}
				parts = append(parts, s.Sval)
			}
			switch {
			case len(parts) == 1:
				alone, unqualified = parts[0] == key, true
			case len(parts) >= 2:
				alone = parts[len(parts)-2] == name
			}
			refs++
			return false
		}
		return true
	})
	switch {
	case !alone || refs == 0:
		return notAlone
	case !unqualified:
		return onlyQualified
	case !calls:
		return withUnqualifiedKey
	}
	return notAlone
}

// andOf is the AND of conds (nil for none).
func andOf(conds []*pg_query.Node) *pg_query.Node {
	switch len(conds) {
	case 0:
		return nil
	case 1:
		return conds[0]
	}
	return pg_query.MakeBoolExprNode(pg_query.BoolExprType_AND_EXPR, conds, -1)
}

// planPulled plans sub, a SELECT the executor runs first, its parameters
// renumbered from $1 (ParamIndexes maps them back to the statement's);
// nil when it does not plan as a read of its own.
func (p *Planner) planPulled(snap *topology.Snapshot, sub *pg_query.SelectStmt, params *Params) *plan.PulledSubquery {
	idx := []int{}
	renumberParams(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sub}}, &idx)
	sql := deparseSelect(parseTreeVersion(), sub)
	if sql == "" {
		return nil
	}
	sa, err := p.Analyze(sql)
	if err != nil || len(sa.Statements) != 1 || !sa.Statements[0].info.readOnly {
		return nil
	}
	op, err := p.Plan(snap, sa, SelectParams(*params, idx))
	if err != nil {
		return nil
	}
	if _, nested := op.(*plan.PullOut); nested {
		return nil
	}
	return &plan.PulledSubquery{SQL: sql, ParamIndexes: idx, Plan: op}
}

// pullCTE plans st as a PullOut of one of its WITH queries: a CTE whose
// query needs the proxy (a top-N over shards: GROUP BY … ORDER BY …
// LIMIT) and that the statement reads once, in its FROM list or an inner
// join, is run first through the proxy and replaced by its rows, as
// pullRelationAt does for a table. nil when none qualifies.
func (p *Planner) pullCTE(snap *topology.Snapshot, sql string, st *stmtInfo, params *Params) *plan.PullOut {
	parts, ok := partsOf(st.node)
	if !ok || *parts.with == nil || (*parts.with).Recursive {
		return nil
	}
	for ci := range (*parts.with).Ctes {
		if op := p.pullCTEAt(snap, sql, st.node, ci, params); op != nil {
			return op
		}
	}
	return nil
}

// pullCTEAt builds the PullOut of the ci-th WITH query of stmt, or nil.
func (p *Planner) pullCTEAt(snap *topology.Snapshot, sql string, stmt *pg_query.Node, ci int, params *Params) *plan.PullOut {
	outerNode := proto.Clone(stmt).(*pg_query.Node)
	outer, _ := partsOf(outerNode)
	with := *outer.with
	cte := with.Ctes[ci].GetCommonTableExpr()
	if cte == nil || len(cte.Aliascolnames) > 0 {
		return nil
	}
	slots, ok := innerRelations(outer.from)
	if !ok {
		return nil
	}
	at := -1
	for i, s := range slots {
		if s.rv != nil && s.rv.Schemaname == "" && s.rv.Relname == cte.Ctename {
			if at >= 0 {
				return nil // read twice: its rows would have to be sent twice
			}
			at = i
		}
	}
	if at < 0 {
		return nil
	}
	r := slots[at].rv
	if r.Alias != nil && len(r.Alias.Colnames) > 0 {
		return nil
	}
	pulled := p.planMerged(snap, cte.Ctequery, params)
	if pulled == nil {
		return nil
	}
	with.Ctes = append(with.Ctes[:ci:ci], with.Ctes[ci+1:]...)
	if len(with.Ctes) == 0 {
		*outer.with = nil
	}
	reason := fmt.Sprintf("WITH query %s needs rows from several shards: it is run first", cte.Ctename)
	return p.finishPull(snap, sql, outerNode, slots[at], rangeName(r), pulled, reason, params, func(n *pg_query.Node) bool {
		return readsRelation(n, cte.Ctename) // read somewhere else too (a subquery)
	})
}

// pullDerived plans st as a PullOut of a derived table that needs the proxy
// (FROM (SELECT … ORDER BY … LIMIT) AS t JOIN …), in the FROM list or an
// inner join: run first, merged, and replaced by its rows. nil when none
// qualifies.
func (p *Planner) pullDerived(snap *topology.Snapshot, sql string, st *stmtInfo, params *Params) *plan.PullOut {
	parts, ok := partsOf(st.node)
	if !ok {
		return nil
	}
	slots, ok := innerRelations(parts.from)
	if !ok {
		return nil
	}
	for i, sl := range slots {
		d := sl.sub
		if d == nil || d.Lateral || d.Alias == nil || d.Alias.Aliasname == "" || len(d.Alias.Colnames) > 0 {
			continue
		}
		pulled := p.planMerged(snap, d.Subquery, params)
		if pulled == nil {
			continue
		}
		outerNode := proto.Clone(st.node).(*pg_query.Node)
		outer, _ := partsOf(outerNode)
		oslots, _ := innerRelations(outer.from)
		reason := fmt.Sprintf("derived table %s needs rows from several shards: it is run first", d.Alias.Aliasname)
		if op := p.finishPull(snap, sql, outerNode, oslots[i], d.Alias.Aliasname, pulled, reason, params, nil); op != nil {
			return op
		}
	}
	return nil
}

// planMerged plans query (a WITH query's or a derived table's SELECT) as a
// subquery the executor runs first, when it is one that needs the proxy:
// nil for other statements and for a read one shard answers alone.
func (p *Planner) planMerged(snap *topology.Snapshot, query *pg_query.Node, params *Params) *plan.PulledSubquery {
	sel := query.GetSelectStmt()
	if sel == nil {
		return nil
	}
	pulled := p.planPulled(snap, proto.Clone(sel).(*pg_query.SelectStmt), params)
	if pulled == nil {
		return nil
	}
	if _, one := pulled.Plan.(*plan.Route); one {
		return nil // nothing to gain
	}
	return pulled
}

// rangeName is the name a FROM item is referred to by: its alias, else
// its relation name (as the parser gives names: folded unless quoted).
func rangeName(r *pg_query.RangeVar) string {
	if r.Alias != nil && r.Alias.Aliasname != "" {
		return r.Alias.Aliasname
	}
	return r.Relname
}

// readsRelation reports whether the parse tree n has a relation named name
// without a schema anywhere (FROM items of subqueries included).
func readsRelation(n *pg_query.Node, name string) bool {
	found := false
	walkNodes(n, func(x *pg_query.Node) bool {
		if rv := x.GetRangeVar(); rv != nil && rv.Schemaname == "" && rv.Relname == name {
			found = true
		}
		return !found
	})
	return found
}
