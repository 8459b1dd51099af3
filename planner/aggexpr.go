package planner

import (
	"fmt"
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// Expressions over aggregates across shards (plan.Evaluate). A select-list
// entry, ORDER BY key, DISTINCT ON item or HAVING condition that contains
// aggregates but is not one plain aggregate call — `round(avg(x), 1)`,
// `count(*) + 1`, `sum(a) / sum(b)`, and the variance family, whose final
// step is a formula — is computed by PostgreSQL after the merge:
//
//   - every aggregate call in it becomes a partial column of its own (as
//     if it were selected; equal calls share one), every GROUP BY
//     expression in it a group-key column;
//   - its column in the shards' select list is a probe, `(SELECT expr
//     WHERE false HAVING false)`: never evaluated (so no spurious
//     division by zero on a shard's partial values), but described by the
//     shards with exactly the name, type and type modifier one server
//     gives expr;
//   - Evaluate (above the Aggregate) runs expr with the merged values in
//     place of the aggregates and group keys, batch by batch, on a
//     connection of the statement.
//
// stddev/variance/var_samp/var_pop/stddev_samp/stddev_pop of integer and
// numeric arguments: the shards return count(x), sum(x) and
// sum(x::numeric * x::numeric); the formula is numeric_stddev_internal's
// (N·Σx² − (Σx)²) / (N·(N−1)) or N², in numeric with numeric division's
// scale, 0 when the numerator is not positive, NaN for NaN or infinite
// inputs; the square root is an exact integer square root at one digit
// more than the variance's scale, rounded half away from zero, which is
// what sqrt_var does. Float arguments are refused by the executor (their
// float accumulation order cannot be reproduced).
//
// percentile_cont and percentile_disc (constant fraction) WITHIN GROUP
// (ORDER BY x): the shards return array_agg(x) and PostgreSQL runs the
// same call over the merged array (percentileRef).
//
// Not evaluated (0A000): subqueries and window functions inside such an
// expression, and column references that are neither inside an aggregate
// nor GROUP BY expressions.

// evalBuild collects an Evaluate while the merge is built. Column
// positions are encoded colIdx (encodeCol) until resolved.
type evalBuild struct {
	cols    []plan.EvalColumn
	args    []int
	argOf   map[int]int
	params  map[int]int // 0-based statement parameter → 1-based $n in the expressions
	pidx    []int
	exact   []int
	exactOf map[int]bool
}

// varianceAggs are the aggregates computed by a formula over count, sum
// and sum of squares; the value says whether it is a sample statistic
// and whether it is a standard deviation.
var varianceAggs = map[string]struct{ sample, stddev bool }{
	"variance": {true, false}, "var_samp": {true, false}, "var_pop": {false, false},
	"stddev": {true, true}, "stddev_samp": {true, true}, "stddev_pop": {false, true},
}

func isVarianceAgg(fc *pg_query.FuncCall) bool {
	_, ok := varianceAggs[funcName(fc)]
	return ok && builtinName(fc)
}

// builtinName reports whether fc names its function unqualified or in
// pg_catalog (not a user's function of the same name in another schema).
func builtinName(fc *pg_query.FuncCall) bool {
	if len(fc.Funcname) > 1 {
		s := fc.Funcname[0].GetString_()
		return s != nil && s.Sval == "pg_catalog"
	}
	return true
}

// parseExpr parses the text of one expression built by the planner.
func parseExpr(text string) (*pg_query.Node, error) {
	tree, err := pg_query.Parse("SELECT " + text)
	if err != nil || len(tree.Stmts) != 1 {
		return nil, fmt.Errorf("cannot parse %q: %v", text, err)
	}
	return tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val, nil
}

// isPercentileAgg reports whether fc is percentile_cont or percentile_disc
// (fraction) WITHIN GROUP (ORDER BY x): ordered-set aggregates without a
// combine step, so the shards return array_agg(x) and PostgreSQL computes
// the same call over the merged array (percentileRef).
func isPercentileAgg(fc *pg_query.FuncCall) bool {
	fn := funcName(fc)
	return (fn == "percentile_cont" || fn == "percentile_disc") && fc.AggWithinGroup && builtinName(fc)
}

// needsEval reports whether n (containing an aggregate) must be evaluated
// after the merge: anything but one plain aggregate call with a combine
// step.
func needsEval(n *pg_query.Node) bool {
	fc := n.GetFuncCall()
	return fc == nil || !isAggCall(fc) || evaluatedAgg(fc) != nil
}

// evaluatedAgg returns how an aggregate without a combine step the merge
// can apply is computed after the merge (its reference in the evaluation
// statement), nil for one the merge combines.
func evaluatedAgg(fc *pg_query.FuncCall) func(*mergeBuilder, *pg_query.FuncCall, string) (*pg_query.Node, error) {
	switch {
	case isVarianceAgg(fc):
		return (*mergeBuilder).varianceRef
	case isPercentileAgg(fc):
		return (*mergeBuilder).percentileRef
	case isJSONAgg(fc):
		return (*mergeBuilder).jsonAggRef
	}
	return nil
}

func (mb *mergeBuilder) evalState() *evalBuild {
	if mb.ev == nil {
		mb.ev = &evalBuild{argOf: map[int]int{}, params: map[int]int{}, exactOf: map[int]bool{}}
	}
	return mb.ev
}

// probe is the shards' stand-in for an evaluated expression: a scalar
// subquery that is never run but has expr's name, type and type modifier.
func probe(expr *pg_query.Node) *pg_query.Node {
	falseConst := func() *pg_query.Node {
		return &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: false}}, Location: -1}}}
	}
	sub := &pg_query.SelectStmt{
		TargetList:   []*pg_query.Node{{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Val: expr, Location: -1}}}},
		WhereClause:  falseConst(),
		HavingClause: falseConst(),
		Op:           pg_query.SetOperation_SETOP_NONE,
		LimitOption:  pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
	}
	return &pg_query.Node{Node: &pg_query.Node_SubLink{SubLink: &pg_query.SubLink{
		SubLinkType: pg_query.SubLinkType_EXPR_SUBLINK,
		Subselect:   &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sub}},
		Location:    -1,
	}}}
}

