package planner

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// mergeTmpl is the rewrite of a scattered SELECT into per-shard SQL and the
// merge operators above the Scatter, computed once per statement and
// binding (it depends on the topology only through "grouped by the key").
// Limit values that come from parameters are filled in per execution.
type mergeTmpl struct {
	none bool // concatenating the shards' rows is exact: bare Scatter, original SQL
	sql  string
	keys []plan.SortKey
	agg  *plan.Aggregate // nil: no Aggregate
	eval *plan.Evaluate  // nil: no expression over aggregates (aggexpr.go)
	// evalAfter: expressions over window values (and, over the proxy's
	// groups, their aggregates), evaluated after the windows (window.go);
	// nil when none.
	evalAfter *plan.Evaluate
	having    *plan.Cond
	distinct  *plan.Distinct
	setop     *plan.SetOp         // INTERSECT/EXCEPT over the parts' tagged rows (setOp)
	window    []plan.WindowColumn // ranking functions the proxy computes (window.go)
	// afterSort: the statement's ORDER BY when it is not the window's; the
	// rows are sorted again after the Window (nil: the window's order).
	afterSort []plan.SortKey
	// moreWindows: windows computed after the first, each over the rows
	// sorted into its Keys (windowKeys while building).
	moreWindows []plan.Window
	windowKeys  [][]plan.SortKey
	// windowPartition: the first keys are the window's PARTITION BY
	windowPartition int
	limit           *limitSpec
	hidden          int
	err             error
}

type limitSpec struct {
	count, offset           int64 // constants; count -1 = none
	countParam, offsetParam int   // 0-based Bind index, -1 = constant
}

// ops builds the operator tree over a Scatter for one execution.
func (m *mergeTmpl) ops(sc *plan.Scatter, params *Params) (plan.Operator, error) {
	var op plan.Operator = sc
	if m.agg != nil {
		a := *m.agg
		a.Input = op
		op = &a
		op = evaluateOver(m.eval, op)
		if m.having != nil {
			cond, err := bindHaving(m.having, params)
			if err != nil {
				return nil, err
			}
			op = &plan.Having{Input: op, Cond: cond}
		}
		if len(m.keys) > 0 {
			op = &plan.Sort{Input: op, Keys: m.keys}
		}
		if m.window != nil { // over the groups, in the order just sorted
			op = m.windowOps(&plan.Window{Input: op, Keys: m.keys, Partition: m.windowPartition, Columns: m.window})
		}
	} else if m.setop != nil {
		so := *m.setop
		so.Input, so.Shards = op, len(sc.Shards)
		op = &so
		if len(m.keys) > 0 {
			op = &plan.Sort{Input: op, Keys: m.keys}
		}
	} else if len(m.keys) > 0 {
		op = &plan.MergeSort{Input: op, Keys: m.keys}
		if m.window != nil {
			op = m.windowOps(&plan.Window{Input: op, Keys: m.keys, Partition: m.windowPartition, Columns: m.window})
		}
	}
	if m.distinct != nil {
		d := *m.distinct
		d.Input = op
		op = &d
	}
	if l := m.limit; l != nil {
		lim := &plan.Limit{Input: op, Count: l.count, Offset: l.offset, CountParam: l.countParam, OffsetParam: l.offsetParam}
		if l.countParam >= 0 {
			v, null, err := limitParam(params, l.countParam)
			if err != nil {
				return nil, err
			}
			if !null && v < 0 {
				return nil, &plan.Error{Code: "2201W", Message: "LIMIT must not be negative"}
			}
			lim.Count = v
			if null {
				lim.Count = -1
			}
		}
		if l.offsetParam >= 0 {
			v, _, err := limitParam(params, l.offsetParam)
			if err != nil {
				return nil, err
			}
			if v < 0 {
				return nil, &plan.Error{Code: "2201X", Message: "OFFSET must not be negative"}
			}
			lim.Offset = v
		}
		op = lim
	}
	if m.hidden > 0 {
		op = &plan.Project{Input: op, Hidden: m.hidden}
	}
	return op, nil
}

// windowOps puts the windows after the first (each over the rows sorted
// into its order), the evaluation of expressions over window values
// (evalAfter) and the statement's own sort above the first Window.
func (m *mergeTmpl) windowOps(first *plan.Window) plan.Operator {
	var op plan.Operator = first
	for _, w := range m.moreWindows {
		w.Input = &plan.Sort{Input: op, Keys: w.Keys}
		op = &w
	}
	op = evaluateOver(m.evalAfter, op)
	if len(m.afterSort) > 0 {
		op = &plan.Sort{Input: op, Keys: m.afterSort}
	}
	return op
}

// evaluateOver is a copy of the template e over in (in itself when e is nil).
func evaluateOver(e *plan.Evaluate, in plan.Operator) plan.Operator {
	if e == nil {
		return in
	}
	op := *e
	op.Input = in
	return &op
}

// opHavingParam marks a $n leaf of a HAVING template (Column = the 0-based
// Bind index); bindHaving turns it into a constant for each execution, so
// plans never carry it.
const opHavingParam = "param"

// hasParamRef reports whether the HAVING template c compares a parameter.
func hasParamRef(c *plan.Cond) bool {
	if c.Op == opHavingParam {
		return true
	}
	for _, a := range c.Args {
		if hasParamRef(a) {
			return true
		}
	}
	return false
}

// bindHaving returns c with its parameters replaced by the execution's
// values (c itself when it has none; templates are shared and not changed).
func bindHaving(c *plan.Cond, params *Params) (*plan.Cond, error) {
	if c.Op == opHavingParam {
		return havingParam(params, c.Column)
	}
	var args []*plan.Cond
	for i, a := range c.Args {
		b, err := bindHaving(a, params)
		if err != nil {
			return nil, err
		}
		if b != a && args == nil {
			args = append([]*plan.Cond(nil), c.Args...)
		}
		if args != nil {
			args[i] = b
		}
	}
	if args == nil {
		return c, nil
	}
	cp := *c
	cp.Args = args
	return &cp, nil
}

// havingParam is Bind value i as a HAVING constant: text values as sent
// (the merge decodes them as the compared column's type, as PostgreSQL
// infers the parameter's type from it); binary integers and floats as their
// text; other binary values are refused.
func havingParam(params *Params, i int) (*plan.Cond, error) {
	if params == nil || i >= len(params.Values) {
		n := 0
		if params != nil {
			n = len(params.Values)
		}
		return nil, &plan.Error{Code: "08P01", Message: fmt.Sprintf("bind message supplies %d parameters, but HAVING uses $%d", n, i+1)}
	}
	v := params.Values[i]
	if v == nil {
		return &plan.Cond{Op: "const", Null: true}, nil
	}
	if params.format(i) != 1 {
		return &plan.Cond{Op: "const", Value: string(v)}, nil
	}
	switch oid := params.oid(i); {
	case (oid == 20 && len(v) == 8) || (oid == 23 && len(v) == 4) || (oid == 21 && len(v) == 2):
		n, _, err := limitParam(params, i)
		if err != nil {
			return nil, err
		}
		return &plan.Cond{Op: "const", Value: strconv.FormatInt(n, 10)}, nil
	case oid == 701 && len(v) == 8:
		return &plan.Cond{Op: "const", Value: strconv.FormatFloat(math.Float64frombits(binary.BigEndian.Uint64(v)), 'g', -1, 64)}, nil
	case oid == 700 && len(v) == 4:
		return &plan.Cond{Op: "const", Value: strconv.FormatFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(v))), 'g', -1, 32)}, nil
	}
	return nil, unsupported(fmt.Sprintf("HAVING parameter $%d across shards is in binary format of type OID %d, which the merge cannot read", i+1, params.oid(i)),
		"send this parameter in text format, or as an integer or float")
}

// limitParam reads Bind value i as an integer (text, or binary int2/4/8).
// A NULL value returns null=true and 0.
func limitParam(params *Params, i int) (int64, bool, error) {
	if params == nil || i >= len(params.Values) {
		n := 0
		if params != nil {
			n = len(params.Values)
		}
		return 0, false, &plan.Error{Code: "08P01", Message: fmt.Sprintf("bind message supplies %d parameters, but LIMIT/OFFSET uses $%d", n, i+1)}
	}
	v := params.Values[i]
	if v == nil {
		return 0, true, nil
	}
	if params.format(i) == 1 {
		switch len(v) {
		case 2:
			return int64(int16(binary.BigEndian.Uint16(v))), false, nil
		case 4:
			return int64(int32(binary.BigEndian.Uint32(v))), false, nil
		case 8:
			return int64(binary.BigEndian.Uint64(v)), false, nil
		}
		return 0, false, &plan.Error{Code: "22P03", Message: fmt.Sprintf("incorrect binary data format in LIMIT/OFFSET parameter $%d", i+1)}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		return 0, false, &plan.Error{Code: "22P02", Message: fmt.Sprintf("invalid input syntax for type bigint: %q", string(v))}
	}
	return n, false, nil
}

