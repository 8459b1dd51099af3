package planner

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// Ownership filters during online moves.
//
// While a move copies a range's rows to a target shard that already owns
// other ranges of the distribution (pending, copying, catchup, cutover,
// cancelling), the target holds rows it does not own yet; after the flip,
// while the source deletes the moved rows (cleanup), the source holds rows
// it no longer owns. A statement that scans both shards would see those
// rows twice. For each such shard a Scatter gets a ShardSQL: the statement
// with every distributed table of the distribution replaced by
//
//	(SELECT * FROM t WHERE (<router hash of key in the move's ranges>) IS NOT TRUE) AS t
//
// and, for the target of an UPDATE or DELETE, the same condition added to
// its WHERE — so each shard answers only for the rows it owns, exactly as
// the router assigns them (router.RangeFilter is the router's hash in
// SQL). Statements whose shape the rewrite cannot keep equivalent (a CTE
// named like a moving table, TABLESAMPLE, column references qualified by
// schema) get 0A000 until the move is done. Keys pinned by a per-key
// override never move (router.MovingRowsFilter), so they are always kept. Statements routed by key are unaffected: a key's rows are read
// where the topology says they are.

// notOwned is, per distribution, per shard, the ranges whose rows the
// shard holds without owning them.
type notOwned map[string]map[string][]topology.Span

// ownership is a snapshot's notOwned plus the statements already
// rewritten for it (a fan-out statement repeated during a move is parsed
// and deparsed once per shard, not per execution).
type ownership struct {
	notOwned notOwned
	mu       sync.Mutex
	rewrites map[[2]string]rewritten // (shard, sql) →
}

type rewritten struct {
	sql     string
	changed bool
	err     error
}

// maxOwnershipRewrites bounds the rewrites kept per snapshot; beyond it
// statements are rewritten per execution.
const maxOwnershipRewrites = 4096

type notOwnedKey struct{}

// ownershipOf returns the snapshot's ownership (nil without moves),
// computed once per snapshot.
func ownershipOf(snap *topology.Snapshot) *ownership {
	return snap.Memo(notOwnedKey{}, func(s *topology.Snapshot) any {
		var no notOwned
		for _, m := range s.Moves() {
			holder := m.To
			switch m.State {
			case topology.MovePending, topology.MoveCopying, topology.MoveCatchup, topology.MoveCutover, topology.MoveCancelling:
			case topology.MoveCleanup:
				holder = m.From
			default:
				continue
			}
			if no == nil {
				no = notOwned{}
			}
			if no[m.Distribution] == nil {
				no[m.Distribution] = map[string][]topology.Span{}
			}
			no[m.Distribution][holder] = append(no[m.Distribution][holder], m.Ranges...)
		}
		if no == nil {
			return (*ownership)(nil)
		}
		return &ownership{notOwned: no, rewrites: map[[2]string]rewritten{}}
	}).(*ownership)
}

// restrictToOwned gives every Scatter in op that reads a distribution with
// rows on a shard that does not own them a ShardSQL for that shard. It
// mutates the Scatters, so it runs before Plan returns op (they are
// created per Plan call).
func restrictToOwned(snap *topology.Snapshot, op plan.Operator) error {
	own := ownershipOf(snap)
	if own == nil {
		return nil
	}
	var err error
	var visit func(plan.Operator)
	visit = func(o plan.Operator) {
		if sc, ok := o.(*plan.Scatter); ok && err == nil {
			err = own.restrictScatter(snap, sc)
			return
		}
		for _, in := range o.Inputs() {
			visit(in)
		}
	}
	visit(op)
	return err
}

func (own *ownership) restrictScatter(snap *topology.Snapshot, sc *plan.Scatter) error {
	for _, shard := range sc.Shards {
		key := [2]string{shard, sc.SQL}
		own.mu.Lock()
		r, ok := own.rewrites[key]
		own.mu.Unlock()
		if !ok {
			r = own.rewrite(snap, shard, sc.SQL)
			own.mu.Lock()
			if len(own.rewrites) < maxOwnershipRewrites {
				own.rewrites[key] = r
			}
			own.mu.Unlock()
		}
		if r.err != nil {
			return r.err
		}
		if r.changed {
			if sc.ShardSQL == nil {
				sc.ShardSQL = map[string]string{}
			}
			sc.ShardSQL[shard] = r.sql
		}
	}
	return nil
}

// rewrite restricts sql to the rows shard owns.
func (own *ownership) rewrite(snap *topology.Snapshot, shard, sql string) rewritten {
	filters := map[string]ownedFilter{}
	for dist, byShard := range own.notOwned {
		spans := byShard[shard]
		if len(spans) == 0 {
			continue
		}
		for _, t := range snap.Tables() {
			if t.Kind == topology.Distributed && t.Distribution == dist {
				filters[t.Name] = ownedFilter{dist: dist, key: t.KeyColumn, spans: spans}
			}
		}
	}
	if len(filters) == 0 {
		return rewritten{}
	}
	out, changed, err := ownedSQL(snap, sql, filters)
	return rewritten{sql: out, changed: changed, err: err}
}