// caseProbe is the stand-in for an expression that uses a GROUP BY
// expression other than a plain column (PostgreSQL matches those only at
// their own query level, so a scalar subquery cannot mention them): `CASE
// WHEN false THEN expr END`, folded away by the planner. It has expr's
// type; its type modifier is kept only for a top-level cast, and its name
// is the caller's to set.
func caseProbe(expr *pg_query.Node) *pg_query.Node {
	falseConst := &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Val: &pg_query.A_Const_Boolval{Boolval: &pg_query.Boolean{Boolval: false}}, Location: -1}}}
	wrap := func(n *pg_query.Node) *pg_query.Node {
		return &pg_query.Node{Node: &pg_query.Node_CaseExpr{CaseExpr: &pg_query.CaseExpr{
			Args:     []*pg_query.Node{{Node: &pg_query.Node_CaseWhen{CaseWhen: &pg_query.CaseWhen{Expr: falseConst, Result: n, Location: -1}}}},
			Location: -1,
		}}}
	}
	if tc := expr.GetTypeCast(); tc != nil && tc.TypeName != nil && (len(tc.TypeName.Typmods) > 0 || len(tc.TypeName.ArrayBounds) > 0) {
		return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{Arg: wrap(tc.Arg), TypeName: tc.TypeName, Location: -1}}}
	}
	return wrap(expr)
}

// evalTarget makes select-list entry i (an expression over aggregates) an
// evaluated column.
func (mb *mergeBuilder) evalTarget(i int, rt *pg_query.ResTarget) error {
	expr, keyExprs, err := mb.evalExpr(rt.Val, "the select list")
	if err != nil {
		return err
	}
	// Window calls (window.go) may mention GROUP BY expressions in their
	// OVER clause, which a scalar subquery probe could not: the CASE probe.
	keyExprs = keyExprs || mb.postWindow[i]
	ev := mb.evalState()
	ev.cols = append(ev.cols, plan.EvalColumn{Column: encodeCol(colIdx{j: i}), Expr: expr})
	mb.cols[i] = plan.AggColumn{Func: plan.AggAny, Arg: -1, Name: outputName(rt)}
	if keyExprs {
		if rt.Name == "" {
			rt.Name = pgColumnName(rt.Val)
		}
		rt.Val = caseProbe(rt.Val)
		return nil
	}
	rt.Val = probe(rt.Val)
	return nil
}

