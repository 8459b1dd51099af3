package planner

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// INSERT … SELECT (Citus' two strategies).
//
// The SELECT is cut out of the statement (deparsed, with its own $n
// renumbered) and planned on its own. When the target is distributed, its
// distribution key column (from the column list, or Options.Columns) takes
// the SELECT's output column at the same position, and that column is a
// bare reference to the key of a table of the target's distribution, and
// the SELECT alone plans to a Route or to a Scatter with nothing to merge
// over that table's colocation class, then every row a shard's SELECT
// returns belongs on that same shard: the whole statement is pushed down
// (Route, or Scatter with Write to the shards the SELECT reads). Omitted
// generated columns (which each shard's own sequence would fill) or a
// read restricted to owned rows during a move disable the pushdown.
//
// Otherwise the statement becomes a plan.InsertSelect: the executor runs
// the SELECT's plan and inserts its rows in batches of INSERT … VALUES
// with the statement's column list, ON CONFLICT and RETURNING kept.

// insertSelectStub marks where the SELECT was in the deparsed INSERT; the
// text before it is InsertSelect.Head, after it Tail.
const insertSelectStub = 999999

// insertSelectParts is the statement taken apart.
type insertSelectParts struct {
	selectSQL    string
	selectParams []int
	selectNode   *pg_query.SelectStmt
	head, tail   string
	insertParams []int
}

// splitInsertSelect cuts st (an INSERT … SELECT) into its SELECT and the
// INSERT around it, each with $n renumbered from 1 in order of first
// appearance (the indexes name the original Bind values, 0-based).
func splitInsertSelect(st *stmtInfo) (*insertSelectParts, error) {
	if st.node == nil || st.node.GetInsertStmt() == nil {
		return nil, unsupported("cannot take this INSERT … SELECT apart", "")
	}
	ins := proto.Clone(st.node.GetInsertStmt()).(*pg_query.InsertStmt)
	sel := ins.SelectStmt.GetSelectStmt()
	if sel == nil {
		return nil, unsupported("cannot take this INSERT … SELECT apart", "write the SELECT as a plain query")
	}
	if ins.WithClause != nil {
		if sel.WithClause != nil {
			return nil, unsupported("INSERT … SELECT with WITH clauses both before INSERT and before SELECT is not supported", "move the CTEs into one WITH in front of the SELECT")
		}
		// The CTEs belong to the SELECT's rows (the INSERT's RETURNING and
		// ON CONFLICT cannot read them without a subquery).
		sel.WithClause, ins.WithClause = ins.WithClause, nil
	}
	out := &insertSelectParts{selectNode: sel, selectParams: []int{}, insertParams: []int{}}
	renumberParams(ins.SelectStmt, &out.selectParams)
	selSQL, err := pg_query.Deparse(&pg_query.ParseResult{Version: parseTreeVersion(), Stmts: []*pg_query.RawStmt{{Stmt: ins.SelectStmt}}})
	if err != nil {
		return nil, unsupported("cannot take this INSERT … SELECT apart: "+err.Error(), "")
	}
	out.selectSQL = selSQL
	ins.SelectStmt = nil
	insNode := &pg_query.Node{Node: &pg_query.Node_InsertStmt{InsertStmt: ins}}
	renumberParams(insNode, &out.insertParams)
	stub := &pg_query.Node{Node: &pg_query.Node_ParamRef{ParamRef: &pg_query.ParamRef{Number: insertSelectStub}}}
	ins.SelectStmt = &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: &pg_query.SelectStmt{
		ValuesLists: []*pg_query.Node{{Node: &pg_query.Node_List{List: &pg_query.List{Items: []*pg_query.Node{stub}}}}},
		Op:          pg_query.SetOperation_SETOP_NONE, LimitOption: pg_query.LimitOption_LIMIT_OPTION_DEFAULT,
	}}}
	insSQL, err := pg_query.Deparse(&pg_query.ParseResult{Version: parseTreeVersion(), Stmts: []*pg_query.RawStmt{{Stmt: insNode}}})
	if err != nil {
		return nil, unsupported("cannot take this INSERT … SELECT apart: "+err.Error(), "")
	}
	mark := fmt.Sprintf("VALUES ($%d)", insertSelectStub)
	if strings.Count(insSQL, mark) != 1 {
		return nil, unsupported("cannot take this INSERT … SELECT apart", "")
	}
	i := strings.Index(insSQL, mark)
	out.head, out.tail = insSQL[:i], insSQL[i+len(mark):]
	return out, nil
}

// renumberParams makes the $n under n count from 1 in order of first
// appearance, appending each one's original index (n-1) to idx.
func renumberParams(n *pg_query.Node, idx *[]int) {
	newOf := map[int32]int32{}
	walkNodes(n, func(x *pg_query.Node) bool {
		pr := x.GetParamRef()
		if pr == nil {
			return true
		}
		nn, ok := newOf[pr.Number]
		if !ok {
			*idx = append(*idx, int(pr.Number)-1)
			nn = int32(len(*idx))
			newOf[pr.Number] = nn
		}
		pr.Number = nn
		return true
	})
}

