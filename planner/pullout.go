package planner

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Pulled-out subqueries (plan.PullOut). A SELECT the routing rules refuse
// gets a second chance when its WHERE has uncorrelated subqueries among
// its top-level AND conjuncts — `expr IN (SELECT c …)`, `expr = ANY
// (SELECT c …)`, or `(SELECT c …)` as an operand of a comparison: each is
// planned as a statement of its own, and the rest of the statement is
// planned once with the subqueries replaced by placeholders that restrict
// nothing, to refuse up front what would stay refused whatever values
// come back. Under NOT or OR, in the select list, or referencing a column
// of the outer query, a subquery stays where it is (and the statement
// keeps its refusal).

// pulledLink is one sublink to pull out and where it is in the text.
type pulledLink struct {
	scalar       bool
	from, to     int // text replaced by the value: "(SELECT …)" or "IN (SELECT …)"
	subFrom, sub int // the subquery's own text, inside the parentheses
}

// pullOut plans st as a plan.PullOut, or returns refusal (the error of
// the ordinary plan) when it has no subquery to pull out.
//
// UPDATE and DELETE of a distributed table get the same treatment for the
// sublinks of their WHERE (Citus plans such subqueries recursively too):
// the subqueries read from the primaries (PullOut.Distribution is set),
// then the write runs with their values, a statement of its own.
func (p *Planner) pullOut(snap *topology.Snapshot, a *Analysis, st *stmtInfo, params *Params, refusal error) (plan.Operator, error) {
	if _, ok := refusal.(*plan.Unsupported); !ok || st.node == nil {
		return nil, refusal
	}
	parts, ok := partsOf(st.node) // a set operation is not ok
	distribution := ""
	switch {
	case !ok:
		return nil, refusal
	case st.kind == KindSelect && st.readOnly:
	case st.kind == KindUpdate || st.kind == KindDelete:
		t, ok := snap.Table(st.rels[st.target].name)
		if !ok || t.Kind != topology.Distributed {
			return nil, refusal
		}
		distribution = t.Distribution
	default:
		return nil, refusal
	}
	sql := a.SQL[st.start:st.end]
	var links []pulledLink
	sc, err := pg_query.Scan(sql)
	if err == nil && *parts.where != nil {
		links = p.pullableLinks(sc.Tokens, st, *parts.where, *parts.with)
	}
	if len(links) == 0 {
		if distribution == "" {
			if op := p.pullWholeWindows(snap, sql, st, params); op != nil {
				return op, nil // pullout_window.go
			}
		}
		for _, pull := range []func(*topology.Snapshot, string, *stmtInfo, *Params) *plan.PullOut{p.pullCTE, p.pullDerived} {
			if op := pull(snap, sql, st, params); op != nil {
				op.Distribution = distribution // an UPDATE's or DELETE's FROM / USING item: its write runs after
				return op, nil                 // pullout_rel.go
			}
		}
		return p.pullRelation(snap, sql, st, params, distribution, refusal) // pullout_rel.go
	}
	toks, maxParam := paramTokens(a.SQL, st.start, sc.Tokens)
	if maxParam > len(params.Values) {
		return nil, &plan.Error{Code: "42P02", Message: fmt.Sprintf("there is no parameter $%d", maxParam)}
	}
	op := &plan.PullOut{SQL: sql, Distribution: distribution,
		Reason: fmt.Sprintf("%d uncorrelated subquer%s run first", len(links), map[bool]string{true: "y", false: "ies"}[len(links) == 1])}
	renumber := len(toks) > 0
	for _, l := range links {
		w := paramWriter{full: a.SQL, toks: toks, renumber: renumber}
		w.copy(l.subFrom, l.sub)
		sq := &plan.PulledSubquery{SQL: w.b.String(), Scalar: l.scalar, ParamIndexes: renumbered(&w)}
		sa, err := p.Analyze(sq.SQL)
		if err != nil {
			return nil, err
		}
		if len(sa.Statements) != 1 || !sa.Statements[0].info.readOnly {
			return nil, refusal
		}
		sub, err := p.Plan(snap, sa, SelectParams(*params, sq.ParamIndexes))
		if err != nil {
			if u, ok := err.(*plan.Unsupported); ok {
				return nil, &plan.Unsupported{Message: "subquery " + sq.SQL + ": " + u.Message, Hint: u.Hint}
			}
			return nil, err
		}
		sq.Plan = sub
		op.Subqueries = append(op.Subqueries, sq)
	}
	// The outer statement, and a probe of it whose placeholders restrict
	// nothing (its worst case: every shard the rest of the WHERE allows).
	w := paramWriter{full: a.SQL, toks: toks, renumber: renumber}
	var probe strings.Builder
	pos := st.start
	for _, l := range links {
		w.copy(pos, l.from)
		op.Outer = append(op.Outer, w.b.String())
		probe.WriteString(w.b.String())
		if l.scalar {
			probe.WriteString("(random())")
		} else {
			probe.WriteString("IS NOT NULL")
		}
		w.b.Reset()
		pos = l.to
	}
	w.copy(pos, st.end)
	op.Outer = append(op.Outer, w.b.String())
	probe.WriteString(w.b.String())
	op.OuterParams = renumbered(&w)
	pa, err := p.Analyze(probe.String())
	if err != nil {
		return nil, err
	}
	po, err := p.Plan(snap, pa, SelectParams(*params, op.OuterParams))
	if err != nil {
		return nil, err
	}
	if _, again := po.(*plan.PullOut); again {
		return nil, refusal // the outer statement would need another pull-out
	}
	return op, nil
}