// mergeTemplate returns the (memoised) rewrite of st for class ci.
func (b *binding) mergeTemplate(st *stmtInfo, sql string, grouped, localWindows bool) *mergeTmpl {
	key := 0
	if grouped {
		key = 1
	}
	if localWindows {
		key += 2
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.merge[key]; m != nil {
		return m
	}
	m := buildMerge(sql, grouped, localWindows, replicatedParts(st, b))
	b.merge[key] = m
	return m
}

// buildMerge parses sql again (the cached tree is shared and must not be
// modified) and rewrites its top-level SELECT for scattering. grouped
// means the query groups by the scattered class's key, so each group is
// on one shard and aggregates/HAVING are final on the shards.
// localWindows means every window function is partitioned by that key, so
// the shards compute them completely.
func buildMerge(sql string, grouped, localWindows bool, replicated []int) *mergeTmpl {
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return &mergeTmpl{err: unsupported("cannot rewrite this statement for several shards", "")}
	}
	var sel *pg_query.SelectStmt
	switch x := tree.Stmts[0].Stmt.Node.(type) {
	case *pg_query.Node_SelectStmt:
		sel = x.SelectStmt
	case *pg_query.Node_ExplainStmt:
		sel = x.ExplainStmt.Query.GetSelectStmt()
	}
	if sel == nil {
		return &mergeTmpl{err: unsupported("cannot rewrite this statement for several shards", "")}
	}
	original := ""
	if strings.Contains(sql, "$") {
		original = deparseSelect(tree.Version, sel) // before the rewrite, for Evaluate.TypeSQL
	}
	mb := &mergeBuilder{sel: sel, grouped: grouped, localWindows: localWindows, replicated: replicated}
	m, err := mb.build()
	if err != nil {
		return &mergeTmpl{err: err}
	}
	for _, e := range []*plan.Evaluate{m.eval, m.evalAfter} {
		if e != nil && len(e.ParamIndexes) > 0 {
			e.TypeSQL = original
		}
	}
	if m.none {
		return m
	}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.Version, Stmts: []*pg_query.RawStmt{{Stmt: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}}}})
	if err != nil {
		return &mergeTmpl{err: unsupported("cannot rewrite this statement for several shards: "+err.Error(), "")}
	}
	m.sql = out
	return m
}

// colIdx is a column of the shard rows while building: a visible position
// (hidden=false) or the j-th appended hidden column.
type colIdx struct {
	hidden bool
	j      int
}

type mergeBuilder struct {
	sel *pg_query.SelectStmt
	// replicated: the parts (1-based) of a top-level set operation that
	// read no distributed table, so every shard returns all their rows.
	replicated []int
	oneMore    bool // shards must send one row beyond LIMIT + OFFSET (lead reads ahead)
	// finalOrder: the statement's ORDER BY when it differs from the
	// window's (window.go): the rows are sorted again after the Window,
	// and LIMIT/OFFSET stay in the proxy.
	finalOrder []*pg_query.Node
	// windowOrders: the orders of the windows after the first (window.go),
	// each sorted into by the proxy before its Window.
	windowOrders [][]*pg_query.Node
	// limitInProxy: a window call needs rows past LIMIT + OFFSET (its
	// peers or its whole partition), so the shards send every row.
	limitInProxy bool
	// Over the proxy's groups (window.go): windowArgs maps a window call's
	// text to its hidden column, postWindow the select-list entries whose
	// expressions use them (evaluated after the windows, with evAfter).
	windowArgs   map[string]colIdx
	postWindow   map[int]bool
	evAfter      *evalBuild
	grouped      bool
	localWindows bool // window functions are partitioned by the key: plain columns

	visible int  // original select-list entries (not columns when star)
	star    bool // the select list has * (width unknown)
	starAt  int  // first * entry; positions from it on are unknown
	hidden  []*pg_query.Node
	exprs   map[string]colIdx // deparsed expression → column
	names   map[string]colIdx // output name → column (-1 j when ambiguous)

	// aggregate mode
	agg  bool
	cols []plan.AggColumn // per visible entry, then per hidden
	// distinctXs: deparsed arguments of DISTINCT aggregates, each added to
	// the shards' GROUP BY (their rows per combination of the values; each
	// DISTINCT aggregate collects its own argument's values)
	distinctXs map[string]bool
	groupKeys  map[string]bool

	// expressions over aggregates (aggexpr.go)
	ev         *evalBuild
	groupExprs map[string]int // GROUP BY expression text → encoded column
	groupRefs  []groupRef
}

func (mb *mergeBuilder) build() (*mergeTmpl, error) {
	sel := mb.sel
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		return mb.setOp()
	}
	if len(sel.WindowClause) > 0 && !mb.localWindows {
		return nil, unsupported("window functions across shards are not supported yet", "partition the window by the distribution key and add a key condition, or compute it in the application")
	}
	if sel.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil, unsupported("FETCH FIRST ... WITH TIES across shards is not supported yet", "use FETCH FIRST ... ROWS ONLY or LIMIT")
	}
	// FOR UPDATE with a LIMIT and no ORDER BY (Django's
	// select_for_update().get() adds LIMIT 21) runs on every shard with the
	// LIMIT: the answer is any LIMIT rows, as on one server, but each
	// shard locks up to LIMIT rows of its own. With ORDER BY or OFFSET the
	// rows locked would be the wrong ones (a job queue's "ORDER BY id
	// LIMIT 1 FOR UPDATE SKIP LOCKED" would lock one row per shard).
	if len(sel.LockingClause) > 0 && (len(sel.SortClause) > 0 || sel.LimitOffset != nil || len(sel.DistinctClause) > 0) {
		return nil, unsupported("FOR UPDATE/SHARE with ORDER BY, OFFSET or DISTINCT across shards is not supported", "lock the rows of each shard with a key condition")
	}
	if !mb.localWindows && aggregates(sel) {
		countGroups(sel.TargetList)
	}
	mb.exprs = map[string]colIdx{}
	mb.names = map[string]colIdx{}
	mb.starAt = -1
	hasAgg := false
	var ranking []int     // select-list entries that are ranking functions the proxy computes
	var windowExprs []int // select-list expressions over such calls, evaluated after them
	for i, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if isStar(rt.Val) {
			if !mb.star {
				mb.star, mb.starAt = true, i
			}
			continue
		}
		if w := windowIn(rt.Val); w != "" && !mb.localWindows {
			if rankingCall(rt.Val) != nil {
				ranking = append(ranking, i)
				continue
			}
			if windowExpr(rt.Val) && !mb.star {
				windowExprs = append(windowExprs, i)
				hasAgg = hasAgg || aggOutsideWindows(rt.Val)
				continue
			}
			return nil, unsupported("window function "+w+"() across shards is not supported yet", "partition the window by the distribution key and add a key condition, or compute it in the application")
		}
		if containsAgg(rt.Val) {
			hasAgg = true
		}
	}
	mb.visible = len(sel.TargetList)
	if containsAgg(sel.HavingClause) || len(sel.GroupClause) > 0 || sel.HavingClause != nil {
		hasAgg = true
	}
	for _, s := range sel.SortClause {
		if sb := s.GetSortBy(); sb != nil && containsAgg(sb.Node) {
			hasAgg = true
		}
	}
	mb.agg = hasAgg && !mb.grouped
	if len(ranking)+len(windowExprs) > 0 {
		return mb.rankingWindows(ranking, windowExprs, hasAgg && !mb.grouped) // window.go: grouped by the key, the shards' groups are final
	}
	if mb.agg {
		return mb.aggregate()
	}
	return mb.plain()
}

// plain rewrites a SELECT without cross-shard aggregation: shards sort and
// limit; the proxy merges, removes duplicates and limits again.
func (mb *mergeBuilder) plain() (*mergeTmpl, error) {
	sel := mb.sel
	m := &mergeTmpl{}
	for i, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil || (mb.star && i >= mb.starAt) {
			continue
		}
		mb.noteTarget(i, rt)
	}
	keys, err := mb.sortKeys(false)
	if err != nil {
		return nil, err
	}
	m.keys = keys
	if m.afterSort, m.windowKeys, err = mb.laterSorts(false); err != nil {
		return nil, err
	}
	if len(sel.DistinctClause) > 0 {
		d, err := mb.distinctOp(false)
		if err != nil {
			return nil, err
		}
		m.distinct = d
	}
	lim, err := limitOf(sel)
	if err != nil {
		return nil, err
	}
	if lim != nil {
		m.limit = lim
		if mb.finalOrder != nil || len(mb.windowOrders) > 0 || mb.limitInProxy {
			dropLimit(sel, lim) // every row: the windows come first
		} else {
			mb.pushLimit(lim)
		}
	}
	if len(m.keys) == 0 && m.distinct == nil && m.limit == nil {
		return &mergeTmpl{none: true}, nil
	}
	mb.appendHidden()
	m.hidden = len(mb.hidden)
	m.keys = mb.resolveKeys(m.keys)
	m.afterSort = mb.resolveKeys(m.afterSort)
	for i := range m.windowKeys {
		m.windowKeys[i] = mb.resolveKeys(m.windowKeys[i])
	}
	if m.distinct != nil {
		m.distinct.Columns = mb.resolveCols(m.distinct.Columns)
	}
	return m, nil
}

