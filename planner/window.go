package planner

import (
	"math"
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// Windows across shards (plan.Window). row_number(), rank(),
// dense_rank(), lag(x [, n [, default]]), lead(x [, n [, default]]), first_value(x) and the running
// aggregates count, sum (integer, numeric), min and max over one window — a leaderboard, `rank() OVER
// (ORDER BY karma DESC)`, or per group, `rank() OVER (PARTITION BY level
// ORDER BY karma DESC)` — are computed by the proxy: the shards return
// their rows sorted by the window's PARTITION BY then ORDER BY with a NULL
// bigint where each ranking call was (x where a lag(x), lead(x) or
// first_value(x) was; same column name), the proxy merges the streams in that order and
// numbers the rows (or moves the x values along), starting again at each
// partition. When the statement's own ORDER BY is absent (the rows then
// come in the window's order) or that order, no second sort is needed and
// LIMIT still reaches the shards: every row ranked before one of the first
// n is itself among the first n of some shard. Any other ORDER BY sorts
// the numbered rows again in the proxy (plan.Sort above the Window), and
// LIMIT/OFFSET are applied there only; so are further windows: each one
// sorts the rows into its order (plan.Sort) and numbers them again. Over
// groups the proxy aggregates itself (GROUP BY not by the key) the
// numbering functions run after the Aggregate and HAVING, on the groups
// sorted into the window's order. lag, lead and the value functions of one
// aggregate call run over the groups too (the final aggregate moves along;
// a default as a hidden column the shards type), and so do running count,
// sum, avg, min and max of one count/sum/min/max call (running totals, the
// average group; the group's merged aggregate is their input,
// plan.WindowColumn.OfGroups), and count(*) OVER (…), which counts groups
// (countGroups). DISTINCT keeps the refusal; so do * with aggregates or
// with window calls inside expressions.

// rankingCall returns n's ranking function call when n is one, with no
// argument, FILTER or named window, and a window with ORDER BY; nil
// otherwise.
func rankingCall(n *pg_query.Node) *pg_query.FuncCall {
	fc := n.GetFuncCall()
	if fc == nil || fc.Over == nil || fc.AggFilter != nil || fc.AggDistinct || len(fc.AggOrder) > 0 || fc.AggWithinGroup {
		return nil
	}
	w := fc.Over
	if w.Name != "" || w.Refname != "" {
		return nil
	}
	switch funcName(fc) {
	case "row_number", "rank", "dense_rank":
		if len(fc.Args) > 0 || fc.AggStar {
			return nil
		}
	case "lag", "lead":
		// lag(x), lag(x, n) or lag(x, n, default) with n a positive
		// integer constant; lead likewise
		if len(fc.Args) < 1 || len(fc.Args) > 3 || fc.FuncVariadic || fc.AggStar || (len(fc.Args) >= 2 && nthOf(fc) < 1) {
			return nil
		}
	case "percent_rank", "cume_dist":
		if len(fc.Args) > 0 || fc.AggStar {
			return nil
		}
	case "ntile":
		if len(fc.Args) != 1 || fc.AggStar || intConstArg(fc, 0) < 1 {
			return nil
		}
	case "first_value", "last_value":
		if len(fc.Args) != 1 || fc.FuncVariadic || fc.AggStar || !fromPartitionStart(w.FrameOptions) {
			return nil
		}
	case "nth_value":
		if len(fc.Args) != 2 || fc.FuncVariadic || fc.AggStar || !fromPartitionStart(w.FrameOptions) || nthOf(fc) < 1 {
			return nil
		}
	case "count", "sum", "avg", "min", "max":
		// Running aggregates (or a partition's total, without ORDER BY;
		// OVER () is pulled out instead: pullout_window.go).
		// Over () only of an aggregate (sum(count(*)) OVER (), a share of
		// the total over the proxy's groups).
		if len(fc.Args)+boolInt(fc.AggStar) != 1 || fc.FuncVariadic || (!fromPartitionStart(w.FrameOptions) && slidingRows(w) == 0) ||
			(funcName(fc) != "count" && fc.AggStar) ||
			(len(w.PartitionClause)+len(w.OrderClause) == 0 && (fc.AggStar || fc.Args[0].GetFuncCall() == nil || !isAggCall(fc.Args[0].GetFuncCall()))) {
			return nil
		}
		return fc
	default:
		return nil
	}
	if len(w.OrderClause) == 0 {
		return nil
	}
	return fc
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// frameRows and frameRange are the frame options of `ROWS [BETWEEN]
// UNBOUNDED PRECEDING [AND CURRENT ROW]` and the RANGE forms (the
// default is windowFrameDefault): frames that run from the partition's
// start to the current row (ROWS) or to its last peer (RANGE).
var frameRows, frameRange = frameOptionsOf("ROWS UNBOUNDED PRECEDING", "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"),
	frameOptionsOf("RANGE UNBOUNDED PRECEDING", "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW")

// frameSliding are the frame options of `ROWS [BETWEEN] n PRECEDING [AND
// CURRENT ROW]` (the offset n is in the window's StartOffset): a moving
// aggregate over the row and the n rows before it.
var frameSliding = frameOptionsOf("ROWS 1 PRECEDING", "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW")

// maxFrameRows bounds n in ROWS n PRECEDING: the proxy aggregates each
// row's frame anew (as PostgreSQL does for aggregates without an inverse
// transition, such as sum(float8)), so its work per row grows with n.
const maxFrameRows = 10000

// slidingRows returns n+1 for a moving-aggregate window ROWS [BETWEEN] n
// PRECEDING [AND CURRENT ROW] with n an integer constant up to
// maxFrameRows, else 0.
func slidingRows(w *pg_query.WindowDef) int64 {
	if !frameSliding[w.FrameOptions] || w.StartOffset == nil {
		return 0
	}
	iv, ok := w.StartOffset.GetAConst().GetVal().(*pg_query.A_Const_Ival)
	if !ok {
		return 0
	}
	n := int64(0)
	if iv.Ival != nil {
		n = int64(iv.Ival.Ival)
	}
	if n < 0 || n > maxFrameRows {
		return 0
	}
	return n + 1
}

// rowsFrame reports whether w's frame ends at the row itself (ROWS),
// not at its last peer.
func rowsFrame(w *pg_query.WindowDef) bool {
	return frameRows[w.FrameOptions] || slidingRows(w) > 0
}

func frameOptionsOf(frames ...string) map[int32]bool {
	out := map[int32]bool{}
	for _, f := range frames {
		tree, err := pg_query.Parse("SELECT count(*) OVER (ORDER BY 1 " + f + ")")
		if err != nil {
			panic(err)
		}
		out[tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val.GetFuncCall().Over.FrameOptions] = true
	}
	return out
}

// fromPartitionStart reports whether a frame runs from the partition's
// start to the current row or its last peer.
func fromPartitionStart(opts int32) bool {
	return opts == windowFrameDefault || frameRows[opts] || frameRange[opts]
}

// windowOrder is the order a ranking call's rows must arrive in: its
// PARTITION BY expressions (ascending), then its ORDER BY.
func windowOrder(fc *pg_query.FuncCall) []*pg_query.Node {
	var out []*pg_query.Node
	for _, p := range fc.Over.PartitionClause {
		out = append(out, &pg_query.Node{Node: &pg_query.Node_SortBy{SortBy: &pg_query.SortBy{Node: proto.Clone(p).(*pg_query.Node), SortbyDir: pg_query.SortByDir_SORTBY_DEFAULT, SortbyNulls: pg_query.SortByNulls_SORTBY_NULLS_DEFAULT, Location: -1}}})
	}
	return append(out, fc.Over.OrderClause...)
}

// rankingWindows rewrites a SELECT whose select-list entries at positions
// ranking are ranking calls (see rankingCall) for the proxy to compute;
// exprs are entries with window calls inside expressions (evaluated after
// the windows); other is true when the statement aggregates (not grouped
// by the key): the windows then run over the proxy's groups.
func (mb *mergeBuilder) rankingWindows(ranking, exprs []int, other bool) (*mergeTmpl, error) {
	sel := mb.sel
	var slots []windowSlot
	for _, i := range ranking {
		slots = append(slots, windowSlot{col: i, rt: sel.TargetList[i].GetResTarget(), hidden: -1})
	}
	// Window calls inside expressions: each becomes a hidden column the
	// proxy computes, the expression is evaluated after the windows
	// (plan.Evaluate) with those values and the row's columns.
	var evalAt []int
	var evalOf []*pg_query.Node
	var evalCalls [][]windowSlot
	if mb.agg && !mb.star && len(exprs) > 0 {
		// Over the proxy's groups: the window calls become hidden columns
		// (their aggregate's partial, or a placeholder), the expressions
		// are evaluated by aggregate() after the windows (postWindow).
		mb.windowArgs, mb.postWindow = map[string]colIdx{}, map[int]bool{}
		for _, i := range exprs {
			rt := sel.TargetList[i].GetResTarget()
			if !groupWindowExpr(rt.Val) {
				return nil, unsupported("this expression over window functions and aggregates ("+deparseExpr(rt.Val)+") across shards is not supported",
					"use count, sum, avg, min or max (not the variance family) around the window calls and count, sum, min or max inside them, or compute it in the application")
			}
			mb.postWindow[i] = true
			var fail error
			walkExpr(rt.Val, func(c *pg_query.Node) bool {
				fc := c.GetFuncCall()
				if fc == nil || fc.Over == nil || fail != nil {
					return fail == nil
				}
				k := deparseExpr(c)
				if _, ok := mb.windowArgs[k]; ok {
					return false
				}
				col := plan.AggColumn{Func: plan.AggAny, Arg: -1, Name: funcName(fc)}
				val := proto.Clone(c).(*pg_query.Node)
				if len(fc.Args) > 0 && !isWindowAggregate(funcName(fc)) { // lag(count(*)) and the like: the aggregate's partial
					pc, extra, err := mb.partial(proto.Clone(fc.Args[0].GetFuncCall()).(*pg_query.FuncCall), funcName(fc))
					if err != nil || extra.hiddenArg != nil || len(extra.moreKeys) > 0 {
						fail = unsupported("window function "+funcName(fc)+"() of "+deparseExpr(fc.Args[0])+" inside an expression across shards is not supported", "use count, sum, min or max")
						return false
					}
					col = pc
				}
				j := mb.addHidden(val, col)
				mb.windowArgs[k] = colIdx{hidden: true, j: j}
				slots = append(slots, windowSlot{col: encodeCol(colIdx{hidden: true, j: j}), hidden: j})
				return false
			})
			if fail != nil {
				return nil, fail
			}
		}
		exprs = nil
	}
	for _, i := range exprs {
		rt := sel.TargetList[i].GetResTarget()
		if aggOutsideWindows(rt.Val) { // aggregates over the key's groups beside windows: not evaluated
			return nil, unsupported("window function "+windowIn(rt.Val)+"() inside an expression with aggregates across shards is supported only when the proxy aggregates the groups", "compute it in the application, or select the parts separately")
		}
		evalAt, evalOf = append(evalAt, i), append(evalOf, proto.Clone(rt.Val).(*pg_query.Node))
		var calls []windowSlot
		walkExpr(rt.Val, func(c *pg_query.Node) bool {
			if fc := c.GetFuncCall(); fc != nil && fc.Over != nil {
				j := mb.addHidden(proto.Clone(c).(*pg_query.Node), plan.AggColumn{})
				calls = append(calls, windowSlot{col: encodeCol(colIdx{hidden: true, j: j}), hidden: j})
				return false
			}
			return true
		})
		slots = append(slots, calls...)
		evalCalls = append(evalCalls, calls)
	}
	name := funcName(slots[0].call(mb))
	starAfter := func(i int) bool { // a * after entry i: its place from the row's end is unknown
		for _, t := range sel.TargetList[i+1:] {
			if rt := t.GetResTarget(); rt != nil && isStar(rt.Val) {
				return true
			}
		}
		return false
	}
	refuse := func() (*mergeTmpl, error) {
		return nil, unsupported("window function "+name+"() across shards is supported only in the select list (on its own, or inside an expression without aggregates or subqueries), without DISTINCT or a window function call in ORDER BY (beside *: one window, the statement in its order, no expression), and over groups the proxy aggregates (GROUP BY not by the distribution key) only on its own: row_number, rank, dense_rank, ntile, percent_rank, cume_dist, or lag, lead, first_value, last_value, nth_value of one aggregate call",
			"partition the window by the distribution key and add a key condition, or compute it in the application")
	}
	// Aggregated in the proxy (GROUP BY not by the key): the window runs
	// over the final groups, after the Aggregate (and HAVING), sorted into
	// its order there. The numbering functions, and the value functions
	// of one aggregate call (its final values move along).
	grouped := mb.agg && !mb.star
	if (other && !grouped) || len(sel.DistinctClause) > 0 || (mb.star && (mb.agg || len(exprs) > 0)) {
		return refuse()
	}
	for _, i := range ranking {
		if mb.star && i > mb.starAt && starAfter(i) {
			return refuse()
		}
	}
	if grouped {
		for _, sl := range slots {
			call := sl.call(mb)
			switch funcName(call) {
			case "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile":
			case "lag", "lead", "first_value", "last_value", "nth_value":
				// Of one aggregate call (lag(count(*)) OVER (ORDER BY
				// month)): the proxy's final aggregate moves along.
				if call.Args[0].GetFuncCall() == nil || !isAggCall(call.Args[0].GetFuncCall()) {
					return refuse()
				}
			case "count", "sum", "avg", "min", "max":
				// A running aggregate of one count/sum/min/max (running
				// totals: sum(count(*)) OVER (ORDER BY month), the average
				// group: avg(count(*)) OVER ()): over the groups' merged
				// aggregates (plan.WindowColumn.OfGroups).
				if !ofSimpleAgg(call) {
					return refuse()
				}
			default:
				return refuse()
			}
		}
	}
	// The calls grouped by window (PARTITION BY and ORDER BY), in the
	// order of their first call: the shards send the first window's
	// order, every further window sorts the rows again in the proxy.
	type stage struct {
		order     []*pg_query.Node
		partition int
		calls     []windowSlot
	}
	var stages []*stage
	byWindow := map[string]*stage{}
	for _, i := range slots {
		fc := i.call(mb)
		order := windowOrder(fc)
		k := deparseSortList(order) + "|" + strconv.Itoa(len(fc.Over.PartitionClause))
		st := byWindow[k]
		if st == nil {
			st = &stage{order: order, partition: len(fc.Over.PartitionClause)}
			byWindow[k] = st
			stages = append(stages, st)
		}
		st.calls = append(st.calls, i)
	}
	// A window whose calls need its whole partition (ntile, percent_rank,
	// cume_dist, lead(x, n > 1)) and calls that run over peer groups
	// (running aggregates, last_value, nth_value) is computed in two
	// passes: the second sorts by the same keys, and the sort is stable,
	// so both see the rows in the same order.
	var split []*stage
	for _, st := range stages {
		var whole, rest []windowSlot
		peers := false
		for _, sl := range st.calls {
			call := sl.call(mb)
			if needsPartition(call) {
				whole = append(whole, sl)
				continue
			}
			rest = append(rest, sl)
			peers = peers || overPeers(call)
		}
		if len(whole) == 0 || !peers {
			split = append(split, st)
			continue
		}
		split = append(split, &stage{order: st.order, partition: st.partition, calls: whole},
			&stage{order: st.order, partition: st.partition, calls: rest})
	}
	stages = split
	// A window's ORDER BY becomes a sort list planned as the statement's,
	// where a number is a position and a bare name an output column
	// first: neither may change what it names.
	aliases := map[string]bool{}
	for _, t := range sel.TargetList {
		if rt := t.GetResTarget(); rt != nil && rt.Name != "" {
			aliases[rt.Name] = true
		}
	}
	for _, st := range stages {
		for _, o := range st.order {
			k := o.GetSortBy().GetNode()
			if isIntConst(k) {
				return refuse()
			}
			if cr := k.GetColumnRef(); cr != nil && len(cr.Fields) == 1 && cr.Fields[0].GetString_() != nil && aliases[cr.Fields[0].GetString_().Sval] {
				return refuse()
			}
		}
	}
	order := stages[0].order
	want := deparseSortList(order)
	switch {
	case len(sel.SortClause) == 0:
		for _, o := range order {
			sel.SortClause = append(sel.SortClause, proto.Clone(o).(*pg_query.Node))
		}
	case deparseSortList(sel.SortClause) != want || len(stages) > 1:
		// Another order (or more windows after the first): the shards send
		// the first window's, the proxy sorts the numbered rows again. A
		// key may name a window column (by alias or position) but not
		// call a window function itself: the shards would compute it over
		// their own rows.
		for _, s := range sel.SortClause {
			if sb := s.GetSortBy(); sb == nil || windowIn(sb.Node) != "" {
				return refuse()
			}
		}
		mb.finalOrder = sel.SortClause
		sel.SortClause = nil
		for _, o := range order {
			sel.SortClause = append(sel.SortClause, proto.Clone(o).(*pg_query.Node))
		}
	}
	// LIMIT can reach the shards only when every call depends on the rows
	// before it (and lead(x) on one row after: oneMore); a call over the
	// row's peers or its whole partition needs rows past the limit.
	for _, sl := range slots {
		call := sl.call(mb)
		mb.limitInProxy = mb.limitInProxy || needsPartition(call) || (overPeers(call) && !rowsFrame(call.Over))
	}
	if mb.star && (mb.finalOrder != nil || len(stages) > 1) {
		// A later sort could name an output column after the * (by alias),
		// whose place in the row is not known here.
		return refuse()
	}
	for _, st := range stages[1:] {
		mb.windowOrders = append(mb.windowOrders, st.order)
	}
	var windows [][]plan.WindowColumn
	for _, st := range stages {
		cols, err := mb.windowColumns(st.calls)
		if err != nil {
			return nil, err
		}
		windows = append(windows, cols)
	}
	for _, cols := range windows {
		for _, c := range cols {
			mb.oneMore = mb.oneMore || c.Func == "lead"
		}
	}
	for k, i := range evalAt {
		if err := mb.evalWindowTarget(i, evalOf[k], evalCalls[k]); err != nil {
			return nil, err
		}
	}
	build := mb.plain
	if grouped {
		build = mb.aggregate
	}
	m, err := build()
	if err != nil {
		return nil, err
	}
	if m.none || (len(m.keys) == 0 && !(grouped && len(stages[0].order) == 0)) {
		return refuse()
	}
	for k, st := range stages {
		keys := m.keys
		if k > 0 {
			keys = m.windowKeys[k-1]
		}
		if st.partition > len(keys) {
			return refuse()
		}
		cols := windows[k]
		for c := range cols {
			cols[c].Column = mb.resolveTarget(cols[c].Column)
			if cols[c].Func == "avg" || cols[c].Default || cols[c].OfGroups {
				cols[c].Arg = mb.resolve(colIdxOf(cols[c].Arg))
			}
		}
		if k == 0 {
			m.window, m.windowPartition = cols, st.partition
			continue
		}
		m.moreWindows = append(m.moreWindows, plan.Window{Keys: keys, Partition: st.partition, Columns: cols})
	}
	if !grouped { // over groups aggregate() sets evalAfter
		m.evalAfter = mb.resolveEval()
	}
	return m, nil
}

// evalWindowTarget makes select-list entry i, an expression n over window
// calls (already hidden columns: calls, in walk order) and the row's
// columns, an evaluated column: the shards send a probe with its name and
// type, Evaluate computes it after the windows from the window values and
// the columns it reads (hidden columns too).
func (mb *mergeBuilder) evalWindowTarget(i int, n *pg_query.Node, calls []windowSlot) error {
	rt := mb.sel.TargetList[i].GetResTarget()
	cp := proto.Clone(n).(*pg_query.Node)
	cols := map[string]colIdx{}
	var fail error
	walkExpr(cp, func(c *pg_query.Node) bool {
		if fail != nil {
			return false
		}
		switch x := c.Node.(type) {
		case *pg_query.Node_SubLink, *pg_query.Node_SelectStmt:
			fail = unsupported("a subquery inside an expression with window functions across shards is not supported", "select the subquery's value separately")
			return false
		case *pg_query.Node_FuncCall:
			if x.FuncCall.Over != nil {
				sl := calls[0]
				calls = calls[1:]
				c.Node = mb.evalArg(colIdx{hidden: true, j: sl.hidden}).Node
				return false
			}
		case *pg_query.Node_ParamRef:
			mb.evalParam(x.ParamRef)
			return false
		case *pg_query.Node_ColumnRef:
			k := deparseExpr(c)
			ci, ok := cols[k]
			if !ok {
				ci = colIdx{hidden: true, j: mb.addHidden(proto.Clone(c).(*pg_query.Node), plan.AggColumn{})}
				cols[k] = ci
			}
			c.Node = mb.evalArg(ci).Node
			return false
		}
		return true
	})
	if fail != nil {
		return fail
	}
	if rt.Name == "" {
		rt.Name = pgColumnName(n)
	}
	rt.Val = probe(n)
	ev := mb.evalState()
	ev.cols = append(ev.cols, plan.EvalColumn{Column: encodeCol(colIdx{j: i}), Expr: deparseExpr(cp)})
	return nil
}

// resolveTarget resolves an encoded column like resolve, where a
// select-list entry after a * counts from the end of the row (the width
// of * is the shards').
func (mb *mergeBuilder) resolveTarget(enc int) int {
	if enc >= 0 && mb.star && enc > mb.starAt {
		return -((mb.visible - enc) + len(mb.hidden))
	}
	return mb.resolve(colIdxOf(enc))
}

// needsPartition reports whether a window call reads its whole partition
// (the executor buffers it): ntile, percent_rank, cume_dist, lead(x, n > 1).
func needsPartition(call *pg_query.FuncCall) bool {
	switch fn := funcName(call); fn {
	case "ntile", "percent_rank", "cume_dist":
		return true
	case "lead":
		return nthOf(call) > 1
	}
	return false
}

// overPeers reports whether a window call's value runs to the row's last
// peer (with a RANGE frame): the running aggregates, last_value, nth_value.
func overPeers(call *pg_query.FuncCall) bool {
	switch funcName(call) {
	case "count", "sum", "avg", "min", "max", "last_value", "nth_value":
		return true
	}
	return false
}

// groupWindowExpr reports whether n, an expression over window calls in a
// statement the proxy aggregates, is one it can evaluate after the
// windows: its aggregates (outside and inside the window calls) are
// count, sum, min or max (no DISTINCT, FILTER or ORDER BY), each window
// call is a numbering function or a value function of one such aggregate
// without a default.
func groupWindowExpr(n *pg_query.Node) bool {
	ok := true
	walkExpr(n, func(c *pg_query.Node) bool {
		if !ok {
			return false
		}
		fc := c.GetFuncCall()
		switch {
		case c.GetSubLink() != nil || c.GetSelectStmt() != nil:
			ok = false
		case fc != nil && fc.Over != nil:
			switch funcName(fc) {
			case "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile":
			case "lag", "lead", "first_value", "last_value", "nth_value":
				a := fc.Args[0].GetFuncCall()
				ok = len(fc.Args) < 3 && a != nil && simpleAggCall(a)
			case "count", "sum", "avg", "min", "max": // running totals, shares of the total, the average group
				ok = ofSimpleAgg(fc)
			default:
				ok = false
			}
			return false
		case fc != nil && isAggCall(fc):
			ok = simpleAggCall(fc)
			return false
		}
		return ok
	})
	return ok
}

// windowSlot is one window call the proxy computes: a select-list entry
// of its own (rt), or a hidden column (hidden ≥ 0) standing for a call
// inside an evaluated expression. col is its encoded column (encodeCol).
type windowSlot struct {
	col    int
	rt     *pg_query.ResTarget
	hidden int
}

func (sl windowSlot) call(mb *mergeBuilder) *pg_query.FuncCall {
	if sl.rt != nil {
		return rankingCall(sl.rt.Val)
	}
	return rankingCall(mb.hidden[sl.hidden])
}

func (sl windowSlot) set(mb *mergeBuilder, n *pg_query.Node) {
	if sl.rt != nil {
		sl.rt.Val = n
		return
	}
	mb.hidden[sl.hidden] = n
}

// windowColumns rewrites the window calls (of one window) into what the
// shards send for the proxy to compute them, and returns the window's
// columns (Column, avg's sum and lag's/lead's default as encoded columns,
// resolved by the caller).
func (mb *mergeBuilder) windowColumns(calls []windowSlot) ([]plan.WindowColumn, error) {
	var cols []plan.WindowColumn
	for _, sl := range calls {
		call := sl.call(mb)
		fn := funcName(call)
		if sl.rt != nil && sl.rt.Name == "" {
			sl.rt.Name = fn
		}
		var val *pg_query.Node
		arg, ofGroups := 0, false // WindowColumn.Arg: lag's default or the groups' aggregate
		switch {
		case isWindowAggregate(fn) && mb.agg:
			// Over the proxy's groups: the group's aggregate as a hidden
			// partial the Aggregate merges; the column itself is a probe
			// typed as the window call's result.
			c, err := mb.aggExprCol(proto.Clone(call.Args[0]).(*pg_query.Node), "window function "+fn+"()")
			if err != nil {
				return nil, err
			}
			// The probe's window is OVER (): its PARTITION BY / ORDER BY may
			// name GROUP BY expressions, which a scalar subquery cannot,
			// and the result's type does not depend on them.
			typed := proto.Clone(call).(*pg_query.FuncCall)
			typed.Over = &pg_query.WindowDef{FrameOptions: windowFrameDefault, Location: -1}
			val = probe(&pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: typed}})
			arg, ofGroups = encodeCol(c), true
		case isWindowAggregate(fn):
			// Each row's own aggregate, typed as the aggregate's result;
			// the proxy combines them along the window.
			val = overCurrentRow(call)
		case len(call.Args) == 3 && mb.agg:
			// lag(agg, n, d) over the proxy's groups: the aggregate itself,
			// combined by the Aggregate, moves along; the default, typed as
			// the result by each shard (lag(agg, <more rows than any shard
			// has>, d)), is a hidden column of any of a group's rows. The
			// merge refuses a default whose type is not the aggregate's.
			val = proto.Clone(call.Args[0]).(*pg_query.Node)
			arg = encodeCol(colIdx{hidden: true, j: mb.addHidden(lagWithDefault(call, math.MaxInt32), plan.AggColumn{Func: plan.AggAny, Arg: -1, Name: fn})})
		case len(call.Args) == 3:
			// lag(x, n, d), lead(x, n, d): the result's type is the common
			// type of x and d. lag(x, 0, d) is each row's x in that type;
			// lag(x, <more rows than any shard has>, d) its default in that
			// type, as a hidden column the proxy takes where no row is n
			// away.
			val = lagWithDefault(call, 0)
			arg = encodeCol(colIdx{hidden: true, j: mb.addHidden(lagWithDefault(call, math.MaxInt32), plan.AggColumn{})})
		case len(call.Args) >= 1 && mb.agg:
			// Over the proxy's groups: the aggregate itself, combined by
			// the Aggregate; the Window moves its final values along.
			val = proto.Clone(call.Args[0]).(*pg_query.Node)
		case len(call.Args) >= 1:
			// lag, lead, first_value, last_value, nth_value: the shards
			// return the argument, the proxy moves values along. As a
			// window function's result, so its type has no modifier, like
			// lag's.
			val = overCurrentRow(&pg_query.FuncCall{Funcname: []*pg_query.Node{pg_query.MakeStrNode("first_value")}, Args: call.Args[:1]})
		case fn == "ntile":
			val = nullOf("int4")
		case fn == "percent_rank" || fn == "cume_dist":
			val = nullOf("float8")
		default:
			val = nullOf("int8")
		}
		sl.set(mb, val)
		n := nthOf(call)
		if fn == "ntile" {
			n = intConstArg(call, 0)
		}
		col := plan.WindowColumn{Column: sl.col, Func: fn, Rows: rowsFrame(call.Over), FrameRows: slidingRows(call.Over), N: n, Arg: arg, Default: len(call.Args) == 3, OfGroups: ofGroups}
		if fn == "avg" && !ofGroups {
			// avg(x) over the row itself types the column; the exact sum(x)
			// beside it (hidden) is what the proxy accumulates.
			sum := proto.Clone(call).(*pg_query.FuncCall)
			sum.Funcname = []*pg_query.Node{pg_query.MakeStrNode("sum")}
			col.Arg = encodeCol(colIdx{hidden: true, j: mb.addHidden(overCurrentRow(sum), plan.AggColumn{})})
		}
		cols = append(cols, col)
	}
	return cols, nil
}