// pgColumnName is the name PostgreSQL gives a select-list expression
// without an alias (parser/parse_target.c, FigureColname).
func pgColumnName(n *pg_query.Node) string {
	name, strength := figureColname(n)
	if strength == 0 {
		return "?column?"
	}
	return name
}

func figureColname(n *pg_query.Node) (string, int) {
	if n == nil {
		return "", 0
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_ColumnRef:
		if name, _ := columnName(x.ColumnRef); name != "" {
			return name, 2
		}
	case *pg_query.Node_AIndirection:
		ind := x.AIndirection.Indirection
		for i := len(ind) - 1; i >= 0; i-- {
			if s := ind[i].GetString_(); s != nil {
				return s.Sval, 2
			}
			if ind[i].GetAStar() == nil {
				break
			}
		}
		return figureColname(x.AIndirection.Arg)
	case *pg_query.Node_FuncCall:
		if len(x.FuncCall.Funcname) > 0 {
			if s := x.FuncCall.Funcname[len(x.FuncCall.Funcname)-1].GetString_(); s != nil {
				return s.Sval, 2
			}
		}
	case *pg_query.Node_AExpr:
		if x.AExpr.Kind == pg_query.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2
		}
	case *pg_query.Node_TypeCast:
		name, strength := figureColname(x.TypeCast.Arg)
		if strength <= 1 && x.TypeCast.TypeName != nil && len(x.TypeCast.TypeName.Names) > 0 {
			if s := x.TypeCast.TypeName.Names[len(x.TypeCast.TypeName.Names)-1].GetString_(); s != nil {
				return s.Sval, 1
			}
		}
		return name, strength
	case *pg_query.Node_CollateClause:
		return figureColname(x.CollateClause.Arg)
	case *pg_query.Node_GroupingFunc:
		return "grouping", 2
	case *pg_query.Node_CaseExpr:
		name, strength := figureColname(x.CaseExpr.Defresult)
		if strength <= 1 {
			return "case", 1
		}
		return name, strength
	case *pg_query.Node_AArrayExpr:
		return "array", 2
	case *pg_query.Node_RowExpr:
		return "row", 2
	case *pg_query.Node_CoalesceExpr:
		return "coalesce", 2
	case *pg_query.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg_query.MinMaxOp_IS_GREATEST {
			return "greatest", 2
		}
		return "least", 2
	case *pg_query.Node_SqlvalueFunction:
		names := map[pg_query.SQLValueFunctionOp]string{
			pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE: "current_date", pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME: "current_time",
			pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N: "current_time", pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP: "current_timestamp",
			pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp", pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME: "localtime",
			pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME_N: "localtime", pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP: "localtimestamp",
			pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N: "localtimestamp", pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE: "current_role",
			pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER: "current_user", pg_query.SQLValueFunctionOp_SVFOP_USER: "user",
			pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER: "session_user", pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG: "current_catalog",
			pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA: "current_schema",
		}
		if name, ok := names[x.SqlvalueFunction.Op]; ok {
			return name, 2
		}
	}
	return "", 0
}

// evalHidden adds n (an expression over aggregates in ORDER BY, HAVING or
// DISTINCT ON) as an evaluated hidden column.
func (mb *mergeBuilder) evalHidden(n *pg_query.Node, what string) (colIdx, error) {
	expr, keyExprs, err := mb.evalExpr(n, what)
	if err != nil {
		return colIdx{}, err
	}
	pr := probe(n)
	if keyExprs {
		pr = caseProbe(n)
	}
	j := mb.addHidden(pr, plan.AggColumn{Func: plan.AggAny, Arg: -1, Name: "?column?"})
	c := colIdx{hidden: true, j: j}
	ev := mb.evalState()
	ev.cols = append(ev.cols, plan.EvalColumn{Column: encodeCol(c), Expr: expr})
	mb.exprs[deparseExpr(n)] = c
	return c, nil
}

// evalHaving evaluates a whole HAVING condition the merge cannot compare
// itself: a hidden boolean column, kept when true.
func (mb *mergeBuilder) evalHaving(n *pg_query.Node) (*plan.Cond, error) {
	c, err := mb.evalHidden(n, "HAVING")
	if err != nil {
		return nil, err
	}
	return &plan.Cond{Op: "=", Args: []*plan.Cond{{Op: "column", Column: encodeCol(c)}, {Op: "const", Value: "t"}}}, nil
}