// afterWindows runs f with evAfter as the evaluation being built (mb.ev
// is the one evalTarget, evalArg and resolveEval use).
func (mb *mergeBuilder) afterWindows(f func()) {
	mb.ev, mb.evAfter = mb.evAfter, mb.ev
	defer func() { mb.ev, mb.evAfter = mb.evAfter, mb.ev }()
	f()
}

// laterSorts plans the sorts after the first window (window.go): the keys
// of each further window's order and of the statement's own ORDER BY
// (nil when the rows keep the last window's order), as statement ORDER BY
// lists (agg: over the proxy's groups).
func (mb *mergeBuilder) laterSorts(agg bool) (final []plan.SortKey, windows [][]plan.SortKey, err error) {
	sel := mb.sel
	first := sel.SortClause
	defer func() { sel.SortClause = first }()
	for _, o := range mb.windowOrders {
		sel.SortClause = o
		keys, err := mb.sortKeys(agg)
		if err != nil {
			return nil, nil, err
		}
		windows = append(windows, keys)
	}
	if mb.finalOrder != nil {
		sel.SortClause = mb.finalOrder
		if final, err = mb.sortKeys(agg); err != nil {
			return nil, nil, err
		}
	}
	return final, windows, nil
}

// groupingExprs lists the distinct expressions sel groups by, those inside
// GROUPING SETS, ROLLUP and CUBE included (positions resolved to the
// select-list expression they name, as GROUPING() needs them), and
// whether there are grouping sets.
func groupingExprs(sel *pg_query.SelectStmt) ([]*pg_query.Node, bool) {
	sets := false
	var out []*pg_query.Node
	seen := map[string]bool{}
	var add func(n *pg_query.Node)
	add = func(n *pg_query.Node) {
		switch x := n.Node.(type) {
		case *pg_query.Node_GroupingSet:
			sets = true
			for _, c := range x.GroupingSet.Content {
				add(c)
			}
			return
		case *pg_query.Node_RowExpr: // (a, b) inside ROLLUP/CUBE: one element of several columns
			if x.RowExpr.RowFormat == pg_query.CoercionForm_COERCE_IMPLICIT_CAST {
				for _, c := range x.RowExpr.Args {
					add(c)
				}
				return
			}
		case *pg_query.Node_List:
			for _, c := range x.List.Items {
				add(c)
			}
			return
		}
		k := deparseExpr(n)
		if !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	for _, g := range sel.GroupClause {
		add(g)
	}
	if !sets {
		return sel.GroupClause, false
	}
	for i, g := range out { // GROUP BY ROLLUP (1): GROUPING() needs the expression
		out[i] = groupingTarget(sel, g)
	}
	return out, true
}

// groupingTarget is the select-list expression a GROUP BY position (an
// integer constant) names, or n itself.
func groupingTarget(sel *pg_query.SelectStmt, n *pg_query.Node) *pg_query.Node {
	if iv, ok := n.GetAConst().GetVal().(*pg_query.A_Const_Ival); ok && iv.Ival != nil && iv.Ival.Ival >= 1 && int(iv.Ival.Ival) <= len(sel.TargetList) {
		return sel.TargetList[iv.Ival.Ival-1].GetResTarget().Val
	}
	return n
}

// groupingSetCount expands sel's GROUP BY into its grouping sets, as
// PostgreSQL does (each item's sets crossed with the next's; ROLLUP of n
// elements gives n+1 sets, CUBE 2^n, GROUPING SETS the union of its
// items'), and returns how many there are and whether one repeats (as a
// set of expressions). It stops counting past 4096.
func groupingSetCount(sel *pg_query.SelectStmt) (int, bool) {
	const limit = 4096
	key := func(n *pg_query.Node) string { return deparseExpr(groupingTarget(sel, n)) }
	// element is one item inside ROLLUP/CUBE/SETS: its expressions.
	var element func(n *pg_query.Node) []string
	element = func(n *pg_query.Node) []string {
		if gs := n.GetGroupingSet(); gs != nil && gs.Kind == pg_query.GroupingSetKind_GROUPING_SET_SIMPLE {
			var out []string
			for _, c := range gs.Content {
				out = append(out, element(c)...)
			}
			return out
		}
		if r := n.GetRowExpr(); r != nil && r.RowFormat == pg_query.CoercionForm_COERCE_IMPLICIT_CAST {
			var out []string
			for _, a := range r.Args {
				out = append(out, key(a))
			}
			return out
		}
		return []string{key(n)}
	}
	var expand func(n *pg_query.Node) [][]string
	expand = func(n *pg_query.Node) [][]string {
		gs := n.GetGroupingSet()
		if gs == nil {
			return [][]string{element(n)}
		}
		var out [][]string
		switch gs.Kind {
		case pg_query.GroupingSetKind_GROUPING_SET_EMPTY:
			return [][]string{nil}
		case pg_query.GroupingSetKind_GROUPING_SET_SIMPLE:
			var set []string
			for _, c := range gs.Content {
				set = append(set, element(c)...)
			}
			return [][]string{set}
		case pg_query.GroupingSetKind_GROUPING_SET_ROLLUP:
			for k := len(gs.Content); k >= 0; k-- {
				var set []string
				for _, c := range gs.Content[:k] {
					set = append(set, element(c)...)
				}
				out = append(out, set)
			}
		case pg_query.GroupingSetKind_GROUPING_SET_CUBE:
			if len(gs.Content) > 12 {
				return make([][]string, limit+1)
			}
			for mask := 0; mask < 1<<len(gs.Content); mask++ {
				var set []string
				for i, c := range gs.Content {
					if mask&(1<<i) != 0 {
						set = append(set, element(c)...)
					}
				}
				out = append(out, set)
			}
		default: // GROUPING SETS (…)
			for _, c := range gs.Content {
				out = append(out, expand(c)...)
			}
		}
		return out
	}
	sets := [][]string{nil}
	for _, g := range sel.GroupClause {
		var next [][]string
		for _, a := range sets {
			for _, b := range expand(g) {
				next = append(next, append(append([]string(nil), a...), b...))
				if len(next) > limit {
					return len(next), false
				}
			}
		}
		sets = next
	}
	seen := map[string]bool{}
	for _, set := range sets {
		set = slices.Compact(slices.Sorted(slices.Values(set)))
		k := strings.Join(set, "\x00")
		if seen[k] {
			return len(sets), true
		}
		seen[k] = true
	}
	return len(sets), false
}

// aggregate rewrites a SELECT with aggregates or GROUP BY that is not
// grouped by the key: shards compute partial aggregates per group, the
// proxy combines them.
func (mb *mergeBuilder) aggregate() (*mergeTmpl, error) {
	sel := mb.sel
	if mb.star {
		return nil, unsupported("SELECT * with aggregates or GROUP BY across shards is not supported", "list the columns")
	}
	// GROUPING SETS, ROLLUP and CUBE: the shards group by the sets
	// themselves; the proxy merges groups keyed by every expression of the
	// sets plus a hidden GROUPING() over all of them, so a set's subtotal
	// row (NULL where a column is rolled up) never meets a group whose key
	// is NULL.
	groupExprs, sets := groupingExprs(sel)
	if sets && len(groupExprs) > 31 {
		return nil, unsupported("GROUPING SETS over more than 31 expressions across shards are not supported", "GROUP BY the distribution key, or add a key condition")
	}
	if sets && !sel.GroupDistinct {
		// A set listed twice gives its groups twice on one server; merged by
		// set they would become one.
		if n, dup := groupingSetCount(sel); dup || n > 4096 {
			return nil, unsupported("GROUPING SETS that repeat a set (or more than 4096 sets) across shards are not supported",
				"write GROUP BY DISTINCT to drop the repeated sets, or add a key condition")
		}
	}
	m := &mergeTmpl{}
	// Hidden columns added before (window.go, over these groups) keep
	// their merge functions after the select list's.
	mb.cols = append(make([]plan.AggColumn, len(sel.TargetList)), mb.cols...)
	mb.groupKeys = map[string]bool{}
	scalar := len(sel.GroupClause) == 0
	// Note every entry (by its original text) before rewriting partials.
	for i, t := range sel.TargetList {
		rt := t.GetResTarget()
		mb.noteTarget(i, rt)
		if !containsAgg(rt.Val) {
			mb.cols[i] = plan.AggColumn{Func: plan.AggAny, Arg: -1, Name: outputName(rt)}
		}
	}
	var groupCols []int
	for _, g := range groupExprs {
		c, err := mb.groupCol(g)
		if err != nil {
			return nil, err
		}
		groupCols = append(groupCols, c)
		mb.groupKeys[deparseExpr(g)] = true
		mb.noteGroupKey(g, c)
	}
	if sets {
		var args []*pg_query.Node
		for _, g := range groupExprs {
			args = append(args, proto.Clone(g).(*pg_query.Node))
		}
		gf := &pg_query.Node{Node: &pg_query.Node_GroupingFunc{GroupingFunc: &pg_query.GroupingFunc{Args: args, Location: -1}}}
		j := mb.addHidden(gf, plan.AggColumn{Func: plan.AggKey, Arg: -1, Name: "grouping"})
		groupCols = append(groupCols, encodeCol(colIdx{hidden: true, j: j}))
	}
	for i, t := range sel.TargetList {
		rt := t.GetResTarget()
		if !containsAgg(rt.Val) {
			continue
		}
		if needsEval(rt.Val) {
			var err error
			if mb.postWindow[i] { // over window values: evaluated after the windows
				mb.afterWindows(func() { err = mb.evalTarget(i, rt) })
			} else {
				err = mb.evalTarget(i, rt)
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		fc := rt.Val.GetFuncCall()
		name := outputName(rt)
		col, extra, err := mb.partial(fc, name)
		if err != nil {
			return nil, err
		}
		rt.Name = name
		rt.Val = extra.val
		mb.cols[i] = col
		if extra.hiddenArg != nil {
			j := mb.addHidden(extra.hiddenArg, plan.AggColumn{Func: extra.hiddenFunc, Arg: -1, Name: extra.hiddenFunc})
			mb.cols[i].Arg = -1000 - j // resolved below
		}
		mb.addMoreKeys(i, extra)
	}
	if having := sel.HavingClause; having != nil {
		var c *plan.Cond
		var err error
		evaluated := !condShapeOK(having)
		if evaluated {
			c, err = mb.evalHaving(having) // PostgreSQL evaluates the whole condition
		} else {
			c, err = mb.cond(having)
		}
		if err != nil {
			return nil, err
		}
		m.having = c
		sel.HavingClause = nil
		if hasParamRef(c) || evaluated {
			// The merge filters the groups; the shards keep the condition
			// only so that its parameters still have a type they can infer
			// and its type is checked ("HAVING (cond) OR true" is planned
			// away as true).
			truth := &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: true}}, Location: -1}}}
			sel.HavingClause = pg_query.MakeBoolExprNode(pg_query.BoolExprType_OR_EXPR, []*pg_query.Node{having, truth}, -1)
		}
	}
	keys, err := mb.sortKeys(true)
	if err != nil {
		return nil, err
	}
	m.keys = keys
	if m.afterSort, m.windowKeys, err = mb.laterSorts(true); err != nil { // window.go: keys is the first window's order
		return nil, err
	}
	sel.SortClause = nil
	if len(sel.DistinctClause) > 0 {
		d, err := mb.distinctOp(true)
		if err != nil {
			return nil, err
		}
		m.distinct = d
		sel.DistinctClause = nil
	}
	lim, err := limitOf(sel)
	if err != nil {
		return nil, err
	}
	m.limit = lim
	dropLimit(sel, lim)
	mb.appendHidden()
	m.hidden = len(mb.hidden)
	// A hidden column j referenced as -1000 - j before the hidden columns
	// were appended: its place in the row.
	resolve := func(ref *int) {
		if *ref <= -1000 {
			*ref = len(sel.TargetList) - len(mb.hidden) + (-1000 - *ref)
		}
	}
	for i := range mb.cols {
		resolve(&mb.cols[i].Arg)
		for k := range mb.cols[i].MoreKeys {
			resolve(&mb.cols[i].MoreKeys[k].Column)
		}
	}
	m.eval = mb.resolveEval()
	if mb.evAfter != nil {
		mb.afterWindows(func() { m.evalAfter = mb.resolveEval() })
	}
	agg := &plan.Aggregate{Columns: mb.cols, Scalar: scalar}
	for _, c := range groupCols {
		agg.GroupBy = append(agg.GroupBy, mb.resolve(colIdxOf(c)))
	}
	m.agg = agg
	m.keys = mb.resolveKeys(m.keys)
	m.afterSort = mb.resolveKeys(m.afterSort)
	for i := range m.windowKeys {
		m.windowKeys[i] = mb.resolveKeys(m.windowKeys[i])
	}
	if m.distinct != nil {
		m.distinct.Columns = mb.resolveCols(m.distinct.Columns)
	}
	if m.having != nil {
		mb.resolveCond(m.having)
	}
	return m, nil
}