// ofSimpleAgg reports whether window call fc has one argument, a
// simpleAggCall (sum(count(*)) OVER (…)).
func ofSimpleAgg(fc *pg_query.FuncCall) bool {
	return len(fc.Args) == 1 && fc.Args[0].GetFuncCall() != nil && simpleAggCall(fc.Args[0].GetFuncCall())
}

// lagWithDefault is lag(x, offset, d) of call (lag or lead(x, n, d)) over
// the row itself: x in the common type of x and d, or with an offset past
// every row, d in that type.
func lagWithDefault(call *pg_query.FuncCall, offset int) *pg_query.Node {
	return overCurrentRow(&pg_query.FuncCall{Funcname: []*pg_query.Node{pg_query.MakeStrNode("lag")},
		Args: []*pg_query.Node{call.Args[0], pg_query.MakeAConstIntNode(int64(offset), -1), call.Args[2]}})
}

// simpleAggCall reports whether fc is count, sum, min or max without
// DISTINCT, FILTER or ORDER BY (a group's value the merge combines).
func simpleAggCall(fc *pg_query.FuncCall) bool {
	switch funcName(fc) {
	case "count", "sum", "min", "max":
		return fc.Over == nil && !fc.AggDistinct && fc.AggFilter == nil && len(fc.AggOrder) == 0 && !fc.AggWithinGroup
	}
	return false
}