// evalArg returns the reference (v.cK) to column c in the evaluation
// statement.
func (mb *mergeBuilder) evalArg(c colIdx) *pg_query.Node {
	ev := mb.evalState()
	e := encodeCol(c)
	k, ok := ev.argOf[e]
	if !ok {
		k = len(ev.args)
		ev.args = append(ev.args, e)
		ev.argOf[e] = k
	}
	return &pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: &pg_query.ColumnRef{
		Fields: []*pg_query.Node{pg_query.MakeStrNode("v"), pg_query.MakeStrNode("c" + strconv.Itoa(k+1))}, Location: -1}}}
}

// evalParam renumbers a statement parameter for the evaluation statement,
// where the statement's parameters it uses come first ($1..$m).
func (mb *mergeBuilder) evalParam(pr *pg_query.ParamRef) {
	ev := mb.evalState()
	p := int(pr.Number) - 1
	num, ok := ev.params[p]
	if !ok {
		ev.pidx = append(ev.pidx, p)
		num = len(ev.pidx)
		ev.params[p] = num
	}
	pr.Number = int32(num)
}

// evalExpr returns the SQL that computes n in the evaluation statement:
// a copy of n with its aggregates and group keys replaced by references
// to the merged values (added as partial / key columns as needed) and its
// parameters renumbered. keyExprs reports a GROUP BY expression other
// than a plain column outside n's aggregates (see caseProbe).
func (mb *mergeBuilder) evalExpr(n *pg_query.Node, what string) (expr string, keyExprs bool, err error) {
	cp := proto.Clone(n).(*pg_query.Node)
	var fail error
	replace := func(c *pg_query.Node) bool {
		if fail != nil {
			return false
		}
		switch x := c.Node.(type) {
		case *pg_query.Node_SubLink, *pg_query.Node_SelectStmt:
			fail = unsupported("a subquery inside an expression with aggregates ("+deparseExpr(n)+") in "+what+" across shards is not supported",
				"select the subquery's value separately, or add a key condition")
			return false
		case *pg_query.Node_FuncCall:
			if w, ok := mb.windowArgs[deparseExpr(c)]; ok && x.FuncCall.Over != nil {
				c.Node = mb.evalArg(w).Node // a window value over the groups (window.go)
				return false
			}
			if x.FuncCall.Over != nil {
				fail = unsupported("window function "+funcName(x.FuncCall)+"() across shards is not supported yet",
					"partition the window by the distribution key and add a key condition, or compute it in the application")
				return false
			}
			if isAggCall(x.FuncCall) {
				ref, err := mb.aggRef(x.FuncCall, what)
				if err != nil {
					fail = err
					return false
				}
				c.Node = ref.Node
				return false
			}
		case *pg_query.Node_ParamRef:
			mb.evalParam(x.ParamRef)
			return false
		case *pg_query.Node_String_, *pg_query.Node_AConst, *pg_query.Node_List, *pg_query.Node_AStar:
			return true
		}
		if g, ok := mb.groupKeyCol(c); ok {
			if c.GetColumnRef() == nil {
				keyExprs = true
			}
			c.Node = mb.evalArg(g).Node
			return false
		}
		if cr := c.GetColumnRef(); cr != nil {
			fail = unsupported("column "+deparseExpr(c)+" is used outside an aggregate in "+deparseExpr(n)+" but is not a GROUP BY expression the merge knows",
				"GROUP BY the column (as written in the expression), or add a key condition")
			return false
		}
		return true
	}
	walkExpr(cp, replace) // the root too
	if fail != nil {
		return "", false, fail
	}
	return deparseExpr(cp), keyExprs, nil
}

// groupKeyCol finds the GROUP BY column an expression is equal to: the
// same text, or the same column name where one side is unqualified.
func (mb *mergeBuilder) groupKeyCol(n *pg_query.Node) (colIdx, bool) {
	k := deparseExpr(n)
	if c, ok := mb.groupExprs[k]; ok {
		return colIdxOf(c), true
	}
	cr := n.GetColumnRef()
	if cr == nil {
		return colIdx{}, false
	}
	name, qualified := columnName(cr)
	if name == "" {
		return colIdx{}, false
	}
	found, hits := 0, 0
	for _, g := range mb.groupRefs {
		gn, gq := columnName(g.ref)
		if gn == name && (!qualified || !gq) {
			found = g.col
			hits++
		}
	}
	if hits != 1 {
		return colIdx{}, false
	}
	return colIdxOf(found), true
}

