package planner

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Derived tables, CTEs and IN subqueries that stay colocated.
//
// A derived table (subquery in FROM) or a CTE referenced once whose SELECT
// is local to each shard (checked by nestedCheck: no LIMIT, ORDER BY,
// DISTINCT, window or set operation, aggregates only grouped by the key)
// and which selects the distribution key of one of its tables as a bare
// column behaves like that table: every output row with key k was computed
// from rows on k's shard. So a reference to that output column counts as
// the key (keyRel), and joining it on the key of another table of the same
// distribution puts them in one colocation class.
//
// Likewise `col IN (SELECT keycol FROM ...)` (or = ANY) among the top-level
// AND conjuncts of a WHERE or ON is a semi-join on the key: the rows that
// can match an outer row with key k are on k's shard. Under NOT, or outside
// WHERE/ON, the answer depends on NULLs the other shards may hold, so those
// stay where they were (refused unless correlated).
//
// Anchoring (a nested SELECT correlated with the outer query on the key
// needs no further checks) uses only direct key equalities: joins through
// derived tables and IN lists do not make a subquery with LIMIT local.

// cteDef is one WITH query while its statement is analysed.
type cteDef struct {
	sel       *pg_query.SelectStmt // nil when the body is not a SELECT
	aliases   []*pg_query.Node     // WITH name(a, b, ...) column names
	recursive bool
	refs      int
}

// pendingBody is a derived table or CTE reference whose body scope is known
// only once the statement has been analysed.
type pendingBody struct {
	rel     int
	sel     *pg_query.SelectStmt
	aliases []*pg_query.Node
	cte     *cteDef
}

// pendingSemi is `outer IN (SELECT ...)` in a WHERE or ON conjunct.
type pendingSemi struct {
	outer colRef
	sel   *pg_query.SelectStmt
}

// defineCTE registers the WITH query c of scope s.
func (a *analyzer) defineCTE(s int, c *pg_query.CommonTableExpr, recursive bool) {
	if a.cteDefs == nil {
		a.cteDefs = map[int]map[string]*cteDef{}
	}
	if a.cteDefs[s] == nil {
		a.cteDefs[s] = map[string]*cteDef{}
	}
	d := &cteDef{aliases: c.Aliascolnames, recursive: recursive}
	if c.Ctequery != nil {
		d.sel = c.Ctequery.GetSelectStmt()
	}
	a.cteDefs[s][strings.ToLower(c.Ctename)] = d
}

// cteRef records that rel ri (in scope s) reads the WITH query name.
func (a *analyzer) cteRef(ri, s int, name string) {
	for ; s >= 0; s = a.st.scopes[s].parent {
		if d := a.cteDefs[s][name]; d != nil {
			d.refs++
			a.bodies = append(a.bodies, pendingBody{rel: ri, sel: d.sel, aliases: d.aliases, cte: d})
			return
		}
	}
}

// derivedRef records that rel ri is the subquery sel in FROM.
func (a *analyzer) derivedRef(ri int, rs *pg_query.RangeSubselect) {
	pb := pendingBody{rel: ri}
	if rs.Subquery != nil {
		pb.sel = rs.Subquery.GetSelectStmt()
	}
	if rs.Alias != nil {
		pb.aliases = rs.Alias.Colnames
	}
	a.bodies = append(a.bodies, pb)
}

// semiJoin records `x IN (SELECT ...)` when e is one.
func (a *analyzer) semiJoin(e *pg_query.Node, s int) {
	sl := e.GetSubLink()
	if sl == nil || sl.SubLinkType != pg_query.SubLinkType_ANY_SUBLINK || sl.Subselect == nil {
		return
	}
	if len(sl.OperName) > 0 {
		if len(sl.OperName) != 1 || sl.OperName[0].GetString_() == nil || sl.OperName[0].GetString_().Sval != "=" {
			return
		}
	}
	cr := sl.Testexpr.GetColumnRef()
	sel := sl.Subselect.GetSelectStmt()
	if cr == nil || sel == nil {
		return
	}
	if c, ok := colRefOf(cr, s); ok {
		a.semis = append(a.semis, pendingSemi{outer: c, sel: sel})
	}
}