// ParamCount is the highest parameter number ($n) sql refers to, 0 for
// none or when sql does not scan. PostgreSQL gives a prepared statement
// that many parameters, or as many as its Parse declared types for when
// that is more.
func ParamCount(sql string) int {
	sc, err := pg_query.Scan(sql)
	if err != nil {
		return 0
	}
	_, n := paramTokens(sql, 0, sc.Tokens)
	return n
}

// paramTokens lists the $n tokens of a statement at offset start of sql
// (toks are its scanned tokens) and the highest n.
func paramTokens(sql string, start int, toks []*pg_query.ScanToken) ([]paramTok, int) {
	var out []paramTok
	maxN := 0
	for _, t := range toks {
		if t.Token != pg_query.Token_PARAM {
			continue
		}
		n, err := strconv.Atoi(sql[start+int(t.Start)+1 : start+int(t.End)])
		if err != nil {
			continue
		}
		out = append(out, paramTok{start: start + int(t.Start), end: start + int(t.End), n: n})
		maxN = max(maxN, n)
	}
	return out, maxN
}

// renumbered is the ParamIndexes of a paramWriter's text (nil when it
// does not renumber: the statement has no parameters).
func renumbered(w *paramWriter) []int {
	if !w.renumber {
		return nil
	}
	if w.indexes == nil {
		return []int{}
	}
	return w.indexes
}

// SelectParams returns the Bind values (with their formats and types)
// idx selects from p, in order, for a statement whose $i is p's value
// idx[i-1] (the parts of a plan.PullOut); nil idx selects all of p.
func SelectParams(p Params, idx []int) Params {
	if idx == nil {
		return p
	}
	out := Params{ForcedShard: p.ForcedShard, Values: make([][]byte, len(idx)), Formats: make([]int16, len(idx)), OIDs: make([]uint32, len(idx))}
	for j, i := range idx {
		if i < len(p.Values) {
			out.Values[j] = p.Values[i]
		}
		out.Formats[j] = p.format(i)
		out.OIDs[j] = p.oid(i)
	}
	return out
}

// pullableLinks finds the sublinks of a statement's WHERE clause (where;
// with is its WITH clause) that can be pulled out, in text order.
func (p *Planner) pullableLinks(toks []*pg_query.ScanToken, st *stmtInfo, where *pg_query.Node, with *pg_query.WithClause) []pulledLink {
	type found struct {
		link   *pg_query.SubLink
		scalar bool
	}
	var cands []found
	for _, c := range andConjuncts(where, nil) {
		if l := c.GetSubLink(); l != nil && l.SubLinkType == pg_query.SubLinkType_ANY_SUBLINK && l.Testexpr != nil && isEqualsOp(l.OperName) {
			cands = append(cands, found{link: l})
			continue
		}
		x := c.GetAExpr()
		if x == nil || x.Kind != pg_query.A_Expr_Kind_AEXPR_OP || !comparisonOps[opName(x)] {
			continue
		}
		for _, side := range []*pg_query.Node{x.Lexpr, x.Rexpr} {
			if l := side.GetSubLink(); l != nil && l.SubLinkType == pg_query.SubLinkType_EXPR_SUBLINK {
				cands = append(cands, found{link: l, scalar: true})
			}
		}
	}
	outerCTEs := map[string]bool{}
	if w := with; w != nil {
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				outerCTEs[strings.ToLower(cte.Ctename)] = true
			}
		}
	}
	var out []pulledLink
	for _, c := range cands {
		sub := c.link.Subselect.GetSelectStmt()
		if sub == nil || !oneColumn(sub) || p.refsOuter(sub, nil) || readsCTE(c.link.Subselect, outerCTEs) {
			continue
		}
		loc := int(c.link.Location)
		open, close := parenSpan(toks, loc-st.start)
		if open < 0 || (c.scalar && open != loc-st.start) {
			continue
		}
		out = append(out, pulledLink{scalar: c.scalar, from: loc, to: st.start + close + 1, subFrom: st.start + open + 1, sub: st.start + close})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].from < out[j].from })
	for i := 1; i < len(out); i++ {
		if out[i].from < out[i-1].to {
			return nil // overlapping spans: the text is not what the tree says
		}
	}
	return out
}