// ownedFilter says which rows of a table a shard holds without owning.
type ownedFilter struct {
	dist  string
	key   string
	spans []topology.Span
}

// condition returns the SQL condition that keeps the owned rows, on key
// column reference col (quoted): true unless the key's hash (or int key)
// lies in the spans (keys pinned by overrides excepted), so NULL keys are
// kept where they are.
func (f ownedFilter) condition(snap *topology.Snapshot, col string) (string, error) {
	d, ok := snap.Distribution(f.dist)
	if !ok {
		return "", fmt.Errorf("distribution %s not in the topology", f.dist)
	}
	in, err := router.MovingRowsFilter(d, col, f.spans)
	if err != nil {
		return "", err
	}
	return in + " IS NOT TRUE", nil
}

// movingRefusal is the 0A000 for a statement ownedSQL cannot rewrite.
func movingRefusal(tables map[string]ownedFilter, why string) error {
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return unsupported(
		fmt.Sprintf("%s: rows of %s are being moved between shards and are briefly on two of them, and this statement cannot be restricted to each shard's own rows (%s)",
			"cannot run over several shards now", strings.Join(names, ", "), why),
		"retry after the move (shardctl rebalance status), or restrict the statement to one key")
}

// ownedSQL rewrites sql so the tables in filters read only owned rows; it
// reports whether anything changed.
func ownedSQL(snap *topology.Snapshot, sql string, filters map[string]ownedFilter) (string, bool, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return "", false, movingRefusal(filters, "statement not parsed")
	}
	root := tree.Stmts[0].Stmt
	rw := &ownedRewriter{snap: snap, filters: filters, ctes: map[string]bool{}}
	walkNodes(root, func(n *pg_query.Node) bool {
		if ce := n.GetCommonTableExpr(); ce != nil {
			rw.ctes[strings.ToLower(ce.Ctename)] = true
		}
		return true
	})
	// The target of an UPDATE or DELETE stays a table; its rows are
	// restricted in the WHERE clause.
	switch x := root.Node.(type) {
	case *pg_query.Node_UpdateStmt:
		rw.target = x.UpdateStmt.Relation
		x.UpdateStmt.WhereClause, err = rw.restrictTarget(x.UpdateStmt.Relation, x.UpdateStmt.WhereClause)
	case *pg_query.Node_DeleteStmt:
		rw.target = x.DeleteStmt.Relation
		x.DeleteStmt.WhereClause, err = rw.restrictTarget(x.DeleteStmt.Relation, x.DeleteStmt.WhereClause)
	case *pg_query.Node_CopyStmt:
		if x.CopyStmt.Relation != nil {
			// COPY table TO: the table is the only relation.
			if err := rw.copyTable(x.CopyStmt); err != nil || !rw.changed {
				return sql, false, err
			}
			return rw.deparse(tree)
		}
	case *pg_query.Node_SelectStmt:
	default:
		err = movingRefusal(filters, "not a SELECT, UPDATE, DELETE or COPY")
	}
	if err != nil {
		return "", false, err
	}
	walkNodes(root, rw.visit)
	if rw.err != nil {
		return "", false, rw.err
	}
	if !rw.changed {
		return sql, false, nil
	}
	return rw.deparse(tree)
}

func (rw *ownedRewriter) deparse(tree *pg_query.ParseResult) (string, bool, error) {
	out, err := pg_query.Deparse(tree)
	if err != nil {
		return "", false, movingRefusal(rw.filters, err.Error())
	}
	return out, true, nil
}

type ownedRewriter struct {
	snap    *topology.Snapshot
	filters map[string]ownedFilter
	ctes    map[string]bool
	target  *pg_query.RangeVar
	changed bool
	err     error
}

// filterOf returns the filter of the table rv names (not a CTE).
func (rw *ownedRewriter) filterOf(rv *pg_query.RangeVar) (ownedFilter, bool) {
	name := rangeVarName(rv)
	f, ok := rw.filters[name]
	if ok && rv.Schemaname == "" && rw.ctes[strings.ToLower(rv.Relname)] && rw.err == nil {
		rw.err = movingRefusal(rw.filters, "a CTE is named like the table "+name)
	}
	return f, ok
}