// finishPassThrough resolves the recorded bodies and semi-joins to scopes.
func (a *analyzer) finishPassThrough() {
	st := a.st
	for _, pb := range a.bodies {
		if pb.sel == nil || (pb.cte != nil && (pb.cte.recursive || pb.cte.refs != 1)) {
			continue
		}
		s, ok := a.selScope[pb.sel]
		if !ok || pb.sel.Op != pg_query.SetOperation_SETOP_NONE {
			continue
		}
		if st.outputs == nil {
			st.outputs = map[int]map[string]colRef{}
		}
		st.outputs[pb.rel] = outputColumns(pb.sel, s, pb.aliases)
	}
	for _, ps := range a.semis {
		s, ok := a.selScope[ps.sel]
		if !ok || ps.sel.Op != pg_query.SetOperation_SETOP_NONE || len(ps.sel.TargetList) != 1 {
			continue
		}
		rt := ps.sel.TargetList[0].GetResTarget()
		if rt == nil || rt.Val.GetColumnRef() == nil {
			continue
		}
		if inner, ok := colRefOf(rt.Val.GetColumnRef(), s); ok {
			st.semiEqs = append(st.semiEqs, colEq{ps.outer, inner})
		}
	}
}

// outputColumns maps the output names of the plain SELECT sel (analysed in
// scope s) that are bare column references to those columns. A name given
// twice is left out (a reference to it is ambiguous). With one `*` in the
// list, other names map to a column of that name behind the star; with
// column aliases, targets are matched by position and a star gives up.
func outputColumns(sel *pg_query.SelectStmt, s int, aliases []*pg_query.Node) map[string]colRef {
	out := map[string]colRef{}
	dup := map[string]bool{}
	var star *colRef
	stars := 0
	for i, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return nil
		}
		cr := rt.Val.GetColumnRef()
		if cr != nil && len(cr.Fields) > 0 && cr.Fields[len(cr.Fields)-1].GetAStar() != nil {
			if len(aliases) > 0 {
				return nil
			}
			stars++
			var qual []string
			for _, f := range cr.Fields[:len(cr.Fields)-1] {
				qual = append(qual, strings.ToLower(f.GetString_().GetSval()))
			}
			star = &colRef{scope: s, qual: qual}
			continue
		}
		name := strings.ToLower(rt.Name)
		if i < len(aliases) {
			name = strings.ToLower(aliases[i].GetString_().GetSval())
		}
		var c colRef
		ok := false
		if cr != nil {
			c, ok = colRefOf(cr, s)
			if name == "" {
				name = c.name
			}
		}
		if name == "" {
			continue
		}
		if _, seen := out[name]; seen || dup[name] {
			dup[name] = true
			delete(out, name)
			continue
		}
		if ok {
			out[name] = c
		} else {
			dup[name] = true // an expression: the name is taken, not a key
		}
	}
	if stars == 1 {
		out[starKey] = *star
	}
	for n := range dup {
		out[dupPrefix+n] = colRef{}
	}
	return out
}

// Entries of an outputs map that are not output names: the star's source
// (a name behind it is colRef{qual: star.qual, name}), and names taken by
// an expression or given twice.
const (
	starKey   = "*"
	dupPrefix = "*dup:"
)

// outputColumn traces output column name of derived table or CTE rel ri to
// the column of its body it selects.
func (st *stmtInfo) outputColumn(ri int, name string) (colRef, bool) {
	out, ok := st.outputs[ri]
	if !ok {
		return colRef{}, false
	}
	if c, ok := out[name]; ok {
		return c, true
	}
	if _, taken := out[dupPrefix+name]; taken {
		return colRef{}, false
	}
	if star, ok := out[starKey]; ok {
		return colRef{scope: star.scope, qual: star.qual, name: name}, true
	}
	return colRef{}, false
}

// keyRel returns the distributed table whose distribution key c is —
// directly, or through derived tables and CTEs that select it — or -1.
func (b *binding) keyRel(st *stmtInfo, c colRef) int {
	for hops := 0; hops <= len(st.rels); hops++ {
		ri := b.resolve(st, c)
		if ri < 0 && len(c.qual) == 0 {
			// An unqualified name in a SELECT whose only FROM item is a
			// derived table or CTE is that item's column when the item
			// has it (traced below to a table's key column, or given up).
			if rs := st.scopes[c.scope].rels; len(rs) == 1 && st.outputs[rs[0]] != nil {
				ri = rs[0]
			}
		}
		if ri < 0 {
			return -1
		}
		switch {
		case b.rels[ri].kind == rbDist:
			if b.rels[ri].key == c.name {
				return ri
			}
			return -1
		case b.rels[ri].kind == rbNone:
			next, ok := st.outputColumn(ri, c.name)
			if !ok {
				return -1
			}
			c = next
		default:
			return -1
		}
	}
	return -1
}