// readsCTE reports whether n names a table as one of ctes does: run on
// its own, the subquery would read a table of that name (or none), not
// the outer query's CTE.
func readsCTE(n *pg_query.Node, ctes map[string]bool) bool {
	if len(ctes) == 0 {
		return false
	}
	found := false
	walkNodes(n, func(c *pg_query.Node) bool {
		if rv := c.GetRangeVar(); rv != nil && rv.Schemaname == "" && ctes[strings.ToLower(rv.Relname)] {
			found = true
		}
		return !found
	})
	return found
}

var comparisonOps = map[string]bool{"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true}

// isEqualsOp reports whether a sublink's operator is = (IN has none).
func isEqualsOp(name []*pg_query.Node) bool {
	if len(name) == 0 {
		return true
	}
	s := name[len(name)-1].GetString_()
	return len(name) == 1 && s != nil && s.Sval == "="
}

// andConjuncts appends the top-level AND conjuncts of e to out.
func andConjuncts(e *pg_query.Node, out []*pg_query.Node) []*pg_query.Node {
	if b := e.GetBoolExpr(); b != nil && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		for _, k := range b.Args {
			out = andConjuncts(k, out)
		}
		return out
	}
	return append(out, e)
}

// oneColumn reports whether a subquery selects exactly one column (not *).
func oneColumn(sel *pg_query.SelectStmt) bool {
	for sel.Op != pg_query.SetOperation_SETOP_NONE && sel.Larg != nil {
		sel = sel.Larg
	}
	if len(sel.TargetList) != 1 {
		return false
	}
	rt := sel.TargetList[0].GetResTarget()
	if rt == nil {
		return false
	}
	if cr := rt.Val.GetColumnRef(); cr != nil && len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
		return false
	}
	return true
}

// parenSpan returns the token offsets of the first "(" starting at or
// after at and of its matching ")", or -1, -1.
func parenSpan(toks []*pg_query.ScanToken, at int) (int, int) {
	depth, open := 0, -1
	for _, t := range toks {
		if int(t.Start) < at {
			continue
		}
		switch t.Token {
		case pg_query.Token_ASCII_40:
			if open < 0 {
				open = int(t.Start)
			}
			depth++
		case pg_query.Token_ASCII_41:
			if open < 0 {
				return -1, -1
			}
			depth--
			if depth == 0 {
				return open, int(t.Start)
			}
		}
	}
	return -1, -1
}

// innerScope is what one FROM level of a subquery makes visible.
type innerScope struct {
	names   map[string]bool // range names (aliases, table and CTE names)
	cols    map[string]bool // columns of its tables (from Options.Columns) and output names
	unknown bool            // some range's columns are not known
}