// encodeCol packs a colIdx into an int for the operator fields while
// building (hidden j → -1-j); resolve turns it into the final index.
func encodeCol(c colIdx) int {
	if c.hidden {
		return -1 - c.j
	}
	return c.j
}

func colIdxOf(i int) colIdx {
	if i < 0 {
		return colIdx{hidden: true, j: -1 - i}
	}
	return colIdx{j: i}
}

func (mb *mergeBuilder) resolve(c colIdx) int {
	if !c.hidden {
		return c.j
	}
	if mb.star {
		return -(len(mb.hidden) - c.j)
	}
	return mb.visible + c.j
}

func (mb *mergeBuilder) resolveKeys(keys []plan.SortKey) []plan.SortKey {
	for i := range keys {
		keys[i].Column = mb.resolve(colIdxOf(keys[i].Column))
	}
	return keys
}

func (mb *mergeBuilder) resolveCols(cols []int) []int {
	for i := range cols {
		cols[i] = mb.resolve(colIdxOf(cols[i]))
	}
	return cols
}

func (mb *mergeBuilder) resolveCond(c *plan.Cond) {
	if c.Op == "column" {
		c.Column = mb.resolve(colIdxOf(c.Column))
	}
	for _, a := range c.Args {
		mb.resolveCond(a)
	}
}

func (mb *mergeBuilder) appendHidden() {
	for _, h := range mb.hidden {
		mb.sel.TargetList = append(mb.sel.TargetList, &pg_query.Node{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Val: h, Location: -1}}})
	}
}

// addHidden appends an expression as a hidden column (aggregate mode: with
// its merge function) and returns its hidden index.
func (mb *mergeBuilder) addHidden(n *pg_query.Node, col plan.AggColumn) int {
	mb.hidden = append(mb.hidden, n)
	if mb.agg {
		mb.cols = append(mb.cols, col)
	}
	return len(mb.hidden) - 1
}

// noteTarget records select-list entry i for lookups by expression and
// by output name.
func (mb *mergeBuilder) noteTarget(i int, rt *pg_query.ResTarget) {
	c := colIdx{j: i}
	k := deparseExpr(rt.Val)
	if _, ok := mb.exprs[k]; !ok {
		mb.exprs[k] = c
	}
	if name := outputName(rt); name != "" {
		if _, ok := mb.names[name]; ok {
			mb.names[name] = colIdx{j: -1}
		} else {
			mb.names[name] = c
		}
	}
}

// column finds the shard column of an ORDER BY / GROUP BY / DISTINCT ON
// item: a position, an output name (preferOutput), or an equal
// expression; ok=false when it must be added as a hidden column.
func (mb *mergeBuilder) column(n *pg_query.Node, preferOutput bool, what string) (colIdx, bool, error) {
	if c := n.GetAConst(); c != nil {
		if iv, ok := c.Val.(*pg_query.A_Const_Ival); ok {
			p := int(iv.Ival.Ival)
			if p < 1 || p > mb.visible {
				return colIdx{}, false, nil // the shard reports the error
			}
			if mb.star && p-1 >= mb.starAt {
				return colIdx{}, false, unsupported(what+" by position after * across shards is not supported", "name the column")
			}
			return colIdx{j: p - 1}, true, nil
		}
	}
	name := ""
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		if s := cr.Fields[0].GetString_(); s != nil {
			name = s.Sval
		}
	}
	if preferOutput && name != "" {
		if c, ok := mb.names[name]; ok && c.j >= 0 {
			return c, true, nil
		}
	}
	if c, ok := mb.exprs[deparseExpr(n)]; ok {
		return c, true, nil
	}
	if !preferOutput && name != "" {
		if c, ok := mb.names[name]; ok && c.j >= 0 {
			return c, true, nil
		}
	}
	return colIdx{}, false, nil
}