// planInsertSelect plans INSERT … SELECT into st's target (a distributed
// table; a reference or unlisted table when its SELECT reads tables that
// are not everywhere): pushdown when colocated (see above), else
// plan.InsertSelect.
func (p *Planner) planInsertSelect(st *stmtInfo, b *binding, sql string, params *Params) (plan.Operator, error) {
	r := &st.rels[st.target]
	if st.nestedWrite {
		return nil, unsupported("INSERT … SELECT into "+r.name+" with a data-modifying CTE is not supported", "run the data-modifying statement first")
	}
	parts, err := splitInsertSelect(st)
	if err != nil {
		return nil, err
	}
	a2, err := p.Analyze(parts.selectSQL)
	if err != nil {
		return nil, err
	}
	if len(a2.Statements) != 1 {
		return nil, unsupported("cannot take this INSERT … SELECT apart", "")
	}
	selParams := SelectParams(*params, parts.selectParams)
	selOp, err := p.Plan(b.snap, a2, selParams)
	if err != nil {
		if u, ok := err.(*plan.Unsupported); ok {
			return nil, &plan.Unsupported{Message: "the SELECT of INSERT … SELECT into " + r.name + ": " + u.Message, Hint: u.Hint}
		}
		return nil, err
	}
	if op := p.pushDownInsertSelect(st, b, sql, parts, a2.Statements[0].info, selOp, &selParams); op != nil {
		return op, nil
	}
	ii := st.ins
	reason := "rows of the SELECT pass through the proxy"
	if rb := b.rels[st.target]; rb.kind == rbDist {
		reason = "the SELECT's rows are not all on the shard of their " + r.name + "." + rb.key
	}
	return &plan.InsertSelect{Table: r.name, SQL: sql, SelectSQL: parts.selectSQL, SelectParams: parts.selectParams, Select: selOp,
		Head: parts.head, Tail: parts.tail, InsertParams: parts.insertParams, Returning: ii.returning,
		SingleBatch: ii.onConflict == "update", Reason: reason, UntypedColumns: untypedColumns(parts.selectNode)}, nil
}

// untypedColumns lists the output positions of sel that are bare string
// literals or NULL (typed by the INSERT's target column in PostgreSQL),
// nil when positions are not known (a set operation, whose literals are
// resolved by the set operation itself, or * in the list).
func untypedColumns(sel *pg_query.SelectStmt) []int {
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		return nil
	}
	var out []int
	for i, t := range sel.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return nil
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			if _, ok := colRefOf(cr, 0); !ok {
				return nil // t.*
			}
		}
		if c := rt.Val.GetAConst(); c != nil && (c.Isnull || c.GetSval() != nil) {
			out = append(out, i)
		}
	}
	if len(sel.ValuesLists) > 0 {
		return nil // VALUES rows: resolved by VALUES itself
	}
	return out
}

// pushDownInsertSelect returns the pushed-down plan of an INSERT … SELECT
// into a distributed table whose rows stay on their shards, nil when it
// cannot be pushed down.
func (p *Planner) pushDownInsertSelect(st *stmtInfo, b *binding, sql string, parts *insertSelectParts, sst *stmtInfo, selOp plan.Operator, selParams *Params) plan.Operator {
	rb := b.rels[st.target]
	if rb.kind != rbDist {
		return nil
	}
	r := &st.rels[st.target]
	cols := st.ins.cols
	if cols == nil && p.opts.Columns != nil {
		for _, c := range p.opts.Columns(r.name) {
			cols = append(cols, strings.ToLower(c))
		}
	}
	keyPos := -1
	for i, c := range cols {
		if c == rb.key {
			keyPos = i
		}
	}
	if keyPos < 0 {
		return nil // the key comes from the allocator
	}
	if p.opts.GeneratedColumns != nil {
		for _, g := range p.opts.GeneratedColumns(r.name) {
			found := false
			for _, c := range cols {
				found = found || c == g
			}
			if !found {
				return nil // each shard's own sequence would fill it
			}
		}
	}
	sel := parts.selectNode
	if sel.Op != pg_query.SetOperation_SETOP_NONE || len(sel.TargetList) <= keyPos || sst.topScope < 0 {
		return nil
	}
	for _, t := range sel.TargetList[:keyPos+1] {
		rt := t.GetResTarget()
		if rt == nil {
			return nil
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			if _, ok := colRefOf(cr, sst.topScope); !ok {
				return nil // t.*: positions unknown
			}
		}
	}
	cr := sel.TargetList[keyPos].GetResTarget().Val.GetColumnRef()
	if cr == nil {
		return nil
	}
	c, _ := colRefOf(cr, sst.topScope)
	sb := sst.bind(b.snap)
	if sb.err != nil {
		return nil
	}
	ri := sb.keyRel(sst, c)
	if ri < 0 || sb.rels[ri].kind != rbDist || sb.rels[ri].dist != rb.dist {
		return nil
	}
	label := sst.rels[ri].name + "." + sb.rels[ri].key
	switch o := selOp.(type) {
	case *plan.Route:
		if o.ReadAnyShard {
			return nil
		}
		return &plan.Route{Shard: o.Shard, SQL: sql, Reason: "INSERT … SELECT pushed down: " + r.name + "." + rb.key + " from colocated " + label + "; " + o.Reason}
	case *plan.Scatter:
		if o.Write || len(o.ShardSQL) > 0 {
			return nil
		}
		pl := p.place(sst, sb, selParams)
		if pl.err != nil || pl.single != "" || pl.class < 0 || pl.class != sb.relClass[ri] {
			return nil
		}
		return &plan.Scatter{Shards: append([]string(nil), o.Shards...), SQL: sql, Write: true,
			Reason: "INSERT … SELECT pushed down: " + r.name + "." + rb.key + " from colocated " + label + "; " + scatterWhy(&sb.classes[pl.class])}
	}
	return nil
}