// refsOuter reports whether sel (a subquery, with the scopes of the
// subquery that enclose it) may reference a column of the outer query: a
// qualifier no enclosing inner scope defines, or — when Options.Columns
// knows the tables — an unqualified column none of them has. It errs
// towards yes; a wrong "no" would only make the subquery fail on its own
// (42703 / 42P01), since PostgreSQL resolves names innermost first.
func (p *Planner) refsOuter(sel *pg_query.SelectStmt, stack []*innerScope) bool {
	if sel == nil {
		return false
	}
	sc := &innerScope{names: map[string]bool{}, cols: map[string]bool{}}
	stack = append(stack[:len(stack):len(stack)], sc)
	if w := sel.WithClause; w != nil {
		for _, c := range w.Ctes {
			if cte := c.GetCommonTableExpr(); cte != nil {
				sc.names[strings.ToLower(cte.Ctename)] = true
				if p.refsOuterNode(cte.Ctequery, stack) {
					return true
				}
			}
		}
	}
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		return p.refsOuter(sel.Larg, stack) || p.refsOuter(sel.Rarg, stack) ||
			p.refsOuterList(sel.SortClause, stack) || p.refsOuterNode(sel.LimitCount, stack) || p.refsOuterNode(sel.LimitOffset, stack)
	}
	for _, f := range sel.FromClause {
		p.fromNames(f, sc)
	}
	for _, t := range sel.TargetList {
		if rt := t.GetResTarget(); rt != nil && rt.Name != "" {
			sc.cols[strings.ToLower(rt.Name)] = true
		}
	}
	for _, l := range [][]*pg_query.Node{sel.FromClause, sel.TargetList, sel.GroupClause, sel.SortClause, sel.WindowClause, sel.DistinctClause, sel.ValuesLists, sel.LockingClause} {
		if p.refsOuterList(l, stack) {
			return true
		}
	}
	return p.refsOuterNode(sel.WhereClause, stack) || p.refsOuterNode(sel.HavingClause, stack) ||
		p.refsOuterNode(sel.LimitCount, stack) || p.refsOuterNode(sel.LimitOffset, stack)
}

func (p *Planner) refsOuterList(ns []*pg_query.Node, stack []*innerScope) bool {
	for _, n := range ns {
		if p.refsOuterNode(n, stack) {
			return true
		}
	}
	return false
}

// refsOuterNode is refsOuter for an expression (or FROM item) in the
// innermost scope of stack.
func (p *Planner) refsOuterNode(n *pg_query.Node, stack []*innerScope) bool {
	outer := false
	walkNodes(n, func(c *pg_query.Node) bool {
		if outer {
			return false
		}
		switch x := c.Node.(type) {
		case *pg_query.Node_SelectStmt:
			outer = p.refsOuter(x.SelectStmt, stack)
			return false
		case *pg_query.Node_ColumnRef:
			outer = p.columnOutside(x.ColumnRef, stack)
			return false
		}
		return true
	})
	return outer
}

// columnOutside reports whether cr may name a column outside stack.
func (p *Planner) columnOutside(cr *pg_query.ColumnRef, stack []*innerScope) bool {
	var parts []string
	for _, f := range cr.Fields {
		if s := f.GetString_(); s != nil {
			parts = append(parts, strings.ToLower(s.Sval))
		} else {
			parts = append(parts, "*")
		}
	}
	if len(parts) == 0 {
		return true
	}
	if len(parts) >= 2 {
		q := parts[len(parts)-2]
		for _, s := range stack {
			if s.names[q] {
				return false
			}
		}
		return true
	}
	if parts[0] == "*" || p.opts.Columns == nil {
		return false
	}
	for _, s := range stack {
		if s.unknown || s.cols[parts[0]] {
			return false
		}
	}
	return true
}

// fromNames records what FROM item n makes visible in sc.
func (p *Planner) fromNames(n *pg_query.Node, sc *innerScope) {
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		rv := x.RangeVar
		name := strings.ToLower(rv.Relname)
		if rv.Alias != nil && rv.Alias.Aliasname != "" {
			name = strings.ToLower(rv.Alias.Aliasname)
		}
		sc.names[name] = true
		var cols []string
		if p.opts.Columns != nil {
			cols = p.opts.Columns(rangeVarName(rv))
		}
		if cols == nil {
			sc.unknown = true
		}
		for _, c := range cols {
			sc.cols[strings.ToLower(c)] = true
		}
	case *pg_query.Node_RangeSubselect:
		if al := x.RangeSubselect.Alias; al != nil {
			sc.names[strings.ToLower(al.Aliasname)] = true
		}
		sc.unknown = true
	case *pg_query.Node_RangeFunction:
		if al := x.RangeFunction.Alias; al != nil {
			sc.names[strings.ToLower(al.Aliasname)] = true
		}
		sc.unknown = true
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		if j.Alias != nil {
			sc.names[strings.ToLower(j.Alias.Aliasname)] = true
		}
		p.fromNames(j.Larg, sc)
		p.fromNames(j.Rarg, sc)
	default:
		sc.unknown = true
	}
}