// columnName is a column reference's last name and whether it is qualified.
func columnName(cr *pg_query.ColumnRef) (string, bool) {
	if len(cr.Fields) == 0 {
		return "", false
	}
	s := cr.Fields[len(cr.Fields)-1].GetString_()
	if s == nil {
		return "", false
	}
	return s.Sval, len(cr.Fields) > 1
}

// groupRef is a GROUP BY column reference and its (encoded) column.
type groupRef struct {
	ref *pg_query.ColumnRef
	col int
}

// noteGroupKey records GROUP BY item g (column c, encoded) for evaluated
// expressions: by its text and, when it names a select-list entry, by
// that entry's expression.
func (mb *mergeBuilder) noteGroupKey(g *pg_query.Node, c int) {
	if mb.groupExprs == nil {
		mb.groupExprs = map[string]int{}
	}
	add := func(n *pg_query.Node) {
		if !isIntConst(n) {
			if _, ok := mb.groupExprs[deparseExpr(n)]; !ok {
				mb.groupExprs[deparseExpr(n)] = c
			}
		}
		if cr := n.GetColumnRef(); cr != nil {
			mb.groupRefs = append(mb.groupRefs, groupRef{ref: cr, col: c})
		}
	}
	add(g)
	if ci := colIdxOf(c); !ci.hidden && ci.j < len(mb.sel.TargetList) {
		if rt := mb.sel.TargetList[ci.j].GetResTarget(); rt != nil && deparseExpr(rt.Val) != deparseExpr(g) {
			add(rt.Val)
		}
	}
}

// aggRef makes an aggregate call of an evaluated expression available to
// the evaluation statement: a reference to its merged partial column, or
// for the variance family the formula over its three partials.
func (mb *mergeBuilder) aggRef(fc *pg_query.FuncCall, what string) (*pg_query.Node, error) {
	if ref := evaluatedAgg(fc); ref != nil {
		return ref(mb, fc, what)
	}
	call := &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: proto.Clone(fc).(*pg_query.FuncCall)}}
	c, err := mb.aggExprCol(call, what)
	if err != nil {
		return nil, err
	}
	return mb.evalArg(c), nil
}

// varianceRef adds count(x), sum(x) and sum(x::numeric * x::numeric) as
// partial columns and returns the variance family's final formula over
// them.
func (mb *mergeBuilder) varianceRef(fc *pg_query.FuncCall, what string) (*pg_query.Node, error) {
	fn := funcName(fc)
	if fc.AggDistinct || fc.AggStar || len(fc.Args) != 1 || fc.AggWithinGroup {
		return nil, unsupported(fn+"() with DISTINCT or several arguments across shards is not supported", "add a key condition, or aggregate in the application")
	}
	x := fc.Args[0]
	call := func(name string, arg *pg_query.Node) *pg_query.Node {
		return &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: &pg_query.FuncCall{
			Funcname: []*pg_query.Node{pg_query.MakeStrNode(name)}, Args: []*pg_query.Node{arg},
			AggFilter: fc.AggFilter, Funcformat: fc.Funcformat, Location: -1}}}
	}
	asNumeric := func() *pg_query.Node {
		return &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{Arg: x,
			TypeName: &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode("numeric")}, Typemod: -1, Location: -1},
			Location: -1}}}
	}
	square := pg_query.MakeAExprNode(pg_query.A_Expr_Kind_AEXPR_OP, []*pg_query.Node{pg_query.MakeStrNode("*")}, asNumeric(), asNumeric(), -1)
	var refs [3]string
	for i, part := range []*pg_query.Node{call("count", x), call("sum", x), call("sum", square)} {
		c, err := mb.aggExprCol(part, what)
		if err != nil {
			return nil, err
		}
		refs[i] = deparseExpr(mb.evalArg(c))
		if i == 1 {
			ev := mb.evalState()
			if e := encodeCol(c); !ev.exactOf[e] {
				ev.exactOf[e] = true
				ev.exact = append(ev.exact, e)
			}
		}
	}
	spec := varianceAggs[fn]
	sqlText := varianceSQL(spec.sample, spec.stddev, refs[0], refs[1], refs[2])
	n, err := parseExpr(sqlText)
	if err != nil {
		return nil, unsupported("cannot build the cross-shard formula of "+fn+"()", "")
	}
	return n, nil
}