func (mb *mergeBuilder) groupCol(g *pg_query.Node) (int, error) {
	c, ok, err := mb.column(g, false, "GROUP BY")
	if err != nil {
		return 0, err
	}
	if ok {
		if mb.agg && !c.hidden {
			mb.cols[c.j].Func = plan.AggKey
		}
		return encodeCol(c), nil
	}
	j := mb.addHidden(g, plan.AggColumn{Func: plan.AggKey, Arg: -1})
	mb.exprs[deparseExpr(g)] = colIdx{hidden: true, j: j}
	return encodeCol(colIdx{hidden: true, j: j}), nil
}

// sortKeys turns ORDER BY into keys, adding hidden columns as needed.
func (mb *mergeBuilder) sortKeys(agg bool) ([]plan.SortKey, error) {
	var keys []plan.SortKey
	for _, s := range mb.sel.SortClause {
		sb := s.GetSortBy()
		if sb == nil {
			continue
		}
		if sb.SortbyDir == pg_query.SortByDir_SORTBY_USING {
			return nil, unsupported("ORDER BY ... USING across shards is not supported", "use ASC or DESC")
		}
		var k plan.SortKey
		k.Desc, k.NullsFirst = sortDirection(sb)
		expr := sb.Node
		if cc := expr.GetCollateClause(); cc != nil {
			var parts []string
			for _, p := range cc.Collname {
				if str := p.GetString_(); str != nil {
					parts = append(parts, str.Sval)
				}
			}
			k.Collation = strings.Join(parts, ".")
		}
		c, ok, err := mb.column(expr, true, "ORDER BY")
		if err != nil {
			return nil, err
		}
		if !ok && expr.GetCollateClause() != nil {
			c, ok, err = mb.column(expr.GetCollateClause().Arg, true, "ORDER BY")
			if err != nil {
				return nil, err
			}
		}
		if !ok {
			if isIntConst(expr) {
				return nil, unsupported("ORDER BY position out of range", "")
			}
			if agg {
				col, err := mb.aggExprCol(expr, "ORDER BY")
				if err != nil {
					return nil, err
				}
				c = col
			} else {
				j := mb.addHidden(expr, plan.AggColumn{})
				c = colIdx{hidden: true, j: j}
				mb.exprs[deparseExpr(expr)] = c
			}
		}
		k.Column = encodeCol(c)
		keys = append(keys, k)
	}
	return keys, nil
}

// aggExprCol makes a hidden column for an expression in ORDER BY or
// HAVING of an aggregate query: an aggregate call (partial + merge
// function) or an expression of the group keys (any value of the group).
func (mb *mergeBuilder) aggExprCol(n *pg_query.Node, what string) (colIdx, error) {
	k := deparseExpr(n)
	if c, ok := mb.exprs[k]; ok {
		return c, nil
	}
	if !containsAgg(n) {
		j := mb.addHidden(n, plan.AggColumn{Func: plan.AggAny, Arg: -1})
		mb.exprs[k] = colIdx{hidden: true, j: j}
		return colIdx{hidden: true, j: j}, nil
	}
	if needsEval(n) {
		return mb.evalHidden(n, what)
	}
	fc := n.GetFuncCall()
	col, extra, err := mb.partial(fc, funcName(fc))
	if err != nil {
		return colIdx{}, err
	}
	j := mb.addHidden(extra.val, col)
	ci := len(mb.cols) - 1
	if extra.hiddenArg != nil {
		a := mb.addHidden(extra.hiddenArg, plan.AggColumn{Func: extra.hiddenFunc, Arg: -1})
		mb.cols[ci].Arg = -1000 - a
	}
	mb.addMoreKeys(ci, extra)
	mb.exprs[k] = colIdx{hidden: true, j: j}
	return colIdx{hidden: true, j: j}, nil
}

type partialExtra struct {
	val        *pg_query.Node // the shard's expression at the column
	hiddenArg  *pg_query.Node // a second partial (avg's count, ordered agg's keys)
	hiddenFunc string
	// moreKeys: an ordered aggregate's arrays of its ORDER BY keys after the
	// first (plan.AggColumn.MoreKeys).
	moreKeys []*pg_query.Node
}

// sortDirection reads an ORDER BY item's direction and NULLS placement
// (NULLS FIRST by default for DESC, as PostgreSQL).
func sortDirection(sb *pg_query.SortBy) (desc, nullsFirst bool) {
	desc = sb.SortbyDir == pg_query.SortByDir_SORTBY_DESC
	nullsFirst = desc
	switch sb.SortbyNulls {
	case pg_query.SortByNulls_SORTBY_NULLS_FIRST:
		nullsFirst = true
	case pg_query.SortByNulls_SORTBY_NULLS_LAST:
		nullsFirst = false
	}
	return desc, nullsFirst
}

// addMoreKeys adds the hidden key arrays of the partial at mb.cols[ci]
// (resolved with the other -1000 - j references in aggregate()).
func (mb *mergeBuilder) addMoreKeys(ci int, extra partialExtra) {
	for k, n := range extra.moreKeys {
		j := mb.addHidden(n, plan.AggColumn{Func: plan.AggAny, Arg: -1, Name: "array_agg"})
		mb.cols[ci].MoreKeys[k].Column = -1000 - j
	}
}

// partial rewrites one aggregate call into its per-shard partial and the
// merge function.
func (mb *mergeBuilder) partial(fc *pg_query.FuncCall, name string) (plan.AggColumn, partialExtra, error) {
	fn := funcName(fc)
	col := plan.AggColumn{Arg: -1, Name: name}
	self := &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: fc}}
	ex := partialExtra{val: self}
	if fc.AggWithinGroup {
		return col, ex, unsupported(fn+"() WITHIN GROUP across shards is not supported", "add a key condition")
	}
	if !builtinName(fc) {
		return col, ex, unsupported("aggregate "+deparseFuncName(fc)+"() across shards is not supported", "add a key condition")
	}
	withName := func(newName string, args []*pg_query.Node, order []*pg_query.Node) *pg_query.Node {
		c := &pg_query.FuncCall{Funcname: []*pg_query.Node{pg_query.MakeStrNode(newName)}, Args: args, AggOrder: order,
			AggFilter: fc.AggFilter, AggStar: fc.AggStar, Funcformat: fc.Funcformat, Location: -1}
		return &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: c}}
	}
	// string_agg/array_agg/jsonb_agg(DISTINCT x [ORDER BY x]): the shards
	// send their distinct values sorted, the merge sorts all of them and
	// drops repeats (plan.AggColumn.Distinct). Without ORDER BY one server
	// returns them sorted too (its DISTINCT sorts).
	distinctOrdered := false
	if fc.AggDistinct && (fn == "string_agg" || fn == "array_agg" || fn == "jsonb_agg") && len(fc.Args) > 0 &&
		(len(fc.AggOrder) == 0 || (len(fc.AggOrder) == 1 && fc.AggOrder[0].GetSortBy() != nil &&
			deparseExpr(fc.AggOrder[0].GetSortBy().Node) == deparseExpr(fc.Args[0]))) {
		distinctOrdered = true
		if len(fc.AggOrder) == 0 {
			fc.AggOrder = []*pg_query.Node{{Node: &pg_query.Node_SortBy{SortBy: &pg_query.SortBy{Node: proto.Clone(fc.Args[0]).(*pg_query.Node),
				SortbyDir: pg_query.SortByDir_SORTBY_DEFAULT, SortbyNulls: pg_query.SortByNulls_SORTBY_NULLS_DEFAULT, Location: -1}}}}
		}
	}
	if fc.AggDistinct && !distinctOrdered {
		if fn == "min" || fn == "max" {
			fc.AggDistinct = false
		} else {
			if fn != "count" && fn != "sum" && fn != "avg" {
				return col, ex, unsupported(fn+"(DISTINCT ...) across shards is not supported yet", "use count, sum or avg with DISTINCT, or add a key condition")
			}
			if len(fc.Args) != 1 || fc.AggFilter != nil {
				return col, ex, unsupported(fn+"(DISTINCT ...) with several arguments or FILTER across shards is not supported", "add a key condition")
			}
			x := fc.Args[0]
			k := deparseExpr(x)
			if !mb.distinctXs[k] {
				if mb.distinctXs == nil {
					mb.distinctXs = map[string]bool{}
				}
				mb.distinctXs[k] = true
				if !mb.groupKeys[k] {
					mb.sel.GroupClause = append(mb.sel.GroupClause, x)
				}
			}
			ex.val = x
			col.Func = map[string]string{"count": plan.AggCountDst, "sum": plan.AggSumDst, "avg": plan.AggAvgDst}[fn]
			return col, ex, nil
		}
	}
	switch fn {
	case "count":
		col.Func = plan.AggCount
	case "sum":
		col.Func = plan.AggSum
	case "min":
		col.Func = plan.AggMin
	case "max":
		col.Func = plan.AggMax
	case "bool_and", "every":
		col.Func = plan.AggBoolAnd
	case "bool_or":
		col.Func = plan.AggBoolOr
	case "avg":
		if len(fc.Args) != 1 {
			return col, ex, unsupported("avg() needs one argument", "")
		}
		col.Func = plan.AggAvg
		ex.val = withName("sum", fc.Args, nil)
		ex.hiddenArg = withName("count", fc.Args, nil)
		ex.hiddenFunc = plan.AggCount
	case "string_agg", "array_agg", "jsonb_agg":
		if fn == "jsonb_agg" && len(fc.Args) != 1 {
			return col, ex, unsupported("jsonb_agg() needs one argument", "")
		}
		if fn == "string_agg" {
			if len(fc.Args) != 2 {
				return col, ex, unsupported("string_agg() needs two arguments", "")
			}
			sep := fc.Args[1]
			if tc := sep.GetTypeCast(); tc != nil {
				sep = tc.Arg
			}
			c := sep.GetAConst()
			sv, ok := c.GetVal().(*pg_query.A_Const_Sval)
			if c == nil || !ok {
				return col, ex, unsupported("string_agg() across shards needs a constant delimiter", "use a string literal as the delimiter")
			}
			col.Sep = sv.Sval.Sval
		}
		if len(fc.AggOrder) == 0 {
			col.Func = map[string]string{"string_agg": plan.AggStringAgg, "array_agg": plan.AggArrayAgg, "jsonb_agg": plan.AggJsonbAgg}[fn]
			return col, ex, nil
		}
		var sbs []*pg_query.SortBy
		for _, o := range fc.AggOrder {
			sb := o.GetSortBy()
			if sb == nil || sb.SortbyDir == pg_query.SortByDir_SORTBY_USING {
				return col, ex, unsupported(fn+"(... ORDER BY ... USING) across shards is not supported", "")
			}
			sbs = append(sbs, sb)
		}
		sb := sbs[0]
		col.Func = map[string]string{"string_agg": plan.AggOrderedStringAgg, "array_agg": plan.AggOrderedArrayAgg, "jsonb_agg": plan.AggOrderedJsonbAgg}[fn]
		col.Desc, col.NullsFirst = sortDirection(sb)
		// Keys after the first: one more array of the same rows each.
		col.MoreKeys = nil
		for _, k := range sbs[1:] {
			d, nf := sortDirection(k)
			col.MoreKeys = append(col.MoreKeys, plan.SortKey{Column: -1, Desc: d, NullsFirst: nf})
			ex.moreKeys = append(ex.moreKeys, withName("array_agg", []*pg_query.Node{k.Node}, fc.AggOrder))
		}
		// The values in the key's order (jsonb_agg keeps its own form:
		// each element as to_jsonb makes it), and the keys.
		ex.val = withName("array_agg", fc.Args[:1], fc.AggOrder)
		if fn == "jsonb_agg" {
			ex.val = withName("jsonb_agg", fc.Args[:1], fc.AggOrder)
		}
		ex.hiddenArg = withName("array_agg", []*pg_query.Node{sb.Node}, fc.AggOrder)
		ex.hiddenFunc = plan.AggAny
		if distinctOrdered {
			col.Distinct = true
			ex.val.GetFuncCall().AggDistinct = true
			ex.hiddenArg.GetFuncCall().AggDistinct = true
		}
	case "json_agg":
		// Its text puts a line break between composite or array elements
		// but not between json values of the same shape: combining the
		// shards' texts would need the argument's type.
		return col, ex, unsupported("aggregate json_agg() across shards is not supported",
			"use jsonb_agg(), which is combined across shards, or GROUP BY the distribution key, or add a key condition")
	default:
		return col, ex, unsupported("aggregate "+fn+"() across shards is not supported yet",
			"use count, sum, avg, min, max, bool_and, bool_or, string_agg, array_agg or jsonb_agg, GROUP BY the distribution key, or add a key condition")
	}
	return col, ex, nil
}