// deparseSortList is the text of an ORDER BY list, for comparing two.
func deparseSortList(items []*pg_query.Node) string {
	s := ""
	for _, it := range items {
		sb := it.GetSortBy()
		if sb == nil {
			return "?"
		}
		s += deparseExpr(sb.Node) + " " + sb.SortbyDir.String() + " " + sb.SortbyNulls.String() + ","
	}
	return s
}

// nullOf is the expression NULL::pg_catalog.typ.
func nullOf(typ string) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg:      &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true}}},
		TypeName: &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(typ)}, Typemod: -1},
	}}}
}

// intConstArg is fc's i-th argument when it is an integer constant, else 0.
func intConstArg(fc *pg_query.FuncCall, i int) int64 {
	if iv, ok := fc.Args[i].GetAConst().GetVal().(*pg_query.A_Const_Ival); ok && iv.Ival != nil {
		return int64(iv.Ival.Ival)
	}
	return 0
}

func isWindowAggregate(fn string) bool {
	return fn == "count" || fn == "sum" || fn == "avg" || fn == "min" || fn == "max"
}

// overCurrentRow is call over the frame of the current row alone: `f(x)
// OVER (ROWS BETWEEN CURRENT ROW AND CURRENT ROW)`, the row's own value
// of f, typed as f's result.
func overCurrentRow(call *pg_query.FuncCall) *pg_query.Node {
	tree, err := pg_query.Parse("SELECT count(*) OVER (ROWS BETWEEN CURRENT ROW AND CURRENT ROW)")
	if err != nil {
		panic(err)
	}
	fc := proto.Clone(call).(*pg_query.FuncCall)
	fc.Over = tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val.GetFuncCall().Over
	return &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: fc}}
}

// nthOf is the position argument of nth_value(x, n), lag(x, n) or
// lead(x, n) when it is an integer constant (lag(x), lead(x): 1), else 0.
func nthOf(fc *pg_query.FuncCall) int64 {
	switch fn := funcName(fc); {
	case (fn == "lag" || fn == "lead") && len(fc.Args) == 1:
		return 1
	case fn == "nth_value" && len(fc.Args) == 2, (fn == "lag" || fn == "lead") && (len(fc.Args) == 2 || len(fc.Args) == 3):
	default:
		return 0
	}
	return intConstArg(fc, 1)
}