// percentileRef adds array_agg(x) (with the call's FILTER) as a partial
// column and returns the call itself over the merged array:
// (SELECT percentile_cont(f) WITHIN GROUP (ORDER BY u) FROM unnest(<x's
// values>) AS shardproxy_p(u)). NULLs in the array are ignored there as
// they are by the original call; the fraction must be constant (also an
// ARRAY of constants).
func (mb *mergeBuilder) percentileRef(fc *pg_query.FuncCall, what string) (*pg_query.Node, error) {
	fn := funcName(fc)
	var sb *pg_query.SortBy
	if len(fc.AggOrder) == 1 {
		sb = fc.AggOrder[0].GetSortBy()
	}
	if fc.AggDistinct || len(fc.Args) != 1 || !constantExpr(fc.Args[0]) || sb == nil || sb.SortbyDir == pg_query.SortByDir_SORTBY_USING {
		return nil, unsupported(fn+"() across shards needs a constant fraction and one ORDER BY expression",
			"write the fraction as a constant (or an ARRAY of constants), or add a key condition")
	}
	x := sb.Node
	if cc := x.GetCollateClause(); cc != nil {
		x = cc.Arg
	}
	values := &pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: &pg_query.FuncCall{
		Funcname: []*pg_query.Node{pg_query.MakeStrNode("array_agg")}, Args: []*pg_query.Node{proto.Clone(x).(*pg_query.Node)},
		AggFilter: fc.AggFilter, Funcformat: fc.Funcformat, Location: -1}}}
	c, err := mb.aggExprCol(values, what)
	if err != nil {
		return nil, err
	}
	final := proto.Clone(fc).(*pg_query.FuncCall)
	final.AggFilter = nil
	u := pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode("u")}, -1)
	if fsb := final.AggOrder[0].GetSortBy(); fsb.Node.GetCollateClause() != nil {
		fsb.Node.GetCollateClause().Arg = u
	} else {
		fsb.Node = u
	}
	call := deparseExpr(&pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: final}})
	n, err := parseExpr("(SELECT " + call + " FROM unnest(" + deparseExpr(mb.evalArg(c)) + ") AS shardproxy_p(u))")
	if err != nil {
		return nil, unsupported("cannot build the cross-shard form of "+fn+"()", "")
	}
	return n, nil
}

// isJSONAgg reports whether fc is json_agg(x): its text puts a line break
// between composite or array elements only, so the shards' texts cannot be
// joined without the type; the shards return array_agg(x) and PostgreSQL
// runs json_agg over the merged array (jsonAggRef).
func isJSONAgg(fc *pg_query.FuncCall) bool {
	return funcName(fc) == "json_agg" && builtinName(fc) && len(fc.Args) == 1 && !fc.AggWithinGroup && fc.Over == nil
}

// jsonAggRef adds array_agg(x) (with the call's DISTINCT, ORDER BY and
// FILTER) as a partial column and returns json_agg over the merged array
// in its order: (SELECT json_agg(u ORDER BY o) FROM unnest(<x's values>)
// WITH ORDINALITY AS shardproxy_j(u, o)). Elements whose type the merge
// cannot carry in an array (composite rows, json, arrays of arrays) are
// refused there (0A000).
func (mb *mergeBuilder) jsonAggRef(fc *pg_query.FuncCall, what string) (*pg_query.Node, error) {
	values := proto.Clone(fc).(*pg_query.FuncCall)
	values.Funcname = []*pg_query.Node{pg_query.MakeStrNode("array_agg")}
	c, err := mb.aggExprCol(&pg_query.Node{Node: &pg_query.Node_FuncCall{FuncCall: values}}, what)
	if err != nil {
		return nil, err
	}
	n, err := parseExpr("(SELECT json_agg(u ORDER BY o) FROM unnest(" + deparseExpr(mb.evalArg(c)) + ") WITH ORDINALITY AS shardproxy_j(u, o))")
	if err != nil {
		return nil, unsupported("cannot build the cross-shard form of json_agg()", "")
	}
	return n, nil
}