// cond translates HAVING into a Cond over (possibly hidden) columns.
func (mb *mergeBuilder) cond(n *pg_query.Node) (*plan.Cond, error) {
	bad := func() (*plan.Cond, error) {
		return nil, unsupported("this HAVING condition ("+deparseExpr(n)+") cannot be evaluated across shards yet",
			"use AND/OR/NOT of comparisons (=, <>, <, <=, >, >=, IS [NOT] NULL) between aggregates, grouped columns and constants, or add a key condition")
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_BoolExpr:
		op := map[pg_query.BoolExprType]string{pg_query.BoolExprType_AND_EXPR: "and", pg_query.BoolExprType_OR_EXPR: "or", pg_query.BoolExprType_NOT_EXPR: "not"}[x.BoolExpr.Boolop]
		if op == "" {
			return bad()
		}
		c := &plan.Cond{Op: op}
		for _, a := range x.BoolExpr.Args {
			ac, err := mb.cond(a)
			if err != nil {
				return nil, err
			}
			c.Args = append(c.Args, ac)
		}
		return c, nil
	case *pg_query.Node_AExpr:
		if x.AExpr.Kind != pg_query.A_Expr_Kind_AEXPR_OP || x.AExpr.Lexpr == nil {
			return bad()
		}
		op := opName(x.AExpr)
		if op == "!=" {
			op = "<>"
		}
		switch op {
		case "=", "<>", "<", "<=", ">", ">=":
		default:
			return bad()
		}
		l, err := mb.operand(x.AExpr.Lexpr)
		if err != nil {
			return nil, err
		}
		r, err := mb.operand(x.AExpr.Rexpr)
		if err != nil {
			return nil, err
		}
		if l.Op != "column" && r.Op != "column" {
			return bad()
		}
		return &plan.Cond{Op: op, Args: []*plan.Cond{l, r}}, nil
	case *pg_query.Node_NullTest:
		a, err := mb.operand(x.NullTest.Arg)
		if err != nil {
			return nil, err
		}
		op := "is_null"
		if x.NullTest.Nulltesttype == pg_query.NullTestType_IS_NOT_NULL {
			op = "is_not_null"
		}
		return &plan.Cond{Op: op, Args: []*plan.Cond{a}}, nil
	}
	return bad()
}

func (mb *mergeBuilder) operand(n *pg_query.Node) (*plan.Cond, error) {
	v := valueOf(n)
	switch v.kind {
	case vConst:
		return &plan.Cond{Op: "const", Value: v.text}, nil
	case vNull:
		return &plan.Cond{Op: "const", Null: true}, nil
	case vParam:
		return &plan.Cond{Op: opHavingParam, Column: v.param}, nil
	}
	c, err := mb.aggExprCol(n, "HAVING")
	if err != nil {
		return nil, err
	}
	return &plan.Cond{Op: "column", Column: encodeCol(c)}, nil
}

// distinctOp builds Distinct for DISTINCT / DISTINCT ON. Plain DISTINCT is
// parsed as one nil item.
func (mb *mergeBuilder) distinctOp(agg bool) (*plan.Distinct, error) {
	sel := mb.sel
	if len(sel.DistinctClause) == 1 && sel.DistinctClause[0].GetNode() == nil {
		if mb.star {
			return &plan.Distinct{}, nil // all columns (hidden ones depend on them)
		}
		d := &plan.Distinct{}
		for i := 0; i < mb.visible; i++ {
			d.Columns = append(d.Columns, i)
		}
		return d, nil
	}
	d := &plan.Distinct{On: true}
	for _, n := range sel.DistinctClause {
		c, ok, err := mb.column(n, false, "DISTINCT ON")
		if err != nil {
			return nil, err
		}
		if !ok {
			if agg {
				c, err = mb.aggExprCol(n, "DISTINCT ON")
				if err != nil {
					return nil, err
				}
			} else {
				j := mb.addHidden(n, plan.AggColumn{})
				c = colIdx{hidden: true, j: j}
				mb.exprs[deparseExpr(n)] = c
			}
		}
		d.Columns = append(d.Columns, encodeCol(c))
	}
	return d, nil
}