func (rw *ownedRewriter) visit(n *pg_query.Node) bool {
	if rw.err != nil {
		return false
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_LockingClause:
		return false // FOR UPDATE OF names relations, not tables to read
	case *pg_query.Node_ColumnRef:
		if len(x.ColumnRef.Fields) >= 3 {
			rw.err = movingRefusal(rw.filters, "a column reference qualified by schema")
		}
		return false
	case *pg_query.Node_RangeTableSample:
		if rv := x.RangeTableSample.Relation.GetRangeVar(); rv != nil {
			if _, ok := rw.filterOf(rv); ok && rw.err == nil {
				rw.err = movingRefusal(rw.filters, "TABLESAMPLE")
			}
		}
		return false
	case *pg_query.Node_RangeVar:
		rv := x.RangeVar
		if rv == rw.target {
			return false
		}
		f, ok := rw.filterOf(rv)
		if !ok || rw.err != nil {
			return false
		}
		sub, err := rw.ownedSubselect(rv, f)
		if err != nil {
			rw.err = err
			return false
		}
		n.Node = sub
		rw.changed = true
		return false
	}
	return true
}

// parseSelect parses a SELECT built from trusted pieces.
func (rw *ownedRewriter) parseSelect(sql string) (*pg_query.SelectStmt, error) {
	t, err := pg_query.Parse(sql)
	if err != nil || len(t.Stmts) != 1 || t.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, movingRefusal(rw.filters, fmt.Sprintf("internal: %q: %v", sql, err))
	}
	return t.Stmts[0].Stmt.GetSelectStmt(), nil
}

// ownedSubselect returns (SELECT * FROM rv WHERE <owned>) AS <rv's alias or name>.
func (rw *ownedRewriter) ownedSubselect(rv *pg_query.RangeVar, f ownedFilter) (*pg_query.Node_RangeSubselect, error) {
	cond, err := f.condition(rw.snap, quoteIdent(f.key))
	if err != nil {
		return nil, movingRefusal(rw.filters, err.Error())
	}
	sel, err := rw.parseSelect("SELECT * FROM t WHERE " + cond)
	if err != nil {
		return nil, err
	}
	alias := rv.Alias
	if alias == nil {
		alias = &pg_query.Alias{Aliasname: rv.Relname}
	}
	inner := &pg_query.RangeVar{Catalogname: rv.Catalogname, Schemaname: rv.Schemaname, Relname: rv.Relname, Inh: rv.Inh, Relpersistence: rv.Relpersistence, Location: rv.Location}
	sel.FromClause = []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: inner}}}
	return &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
		Subquery: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}},
		Alias:    alias,
	}}, nil
}

// restrictTarget ANDs the owned condition of an UPDATE/DELETE target onto
// where.
func (rw *ownedRewriter) restrictTarget(rv *pg_query.RangeVar, where *pg_query.Node) (*pg_query.Node, error) {
	f, ok := rw.filterOf(rv)
	if !ok || rw.err != nil {
		return where, rw.err
	}
	ref := rv.Relname
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		ref = rv.Alias.Aliasname
	}
	cond, err := f.condition(rw.snap, quoteIdent(ref)+"."+quoteIdent(f.key))
	if err != nil {
		return nil, movingRefusal(rw.filters, err.Error())
	}
	sel, err := rw.parseSelect("SELECT WHERE " + cond)
	if err != nil {
		return nil, err
	}
	rw.changed = true
	if where == nil {
		return sel.WhereClause, nil
	}
	return &pg_query.Node{Node: &pg_query.Node_BoolExpr{BoolExpr: &pg_query.BoolExpr{
		Boolop: pg_query.BoolExprType_AND_EXPR,
		Args:   []*pg_query.Node{where, sel.WhereClause},
	}}}, nil
}

// copyTable turns COPY t [(cols)] TO into COPY (SELECT cols FROM ONLY t
// WHERE <owned>) TO (COPY of a table never includes inheritance children).
func (rw *ownedRewriter) copyTable(c *pg_query.CopyStmt) error {
	if c.Relation == nil || c.IsFrom {
		return nil
	}
	f, ok := rw.filterOf(c.Relation)
	if !ok || rw.err != nil {
		return rw.err
	}
	cond, err := f.condition(rw.snap, quoteIdent(f.key))
	if err != nil {
		return movingRefusal(rw.filters, err.Error())
	}
	cols := "*"
	if len(c.Attlist) > 0 {
		var names []string
		for _, a := range c.Attlist {
			if s := a.GetString_(); s != nil {
				names = append(names, quoteIdent(s.Sval))
			}
		}
		cols = strings.Join(names, ", ")
	}
	sel, err := rw.parseSelect("SELECT " + cols + " FROM t WHERE " + cond)
	if err != nil {
		return err
	}
	rv := c.Relation
	rel := &pg_query.RangeVar{Catalogname: rv.Catalogname, Schemaname: rv.Schemaname, Relname: rv.Relname, Inh: false, Relpersistence: rv.Relpersistence, Location: rv.Location}
	sel.FromClause = []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: rel}}}
	c.Query = &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}
	c.Relation, c.Attlist = nil, nil
	rw.changed = true
	return nil
}