// constantExpr reports whether n is built of constants only (casts and
// ARRAY[...] of them included).
func constantExpr(n *pg_query.Node) bool {
	ok := true
	walkExpr(n, func(c *pg_query.Node) bool {
		switch c.Node.(type) {
		case *pg_query.Node_AConst, *pg_query.Node_TypeCast, *pg_query.Node_AArrayExpr, *pg_query.Node_List,
			*pg_query.Node_String_, *pg_query.Node_TypeName, *pg_query.Node_Integer:
			return true
		}
		if c.GetAExpr() != nil { // -0.5
			return true
		}
		ok = false
		return false
	})
	return ok
}

// varianceSQL is the final step of the variance family over the merged
// count n, sum s and sum of squares s2 (see the file comment).
func varianceSQL(sample, stddev bool, n, s, s2 string) string {
	den, small := "q.n::numeric * q.n", ""
	if sample {
		den, small = "q.n::numeric * (q.n - 1)", " WHEN q.n <= 1 THEN NULL"
	}
	v := "(SELECT CASE WHEN q.n = 0 THEN NULL WHEN q.s IN ('NaN', 'Infinity', '-Infinity') THEN 'NaN'::numeric" + small +
		" WHEN q.d <= 0 THEN 0::numeric ELSE q.d / (" + den + ") END FROM (SELECT " + n + " AS n, " + s + "::numeric AS s, " +
		n + "::numeric * " + s2 + " - " + s + "::numeric * " + s + "::numeric AS d) q)"
	if !stddev {
		return v
	}
	return "(SELECT CASE WHEN w.v IS NULL OR w.v <= 0 OR w.v = 'NaN' THEN w.v ELSE (SELECT round((b.f - (b.f * b.f > b.m)::int + ((b.f + 1) * (b.f + 1) <= b.m)::int) * ('1e-' || (scale(w.v) + 1))::numeric, scale(w.v))" +
		" FROM (SELECT a.m, floor(sqrt(a.m)) AS f FROM (SELECT (replace(w.v::text, '.', '') || repeat('0', scale(w.v) + 2))::numeric AS m) a) b) END FROM (SELECT " + v + " AS v) w)"
}

// deparseSelect returns sel as SQL text ("" if it cannot be deparsed).
func deparseSelect(version int32, sel *pg_query.SelectStmt) string {
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}}}})
	if err != nil {
		return ""
	}
	return out
}

// resolveEval turns the collected Evaluate into the operator (columns
// resolved), nil when nothing is evaluated.
func (mb *mergeBuilder) resolveEval() *plan.Evaluate {
	ev := mb.ev
	if ev == nil || len(ev.cols) == 0 {
		return nil
	}
	op := &plan.Evaluate{ParamIndexes: ev.pidx}
	for _, c := range ev.cols {
		op.Columns = append(op.Columns, plan.EvalColumn{Column: mb.resolve(colIdxOf(c.Column)), Expr: c.Expr})
	}
	for _, a := range ev.args {
		op.Args = append(op.Args, mb.resolve(colIdxOf(a)))
	}
	for _, e := range ev.exact {
		op.ExactInputs = append(op.ExactInputs, mb.resolve(colIdxOf(e)))
	}
	return op
}

// condShapeOK reports whether cond can translate HAVING n (comparisons of
// operands joined by AND/OR/NOT) without side effects on the builder.
func condShapeOK(n *pg_query.Node) bool {
	switch x := n.Node.(type) {
	case *pg_query.Node_BoolExpr:
		for _, a := range x.BoolExpr.Args {
			if !condShapeOK(a) {
				return false
			}
		}
		return true
	case *pg_query.Node_AExpr:
		if x.AExpr.Kind != pg_query.A_Expr_Kind_AEXPR_OP || x.AExpr.Lexpr == nil {
			return false
		}
		switch opName(x.AExpr) {
		case "=", "<>", "!=", "<", "<=", ">", ">=":
		default:
			return false
		}
		isValue := func(o *pg_query.Node) bool {
			k := valueOf(o).kind
			return k == vConst || k == vNull || k == vParam
		}
		return !(isValue(x.AExpr.Lexpr) && isValue(x.AExpr.Rexpr))
	case *pg_query.Node_NullTest:
		return true
	}
	return false
}