// setOp rewrites UNION [ALL] of scattered SELECTs: every shard runs the
// whole statement over its rows; UNION removes duplicates again after
// the merge.
//
// INTERSECT and EXCEPT [ALL] of two SELECTs cannot run on each shard (a
// row's copies in the two parts may be on different shards): the shards
// run the parts as UNION ALL, each row tagged with its part in an extra
// last column, and the proxy's SetOp counts the copies; ORDER BY and
// LIMIT are then applied in the proxy only.
func (mb *mergeBuilder) setOp() (*mergeTmpl, error) {
	sel := mb.sel
	opName := strings.TrimPrefix(sel.Op.String(), "SETOP_")
	// Counting in the proxy (SetOp) unless the shards' own UNION [ALL]
	// results concatenated are the answer.
	distinct, ok := shardUnion(sel)
	counting := !ok || (len(mb.replicated) > 0 && !distinct)
	m := &mergeTmpl{}
	mb.exprs = map[string]colIdx{}
	mb.names = map[string]colIdx{}
	left := sel
	for left.Op != pg_query.SetOperation_SETOP_NONE {
		left = left.Larg
	}
	mb.visible = len(left.TargetList)
	mb.starAt = -1
	for i, t := range left.TargetList {
		rt := t.GetResTarget()
		if isStar(rt.Val) {
			if !mb.star {
				mb.star, mb.starAt = true, i
			}
			continue
		}
		if !mb.star {
			if name := outputName(rt); name != "" {
				mb.names[name] = colIdx{j: i}
			}
		}
	}
	for _, s := range sel.SortClause {
		sb := s.GetSortBy()
		if sb == nil {
			continue
		}
		if sb.SortbyDir == pg_query.SortByDir_SORTBY_USING {
			return nil, unsupported("ORDER BY ... USING across shards is not supported", "use ASC or DESC")
		}
		var k plan.SortKey
		k.Desc, k.NullsFirst = sortDirection(sb)
		expr := sb.Node
		if cc := expr.GetCollateClause(); cc != nil {
			var parts []string
			for _, p := range cc.Collname {
				if str := p.GetString_(); str != nil {
					parts = append(parts, str.Sval)
				}
			}
			k.Collation = strings.Join(parts, ".")
			expr = cc.Arg
		}
		c, ok, err := mb.column(expr, true, "ORDER BY")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, unsupported("ORDER BY of a "+opName+" across shards must name an output column or its position", "")
		}
		k.Column = c.j
		m.keys = append(m.keys, k)
	}
	if distinct {
		m.distinct = &plan.Distinct{}
	}
	if sel.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil, unsupported("FETCH FIRST ... WITH TIES across shards is not supported yet", "use FETCH FIRST ... ROWS ONLY or LIMIT")
	}
	lim, err := limitOf(sel)
	if err != nil {
		return nil, err
	}
	if counting {
		// The shards send every row of every part, tagged, unordered.
		m.setop = tagParts(sel, mb.replicated)
		m.limit, m.hidden, m.distinct = lim, 1, nil
		sel.SortClause = nil
		dropLimit(sel, lim)
		return m, nil
	}
	if lim != nil {
		m.limit = lim
		mb.pushLimit(lim)
	}
	if len(m.keys) == 0 && m.distinct == nil && m.limit == nil {
		return &mergeTmpl{none: true}, nil
	}
	return m, nil
}

// tagParts turns sel, a tree of set operations over SELECTs (its parts),
// into the UNION ALL of the parts the shards run for plan.SetOp: every row
// of part i (1-based, left to right) gets a last column i (a VALUES part
// is read through a subquery to get it). replicated are the parts that
// read no distributed table. It returns the SetOp.
func tagParts(sel *pg_query.SelectStmt, replicated []int) *plan.SetOp {
	var parts []*pg_query.SelectStmt
	var tree func(s *pg_query.SelectStmt) *plan.SetNode
	tree = func(s *pg_query.SelectStmt) *plan.SetNode {
		if s.Op == pg_query.SetOperation_SETOP_NONE {
			parts = append(parts, s)
			return &plan.SetNode{Part: len(parts)}
		}
		n := &plan.SetNode{Op: strings.TrimPrefix(s.Op.String(), "SETOP_"), All: s.All}
		n.Left = tree(s.Larg)
		n.Right = tree(s.Rarg)
		return n
	}
	root := tree(sel)
	for i, part := range parts {
		tag := pg_query.MakeResTargetNodeWithVal(pg_query.MakeAConstIntNode(int64(i+1), -1), -1)
		if len(part.ValuesLists) == 0 {
			part.TargetList = append(part.TargetList, tag)
			continue
		}
		parts[i] = &pg_query.SelectStmt{
			TargetList: []*pg_query.Node{pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeAStarNode()}, -1), -1), tag},
			FromClause: []*pg_query.Node{{Node: &pg_query.Node_RangeSubselect{RangeSubselect: &pg_query.RangeSubselect{
				Subquery: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: part}},
				Alias:    &pg_query.Alias{Aliasname: fmt.Sprintf("shardproxy_part%d", i+1)},
			}}}},
			Op:          pg_query.SetOperation_SETOP_NONE,
			LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
		}
	}
	// sel keeps its WITH, ORDER BY and LIMIT; its parts become one
	// left-deep UNION ALL.
	left := parts[0]
	for _, p := range parts[1 : len(parts)-1] {
		left = &pg_query.SelectStmt{Op: pg_query.SetOperation_SETOP_UNION, All: true, Larg: left, Rarg: p,
			LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT}
	}
	sel.Op, sel.All, sel.Larg, sel.Rarg = pg_query.SetOperation_SETOP_UNION, true, left, parts[len(parts)-1]
	return &plan.SetOp{Root: root, Parts: len(parts), Replicated: replicated}
}

// shardUnion reports whether the shards can run sel's set operations
// themselves — a UNION/UNION ALL tree with no UNION below a UNION ALL (the
// proxy's final duplicate removal covers UNIONs below a UNION) — and
// whether duplicates must then be removed.
func shardUnion(sel *pg_query.SelectStmt) (distinct, ok bool) {
	switch sel.Op {
	case pg_query.SetOperation_SETOP_NONE:
		return false, true
	case pg_query.SetOperation_SETOP_UNION:
	default:
		return false, false
	}
	distinct = !sel.All
	for _, arm := range []*pg_query.SelectStmt{sel.Larg, sel.Rarg} {
		d, ok := shardUnion(arm)
		if !ok || (d && !distinct) { // UNION inside UNION ALL: the shards would deduplicate too little
			return false, false
		}
	}
	return distinct, true
}

// limitOf reads LIMIT/OFFSET (and FETCH FIRST): constants or $n.
func limitOf(sel *pg_query.SelectStmt) (*limitSpec, error) {
	if sel.LimitCount == nil && sel.LimitOffset == nil {
		return nil, nil
	}
	l := &limitSpec{count: -1, countParam: -1, offsetParam: -1}
	read := func(n *pg_query.Node, what string) (int64, int, bool, error) {
		if n == nil {
			return 0, -1, true, nil
		}
		v := valueOf(n)
		switch v.kind {
		case vNull:
			return 0, -1, true, nil
		case vParam:
			return 0, v.param, false, nil
		case vConst:
			x, err := strconv.ParseInt(v.text, 10, 64)
			if err == nil {
				return x, -1, false, nil
			}
			if f, ferr := strconv.ParseFloat(v.text, 64); ferr == nil && f == math.Round(f) && !v.str {
				return int64(f), -1, false, nil
			}
		}
		return 0, -1, false, unsupported(what+" with an expression across shards is not supported", "use a constant or a parameter")
	}
	c, cp, cnull, err := read(sel.LimitCount, "LIMIT")
	if err != nil {
		return nil, err
	}
	o, op, _, err := read(sel.LimitOffset, "OFFSET")
	if err != nil {
		return nil, err
	}
	if !cnull {
		l.count = c
	}
	l.countParam, l.offset, l.offsetParam = cp, o, op
	if cp < 0 && !cnull && c < 0 {
		return nil, &plan.Error{Code: "2201W", Message: "LIMIT must not be negative"}
	}
	if op < 0 && o < 0 {
		return nil, &plan.Error{Code: "2201X", Message: "OFFSET must not be negative"}
	}
	return l, nil
}

// pushLimit makes the shards' statement return at most count+offset rows
// and no offset.
// pushLimit asks the shards for at most LIMIT + OFFSET rows, one more when
// a window's lead() reads past the last row sent.
func (mb *mergeBuilder) pushLimit(lim *limitSpec) {
	sel := mb.sel
	switch {
	case !mb.oneMore:
		pushLimit(sel, lim)
	case lim.countParam < 0 && lim.offsetParam < 0:
		more := *lim
		more.offset++
		pushLimit(sel, &more)
	default:
		pushLimit(sel, lim) // the parameters stay in the statement: LIMIT (…) + 1
		if sel.LimitCount != nil {
			sel.LimitCount = pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_OP, []*pg_query.Node{pg_query.MakeStrNode("+")},
				sel.LimitCount, pg_query.MakeAConstIntNode(1, -1), -1)
		}
	}
}

// dropLimit takes LIMIT and OFFSET out of the shards' statement (the proxy
// applies l). Their parameters stay referenced, typed bigint as
// PostgreSQL types them there, in clauses that never limit —
// LIMIT NULLIF($n, $n) is LIMIT NULL (no limit), OFFSET NULLIF($m, $m)
// is OFFSET 0 — so a shard can still type every parameter of the Bind.
func dropLimit(sel *pg_query.SelectStmt, l *limitSpec) {
	sel.LimitCount, sel.LimitOffset, sel.LimitOption = nil, nil, pg_query.LimitOption_LIMIT_OPTION_DEFAULT
	if l == nil {
		return
	}
	never := func(p int) *pg_query.Node {
		return pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_NULLIF, []*pg_query.Node{pg_query.MakeStrNode("=")}, int8Param(p), int8Param(p), -1)
	}
	if l.countParam >= 0 {
		sel.LimitCount, sel.LimitOption = never(l.countParam), pg_query.LimitOption_LIMIT_OPTION_COUNT
	}
	if l.offsetParam >= 0 {
		sel.LimitOffset = never(l.offsetParam)
	}
}

// int8Param is the statement parameter with 0-based index p as bigint:
// $n::pg_catalog.int8 (the type PostgreSQL gives LIMIT and OFFSET).
func int8Param(p int) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg:      pg_query.MakeParamRefNode(int32(p+1), -1),
		TypeName: &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode("int8")}, Typemod: -1, Location: -1},
		Location: -1}}}
}

func pushLimit(sel *pg_query.SelectStmt, l *limitSpec) {
	sel.LimitOffset = nil
	sel.LimitOption = pg_query.LimitOption_LIMIT_OPTION_COUNT
	switch {
	case l.count < 0 && l.countParam < 0:
		sel.LimitCount = nil
		sel.LimitOption = pg_query.LimitOption_LIMIT_OPTION_DEFAULT
	case l.countParam < 0 && l.offsetParam < 0:
		if l.count > math.MaxInt64-l.offset {
			sel.LimitCount = nil
			sel.LimitOption = pg_query.LimitOption_LIMIT_OPTION_DEFAULT
			return
		}
		sel.LimitCount = pg_query.MakeAConstIntNode(l.count+l.offset, -1)
		if l.count+l.offset > math.MaxInt32 {
			sel.LimitCount = &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Fval{Fval: &pg_query.Float{Fval: strconv.FormatInt(l.count+l.offset, 10)}}, Location: -1}}}
		}
	default:
		term := func(v int64, p int) *pg_query.Node {
			if p < 0 {
				return pg_query.MakeAConstIntNode(v, -1)
			}
			return int8Param(p)
		}
		if l.offset == 0 && l.offsetParam < 0 {
			sel.LimitCount = term(l.count, l.countParam)
			return
		}
		sel.LimitCount = pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_OP, []*pg_query.Node{pg_query.MakeStrNode("+")},
			term(l.count, l.countParam), term(l.offset, l.offsetParam), -1)
	}
}

func isStar(n *pg_query.Node) bool {
	cr := n.GetColumnRef()
	if cr == nil || len(cr.Fields) == 0 {
		return false
	}
	return cr.Fields[len(cr.Fields)-1].GetAStar() != nil
}

func isIntConst(n *pg_query.Node) bool {
	if c := n.GetAConst(); c != nil {
		_, ok := c.Val.(*pg_query.A_Const_Ival)
		return ok
	}
	return false
}

// containsAgg reports an aggregate call in n outside sublinks.
func containsAgg(n *pg_query.Node) bool {
	found := false
	walkExpr(n, func(c *pg_query.Node) bool {
		if found || c.GetSubLink() != nil || c.GetSelectStmt() != nil {
			return false
		}
		if fc := c.GetFuncCall(); fc != nil && isAggCall(fc) {
			found = true
			return false
		}
		return true
	})
	return found
}

// windowExpr reports whether n is an expression over window calls the
// proxy can compute (rankingCall), with no subquery, and no window call
// inside another's arguments (aggregates are for window.go to judge).
func windowExpr(n *pg_query.Node) bool {
	ok, calls := true, 0
	walkExpr(n, func(c *pg_query.Node) bool {
		if !ok {
			return false
		}
		if c.GetSubLink() != nil || c.GetSelectStmt() != nil {
			ok = false
			return false
		}
		if fc := c.GetFuncCall(); fc != nil {
			if fc.Over != nil {
				calls++
				if rankingCall(c) == nil {
					ok = false
				}
				for _, a := range fc.Args {
					if windowIn(a) != "" {
						ok = false
					}
				}
				return false
			}
		}
		return true
	})
	return ok && calls > 0
}

// aggOutsideWindows reports whether n calls an aggregate outside its
// window calls' arguments.
func aggOutsideWindows(n *pg_query.Node) bool {
	found := false
	walkExpr(n, func(c *pg_query.Node) bool {
		if found || c.GetSubLink() != nil || c.GetSelectStmt() != nil {
			return false
		}
		if fc := c.GetFuncCall(); fc != nil {
			if fc.Over != nil {
				return false
			}
			found = found || isAggCall(fc)
		}
		return !found
	})
	return found
}

// aggregates reports whether sel aggregates its rows: GROUP BY, HAVING, or
// an aggregate call outside window calls in the select list or ORDER BY.
func aggregates(sel *pg_query.SelectStmt) bool {
	if len(sel.GroupClause) > 0 || sel.HavingClause != nil {
		return true
	}
	for _, t := range sel.TargetList {
		if rt := t.GetResTarget(); rt != nil && aggOutsideWindows(rt.Val) {
			return true
		}
	}
	for _, s := range sel.SortClause {
		if sb := s.GetSortBy(); sb != nil && aggOutsideWindows(sb.Node) {
			return true
		}
	}
	return false
}

// countGroups rewrites count(*) OVER (…) in the select list of a statement
// that aggregates as count(count(*)) OVER (…): over groups both count the
// groups in the frame (a group's count(*) is never NULL), and the second
// is a running aggregate of an aggregate, which the proxy computes over
// its groups.
func countGroups(targets []*pg_query.Node) {
	for _, t := range targets {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		rt.Val = replaceNodes(rt.Val, func(n *pg_query.Node) *pg_query.Node {
			fc := n.GetFuncCall()
			if fc == nil || fc.Over == nil || !fc.AggStar || funcName(fc) != "count" || fc.AggFilter != nil || fc.AggDistinct {
				return nil
			}
			inner := &pg_query.FuncCall{Funcname: []*pg_query.Node{pg_query.MakeStrNode("count")}, AggStar: true, Location: -1}
			outer := proto.Clone(fc).(*pg_query.FuncCall)
			outer.AggStar = false
			outer.Args = []*pg_query.Node{{Node: &pg_query.Node_FuncCall{FuncCall: inner}}}
			return &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: outer}}
		})
	}
}

// windowIn returns the name of a window function call in n (outside
// sublinks), "" if none.
func windowIn(n *pg_query.Node) string {
	name := ""
	walkExpr(n, func(c *pg_query.Node) bool {
		if name != "" || c.GetSubLink() != nil || c.GetSelectStmt() != nil {
			return false
		}
		if fc := c.GetFuncCall(); fc != nil && fc.Over != nil {
			name = funcName(fc)
			return false
		}
		return true
	})
	return name
}

// outputName is the column name PostgreSQL gives a select-list entry
// (FigureColname for the common cases), "" when it would be ?column?.
func outputName(rt *pg_query.ResTarget) string {
	if rt.Name != "" {
		return rt.Name
	}
	return figureName(rt.Val)
}

func figureName(n *pg_query.Node) string {
	switch x := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		f := x.ColumnRef.Fields
		if len(f) > 0 {
			if s := f[len(f)-1].GetString_(); s != nil {
				return s.Sval
			}
		}
	case *pg_query.Node_FuncCall:
		return funcName(x.FuncCall)
	case *pg_query.Node_TypeCast:
		if name := figureName(x.TypeCast.Arg); name != "" {
			return name
		}
		if tn := x.TypeCast.TypeName; tn != nil && len(tn.Names) > 0 {
			if s := tn.Names[len(tn.Names)-1].GetString_(); s != nil {
				return s.Sval
			}
		}
	case *pg_query.Node_CollateClause:
		return figureName(x.CollateClause.Arg)
	}
	return ""
}

func deparseFuncName(fc *pg_query.FuncCall) string {
	var parts []string
	for _, p := range fc.Funcname {
		if s := p.GetString_(); s != nil {
			parts = append(parts, s.Sval)
		}
	}
	return strings.Join(parts, ".")
}

// deparseExpr returns n as SQL text (comparable: equal expressions give
// equal text whatever their spacing or positions).
func deparseExpr(n *pg_query.Node) string {
	if n == nil {
		return ""
	}
	rt := &pg_query.Node{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Val: n}}}
	sel := &pg_query.SelectStmt{TargetList: []*pg_query.Node{rt}, Op: pg_query.SetOperation_SETOP_NONE, LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: parseTreeVersion(), Stmts: []*pg_query.RawStmt{{Stmt: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}}}})
	if err != nil {
		return fmt.Sprintf("%p", n) // equal only to itself
	}
	return strings.TrimPrefix(out, "SELECT ")
}

var treeVersion = sync.OnceValue(func() int32 {
	t, err := pg_query.Parse("SELECT 1")
	if err != nil {
		return 0
	}
	return t.Version
})

// parseTreeVersion is the protobuf tree version Deparse expects.
func parseTreeVersion() int32 { return treeVersion() }
