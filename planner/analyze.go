package planner

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// analyze parses sql and builds its Analysis. It does not use a topology.
func analyze(sql string) (*Analysis, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		pe := &plan.Error{Code: "42601", Message: err.Error()}
		if perr, ok := err.(*parser.Error); ok && perr.Cursorpos > 0 {
			pe.Position = perr.Cursorpos
		}
		return nil, pe
	}
	a := &Analysis{SQL: sql, Hint: parseHint(sql)}
	single := len(tree.Stmts) == 1
	for _, raw := range tree.Stmts {
		start, end := int(raw.StmtLocation), int(raw.StmtLocation+raw.StmtLen)
		if raw.StmtLen == 0 {
			end = len(sql)
		}
		if single {
			start, end = 0, len(sql)
		} else {
			for start < end && strings.ContainsRune(" \t\r\n", rune(sql[start])) {
				start++
			}
		}
		st := analyzeStmt(sql, raw.Stmt, start, end)
		sa := &StatementAnalysis{Kind: st.kind, SQL: sql[start:end], ReadOnly: st.readOnly, info: st}
		sa.Tables = st.tablesListed
		a.Statements = append(a.Statements, sa)
	}
	return a, nil
}

// parseHint returns NAME from a leading /* shardproxy: shard=NAME */.
func parseHint(sql string) string {
	s := strings.TrimLeft(sql, " \t\r\n")
	if !strings.HasPrefix(s, "/*") {
		return ""
	}
	end := strings.Index(s, "*/")
	if end < 0 {
		return ""
	}
	body := strings.TrimSpace(s[2:end])
	if !strings.HasPrefix(body, "shardproxy:") {
		return ""
	}
	for _, f := range strings.FieldsFunc(body[len("shardproxy:"):], func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == "shard" {
			return strings.Trim(strings.TrimSpace(v), `'"`)
		}
	}
	return ""
}

type analyzer struct {
	sql string
	st  *stmtInfo

	// Derived tables, CTEs and IN subqueries (see passthrough.go).
	selScope map[*pg_query.SelectStmt]int
	cteDefs  map[int]map[string]*cteDef
	bodies   []pendingBody
	semis    []pendingSemi
}

func newStmt(kind Kind, start, end int, node *pg_query.Node) *stmtInfo {
	return &stmtInfo{kind: kind, start: start, end: end, target: -1, topScope: -1, node: node}
}

func analyzeStmt(sql string, n *pg_query.Node, start, end int) *stmtInfo {
	a := &analyzer{sql: sql}
	st := newStmt(KindUtility, start, end, n)
	a.st = st
	a.top(n)
	a.finishPassThrough()
	st.readOnly = !st.writes && (st.kind == KindSelect || st.kind == KindShow || (st.kind == KindCopy && st.cp != nil && !st.cp.from)) && !hasWritingCall(n)
	if st.kind == KindExplain && st.explain != nil {
		st.readOnly = st.explain.readOnly || !st.explainAnlz
	}
	set := map[string]bool{}
	for _, r := range st.rels {
		if r.kind == relTable {
			set[r.name] = true
		}
	}
	if st.ddl != nil {
		for _, t := range st.ddl.tables {
			set[t] = true
		}
	}
	for t := range set {
		st.tablesListed = append(st.tablesListed, t)
	}
	sort.Strings(st.tablesListed)
	return st
}

func unsupported(msg, hint string) error { return &plan.Unsupported{Message: msg, Hint: hint} }

func (a *analyzer) top(n *pg_query.Node) {
	st := a.st
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		st.kind = KindSelect
		s := a.selectStmt(x.SelectStmt, -1)
		a.selectShape(x.SelectStmt, s)
		if x.SelectStmt.IntoClause != nil {
			st.writes = true
			st.kind = KindDDL
			st.ddl = &ddlInfo{description: "SELECT INTO"}
			st.ddl.tables = append(st.ddl.tables, rangeVarName(x.SelectStmt.IntoClause.Rel))
		}
		if len(x.SelectStmt.LockingClause) > 0 {
			st.writes = true
		}
	case *pg_query.Node_InsertStmt:
		st.kind = KindInsert
		a.insertStmt(x.InsertStmt)
	case *pg_query.Node_UpdateStmt:
		st.kind = KindUpdate
		a.updateStmt(x.UpdateStmt, -1)
	case *pg_query.Node_DeleteStmt:
		st.kind = KindDelete
		a.deleteStmt(x.DeleteStmt, -1)
	case *pg_query.Node_MergeStmt:
		st.kind = KindMerge
		st.writes = true
		s := a.newScope(-1)
		st.target = a.addRel(x.MergeStmt.Relation, s, true)
		a.scanAll(n, s)
	case *pg_query.Node_CopyStmt:
		a.copyStmt(x.CopyStmt)
	case *pg_query.Node_ExplainStmt:
		a.explainStmt(x.ExplainStmt)
	case *pg_query.Node_DeclareCursorStmt:
		st.kind = KindCursor
		st.cursor = true
		st.declare = declareOf(x.DeclareCursorStmt, a.sql[st.start:st.end])
		if sel := x.DeclareCursorStmt.Query.GetSelectStmt(); sel != nil {
			s := a.selectStmt(sel, -1)
			a.selectShape(sel, s)
		}
	case *pg_query.Node_TransactionStmt:
		st.kind = KindTransaction
		st.session = &sessionInfo{kind: "transaction", name: txnKindName(x.TransactionStmt.Kind)}
		if x.TransactionStmt.SavepointName != "" {
			st.session.value = x.TransactionStmt.SavepointName
		} else if x.TransactionStmt.Gid != "" {
			st.session.value = x.TransactionStmt.Gid
		}
	case *pg_query.Node_VariableSetStmt:
		st.kind = KindSet
		v := x.VariableSetStmt
		si := &sessionInfo{kind: "set", name: strings.ToLower(v.Name)}
		switch v.Kind {
		case pg_query.VariableSetKind_VAR_RESET, pg_query.VariableSetKind_VAR_RESET_ALL:
			si.kind = "reset"
			if si.name == "" {
				si.name = "all"
			}
		case pg_query.VariableSetKind_VAR_SET_DEFAULT:
			si.value = "DEFAULT"
		default:
			var vals []string
			for _, arg := range v.Args {
				if c := arg.GetAConst(); c != nil {
					if ve := constVal(c); ve.kind == vConst {
						vals = append(vals, ve.text)
						continue
					}
				}
				vals = append(vals, "?")
			}
			si.value = strings.Join(vals, ", ")
		}
		if v.IsLocal {
			si.kind += "_local"
		}
		si.proxy = strings.HasPrefix(si.name, "shardproxy.")
		st.session = si
	case *pg_query.Node_VariableShowStmt:
		st.kind = KindShow
		name := strings.ToLower(x.VariableShowStmt.Name)
		st.session = &sessionInfo{kind: "show", name: name, proxy: strings.HasPrefix(name, "shardproxy.")}
	case *pg_query.Node_DiscardStmt:
		st.session = &sessionInfo{kind: "discard", name: strings.ToLower(strings.TrimPrefix(x.DiscardStmt.Target.String(), "DISCARD_"))}
	case *pg_query.Node_ListenStmt:
		st.session = &sessionInfo{kind: "listen", name: x.ListenStmt.Conditionname}
	case *pg_query.Node_UnlistenStmt:
		st.session = &sessionInfo{kind: "unlisten", name: x.UnlistenStmt.Conditionname}
	case *pg_query.Node_NotifyStmt:
		st.session = &sessionInfo{kind: "notify", name: x.NotifyStmt.Conditionname, value: x.NotifyStmt.Payload}
	case *pg_query.Node_PrepareStmt:
		st.session = &sessionInfo{kind: "prepare", name: x.PrepareStmt.Name}
	case *pg_query.Node_ExecuteStmt:
		st.session = &sessionInfo{kind: "execute", name: x.ExecuteStmt.Name}
	case *pg_query.Node_DeallocateStmt:
		st.session = &sessionInfo{kind: "deallocate", name: x.DeallocateStmt.Name}
	case *pg_query.Node_FetchStmt:
		st.kind = KindCursor
		st.session = &sessionInfo{kind: "fetch", name: x.FetchStmt.Portalname, fetch: fetchOf(x.FetchStmt)}
	case *pg_query.Node_ClosePortalStmt:
		st.kind = KindCursor
		st.session = &sessionInfo{kind: "close", name: x.ClosePortalStmt.Portalname}
	case *pg_query.Node_VacuumStmt:
		st.kind = KindUtility
		st.writes = true
		d := &ddlInfo{noTxn: x.VacuumStmt.IsVacuumcmd, description: "VACUUM/ANALYZE"}
		for _, r := range x.VacuumStmt.Rels {
			if vr := r.GetVacuumRelation(); vr != nil && vr.Relation != nil {
				d.tables = append(d.tables, rangeVarName(vr.Relation))
			}
		}
		if len(d.tables) == 0 {
			d.tables = []string{"*"}
		}
		st.ddl = d
	case *pg_query.Node_LockStmt:
		st.kind = KindUtility
		st.writes = true
		d := &ddlInfo{description: "LOCK"}
		for _, r := range x.LockStmt.Relations {
			if rv := r.GetRangeVar(); rv != nil {
				d.tables = append(d.tables, rangeVarName(rv))
			}
		}
		st.ddl = d
	case *pg_query.Node_DoStmt, *pg_query.Node_CallStmt, *pg_query.Node_CheckPointStmt, *pg_query.Node_LoadStmt:
		st.kind = KindUtility
		st.writes = true
	default:
		if a.ddlStmt(n) {
			return
		}
		st.kind = KindUtility
		st.writes = true
	}
}

func txnKindName(k pg_query.TransactionStmtKind) string {
	switch k {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		return "begin"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		return "commit"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		return "rollback"
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return "savepoint"
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		return "release"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return "rollback_to"
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		return "prepare"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		return "commit_prepared"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return "rollback_prepared"
	}
	return "unknown"
}

// ddlStmt recognises DDL and records the tables it is about.
func (a *analyzer) ddlStmt(n *pg_query.Node) bool {
	st := a.st
	d := &ddlInfo{}
	switch x := n.Node.(type) {
	case *pg_query.Node_CreateStmt:
		d.description = "CREATE TABLE"
		d.tables = append(d.tables, rangeVarName(x.CreateStmt.Relation))
		for _, inh := range x.CreateStmt.InhRelations {
			if rv := inh.GetRangeVar(); rv != nil {
				d.tables = append(d.tables, rangeVarName(rv))
			}
		}
	case *pg_query.Node_DropStmt:
		d.description = "DROP " + strings.TrimPrefix(x.DropStmt.RemoveType.String(), "OBJECT_")
		switch x.DropStmt.RemoveType {
		case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
			pg_query.ObjectType_OBJECT_FOREIGN_TABLE, pg_query.ObjectType_OBJECT_SEQUENCE:
			for _, o := range x.DropStmt.Objects {
				d.tables = append(d.tables, listName(o))
			}
		case pg_query.ObjectType_OBJECT_INDEX:
			d.dropIndex = true
			d.noTxn = x.DropStmt.Concurrent
		default:
			// Triggers, policies and rules name their table last-but-one.
			for _, o := range x.DropStmt.Objects {
				if l := o.GetList(); l != nil && len(l.Items) >= 2 {
					switch x.DropStmt.RemoveType {
					case pg_query.ObjectType_OBJECT_TRIGGER, pg_query.ObjectType_OBJECT_POLICY, pg_query.ObjectType_OBJECT_RULE:
						d.tables = append(d.tables, namesJoin(l.Items[:len(l.Items)-1]))
					}
				}
			}
		}
	case *pg_query.Node_IndexStmt:
		d.description = "CREATE INDEX"
		d.noTxn = x.IndexStmt.Concurrent
		d.tables = append(d.tables, rangeVarName(x.IndexStmt.Relation))
	case *pg_query.Node_TruncateStmt:
		d.description = "TRUNCATE"
		for _, r := range x.TruncateStmt.Relations {
			if rv := r.GetRangeVar(); rv != nil {
				d.tables = append(d.tables, rangeVarName(rv))
			}
		}
	case *pg_query.Node_AlterTableStmt, *pg_query.Node_RenameStmt, *pg_query.Node_CreateTrigStmt,
		*pg_query.Node_CreatePolicyStmt, *pg_query.Node_AlterPolicyStmt, *pg_query.Node_GrantStmt,
		*pg_query.Node_CommentStmt, *pg_query.Node_ViewStmt, *pg_query.Node_CreateTableAsStmt,
		*pg_query.Node_RuleStmt, *pg_query.Node_ClusterStmt, *pg_query.Node_ReindexStmt,
		*pg_query.Node_CreateStatsStmt, *pg_query.Node_AlterOwnerStmt, *pg_query.Node_AlterObjectSchemaStmt,
		*pg_query.Node_RefreshMatViewStmt:
		d.description = stmtTypeName(x)
		if r, ok := x.(*pg_query.Node_ReindexStmt); ok && r.ReindexStmt.Params != nil {
			d.noTxn = true
		}
		walkNodes(n, func(c *pg_query.Node) bool {
			if rv := c.GetRangeVar(); rv != nil {
				d.tables = append(d.tables, rangeVarName(rv))
			}
			return true
		})
	case *pg_query.Node_CreateSeqStmt, *pg_query.Node_AlterSeqStmt, *pg_query.Node_CreateFunctionStmt,
		*pg_query.Node_CreateSchemaStmt, *pg_query.Node_CreateExtensionStmt, *pg_query.Node_CompositeTypeStmt,
		*pg_query.Node_CreateEnumStmt, *pg_query.Node_DefineStmt, *pg_query.Node_CreateDomainStmt,
		*pg_query.Node_AlterEnumStmt, *pg_query.Node_CreateRoleStmt, *pg_query.Node_AlterRoleStmt,
		*pg_query.Node_DropRoleStmt, *pg_query.Node_CreatedbStmt, *pg_query.Node_DropdbStmt,
		*pg_query.Node_AlterFunctionStmt, *pg_query.Node_AlterDomainStmt:
		d.description = stmtTypeName(x)
	default:
		return false
	}
	st.kind = KindDDL
	st.writes = true
	st.ddl = d
	return true
}

func listName(n *pg_query.Node) string {
	if l := n.GetList(); l != nil {
		return namesJoin(l.Items)
	}
	if s := n.GetString_(); s != nil {
		return topologyQualify(s.Sval)
	}
	return ""
}

func namesJoin(items []*pg_query.Node) string {
	parts := make([]string, 0, len(items))
	for _, it := range items {
		if s := it.GetString_(); s != nil {
			parts = append(parts, s.Sval)
		}
	}
	return topologyQualify(strings.Join(parts, "."))
}

func rangeVarName(rv *pg_query.RangeVar) string {
	if rv == nil {
		return ""
	}
	if rv.Schemaname != "" {
		return strings.ToLower(rv.Schemaname + "." + rv.Relname)
	}
	return topologyQualify(rv.Relname)
}

// topologyQualify is topology.QualifyName for names the parser already
// resolved (quoted identifiers keep their case in the parse tree but the
// topology stores lower case).
func topologyQualify(name string) string {
	name = strings.ToLower(name)
	if name == "" || strings.Contains(name, ".") {
		return name
	}
	return "public." + name
}

func (a *analyzer) newScope(parent int) int {
	d := 0
	if parent >= 0 {
		d = a.st.scopes[parent].depth + 1
	}
	a.st.scopes = append(a.st.scopes, scope{parent: parent, depth: d})
	return len(a.st.scopes) - 1
}

func (a *analyzer) isCTE(s int, name string) bool {
	for ; s >= 0; s = a.st.scopes[s].parent {
		if a.st.scopes[s].ctes[name] {
			return true
		}
	}
	return false
}

func (a *analyzer) addRel(rv *pg_query.RangeVar, s int, target bool) int {
	r := rel{kind: relTable, schema: strings.ToLower(rv.Schemaname), relname: strings.ToLower(rv.Relname), scope: s, target: target}
	cte := r.schema == "" && a.isCTE(s, r.relname)
	if cte {
		r.kind = relCTE
	} else {
		r.name = rangeVarName(rv)
	}
	r.refName = r.relname
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		r.refName = strings.ToLower(rv.Alias.Aliasname)
		r.aliased = true
	}
	a.st.rels = append(a.st.rels, r)
	idx := len(a.st.rels) - 1
	a.st.scopes[s].rels = append(a.st.scopes[s].rels, idx)
	if cte {
		a.cteRef(idx, s, r.relname)
	}
	return idx
}

func (a *analyzer) withClause(w *pg_query.WithClause, s int) {
	if w == nil {
		return
	}
	for _, c := range w.Ctes {
		cte := c.GetCommonTableExpr()
		if cte == nil {
			continue
		}
		if a.st.scopes[s].ctes == nil {
			a.st.scopes[s].ctes = map[string]bool{}
		}
		// Recursive CTEs see their own name; others do not, but marking
		// it early only hides a same-named table from the CTE's own body.
		if w.Recursive {
			a.st.scopes[s].ctes[strings.ToLower(cte.Ctename)] = true
			a.defineCTE(s, cte, true)
		}
		a.nested(cte.Ctequery, s)
		a.st.scopes[s].ctes[strings.ToLower(cte.Ctename)] = true
		if !w.Recursive {
			a.defineCTE(s, cte, false)
		}
	}
}

// nested analyses a statement inside another (CTE body, sublink) in a child
// scope of parent.
func (a *analyzer) nested(n *pg_query.Node, parent int) {
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		a.selectStmt(x.SelectStmt, parent)
	case *pg_query.Node_InsertStmt:
		a.st.nestedWrite = true
		a.st.writes = true
		s := a.newScope(parent)
		a.withClause(x.InsertStmt.WithClause, s)
		a.addRel(x.InsertStmt.Relation, s, true)
		a.scanAll(x.InsertStmt.SelectStmt, s)
		for _, r := range x.InsertStmt.ReturningList {
			a.scanAll(r, s)
		}
	case *pg_query.Node_UpdateStmt:
		a.st.nestedWrite = true
		a.updateStmt(x.UpdateStmt, parent)
	case *pg_query.Node_DeleteStmt:
		a.st.nestedWrite = true
		a.deleteStmt(x.DeleteStmt, parent)
	default:
		a.scanAll(n, parent)
	}
}

// selectStmt analyses a SELECT in a new scope under parent and returns it.
func (a *analyzer) selectStmt(sel *pg_query.SelectStmt, parent int) int {
	s := a.newScope(parent)
	if a.selScope == nil {
		a.selScope = map[*pg_query.SelectStmt]int{}
	}
	a.selScope[sel] = s
	a.withClause(sel.WithClause, s)
	sh := shapeOf(sel, s)
	if !sh.empty() {
		if a.st.shapes == nil {
			a.st.shapes = map[int]*selShape{}
		}
		a.st.shapes[s] = &sh
	}
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		var arms []int
		for _, arm := range []*pg_query.SelectStmt{sel.Larg, sel.Rarg} {
			if arm == nil {
				continue
			}
			as := a.selectStmt(arm, s)
			if arm.Op != pg_query.SetOperation_SETOP_NONE {
				arms = append(arms, a.st.arms[as]...)
			} else {
				arms = append(arms, as)
			}
		}
		if a.st.arms == nil {
			a.st.arms = map[int][]int{}
		}
		a.st.arms[s] = arms
		a.scanList(sel.SortClause, s)
		a.scanAll(sel.LimitCount, s)
		a.scanAll(sel.LimitOffset, s)
		return s
	}
	for _, f := range sel.FromClause {
		a.fromItem(f, s, false)
	}
	a.restrict(s, sel.WhereClause)
	a.scanList(sel.ValuesLists, s)
	a.scanList(sel.TargetList, s)
	a.scanList(sel.GroupClause, s)
	a.scanAll(sel.HavingClause, s)
	a.scanList(sel.SortClause, s)
	a.scanAll(sel.LimitCount, s)
	a.scanAll(sel.LimitOffset, s)
	a.scanList(sel.WindowClause, s)
	a.scanList(sel.DistinctClause, s)
	return s
}

// selectShape records what a top-level SELECT needs beyond concatenation
// when it is scattered.
func (a *analyzer) selectShape(sel *pg_query.SelectStmt, s int) {
	st := a.st
	st.topScope = s
	sh := shapeOf(sel, s)
	st.mergeNeeds = append(st.mergeNeeds, sh.merge...)
	st.groupNeeds = append(st.groupNeeds, sh.group...)
	st.groupBy = append(st.groupBy, sh.groupBy...)
	st.windows = append(st.windows, sh.windows...)
}

// selShape is what one SELECT (top-level or nested) needs beyond
// concatenating rows when its tables are scattered.
type selShape struct {
	merge      []string // need merging whatever the grouping
	group      []string // fine when grouped by the key
	groupBy    []colRef
	windows    []windowUse // window function calls
	distinctBy []colRef    // DISTINCT [ON]'s bare columns: with the key, each distinct row's duplicates are on its shard
}

// windowUse is one window function call and the columns its window is
// partitioned by; when they include the scattered class's key, every
// partition is on one shard and the shards compute it completely.
type windowUse struct {
	name      string
	partition []colRef
}

func (sh *selShape) empty() bool {
	return len(sh.merge) == 0 && len(sh.group) == 0 && len(sh.windows) == 0
}

// shapeOf computes the shape of sel, analysed in scope s. Aggregates and
// window functions inside sublinks belong to the sublink's own SELECT.
func shapeOf(sel *pg_query.SelectStmt, s int) selShape {
	var sh selShape
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		name := strings.TrimPrefix(sel.Op.String(), "SETOP_")
		if sel.All {
			name += " ALL"
		}
		sh.merge = append(sh.merge, name)
	}
	if len(sel.SortClause) > 0 {
		sh.merge = append(sh.merge, "ORDER BY")
	}
	if sel.LimitCount != nil || sel.LimitOffset != nil {
		sh.merge = append(sh.merge, "LIMIT/OFFSET")
	}
	if len(sel.DistinctClause) > 0 {
		sh.merge = append(sh.merge, "DISTINCT")
		// The columns whose values make rows distinct: DISTINCT ON's
		// expressions, or plain DISTINCT's output columns (bare column
		// references only; DistinctClause is then one empty node).
		on := sel.DistinctClause
		if len(on) == 1 && on[0].GetNode() == nil {
			on = nil
			for _, t := range sel.TargetList {
				if rt := t.GetResTarget(); rt != nil {
					on = append(on, rt.Val)
				}
			}
		}
		for _, e := range on {
			cr := e.GetColumnRef()
			if cr == nil {
				cr = positionalColumn(sel, e) // DISTINCT ON (1)
			}
			if cr != nil {
				if c, ok := colRefOf(cr, s); ok {
					sh.distinctBy = append(sh.distinctBy, c)
				}
			}
		}
	}
	named := map[string]*pg_query.WindowDef{}
	for _, w := range sel.WindowClause {
		if wd := w.GetWindowDef(); wd != nil && wd.Name != "" {
			named[wd.Name] = wd
		}
	}
	partitionOf := func(over *pg_query.WindowDef) []colRef {
		var cols []colRef
		for over != nil {
			for _, p := range over.PartitionClause {
				if cr := p.GetColumnRef(); cr != nil {
					if c, ok := colRefOf(cr, s); ok {
						cols = append(cols, c)
					}
				}
			}
			// OVER w names a WINDOW clause entry; OVER (w ORDER BY ...)
			// copies w's partition.
			ref := over.Refname
			if ref == "" {
				ref = over.Name
			}
			if ref == "" || named[ref] == over {
				break
			}
			over = named[ref]
		}
		return cols
	}
	for _, t := range sel.TargetList {
		walkExpr(t, func(c *pg_query.Node) bool {
			if c.GetSubLink() != nil || c.GetSelectStmt() != nil {
				return false
			}
			fc := c.GetFuncCall()
			if fc == nil {
				return true
			}
			name := funcName(fc)
			if fc.Over != nil {
				sh.windows = append(sh.windows, windowUse{name: name, partition: partitionOf(fc.Over)})
			} else if isAggCall(fc) {
				sh.group = append(sh.group, "aggregate "+name+"()")
			}
			return true
		})
	}
	if len(sel.GroupClause) > 0 {
		sh.group = append(sh.group, "GROUP BY")
		for _, g := range sel.GroupClause {
			cr := g.GetColumnRef()
			if cr == nil {
				cr = positionalColumn(sel, g) // GROUP BY 1
			}
			if cr != nil {
				if c, ok := colRefOf(cr, s); ok {
					sh.groupBy = append(sh.groupBy, c)
				}
			}
		}
	}
	if sel.HavingClause != nil {
		sh.group = append(sh.group, "HAVING")
	}
	return sh
}

// positionalColumn resolves a GROUP BY or DISTINCT ON item written as an
// output column number (GROUP BY 1) to the bare column reference at that
// position of sel's target list. It returns nil when n is not a number,
// is out of range (PostgreSQL reports that), names an expression, or a *
// comes at or before it (positions then count the expanded columns).
func positionalColumn(sel *pg_query.SelectStmt, n *pg_query.Node) *pg_query.ColumnRef {
	c := n.GetAConst()
	if c == nil {
		return nil
	}
	iv, ok := c.Val.(*pg_query.A_Const_Ival)
	if !ok || iv.Ival == nil {
		return nil
	}
	p := int(iv.Ival.Ival)
	if p < 1 || p > len(sel.TargetList) {
		return nil
	}
	for _, t := range sel.TargetList[:p] {
		rt := t.GetResTarget()
		if rt == nil {
			return nil
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			if _, ok := colRefOf(cr, 0); !ok {
				return nil // * or t.*
			}
		}
	}
	return sel.TargetList[p-1].GetResTarget().Val.GetColumnRef()
}

// isAggCall reports whether fc is an aggregate call (not a window call).
func isAggCall(fc *pg_query.FuncCall) bool {
	return fc.Over == nil && (fc.AggStar || fc.AggDistinct || len(fc.AggOrder) > 0 || fc.AggFilter != nil || fc.AggWithinGroup || aggregateNames[funcName(fc)])
}

var aggregateNames = map[string]bool{
	"count": true, "sum": true, "avg": true, "min": true, "max": true, "array_agg": true, "string_agg": true,
	"bool_and": true, "bool_or": true, "every": true, "json_agg": true, "jsonb_agg": true, "json_object_agg": true,
	"jsonb_object_agg": true, "xmlagg": true, "bit_and": true, "bit_or": true, "bit_xor": true, "stddev": true,
	"stddev_pop": true, "stddev_samp": true, "variance": true, "var_pop": true, "var_samp": true, "corr": true,
	"covar_pop": true, "covar_samp": true, "regr_count": true, "percentile_cont": true, "percentile_disc": true,
	"mode": true, "range_agg": true, "range_intersect_agg": true, "any_value": true,
}

// writingFuncs are functions whose call makes a statement a write (or
// session-bound) even inside a SELECT.
var writingFuncs = map[string]bool{
	"nextval": true, "setval": true, "set_config": true, "pg_advisory_lock": true, "pg_advisory_xact_lock": true,
	"pg_try_advisory_lock": true, "pg_try_advisory_xact_lock": true, "pg_advisory_unlock": true,
	"pg_advisory_unlock_all": true, "pg_advisory_lock_shared": true, "pg_notify": true, "lo_create": true,
	"lo_import": true, "lo_unlink": true, "txid_current": true, "pg_current_xact_id": true, "lo_from_bytea": true,
	"pg_terminate_backend": true, "pg_cancel_backend": true,
}

func funcName(fc *pg_query.FuncCall) string {
	if len(fc.Funcname) == 0 {
		return ""
	}
	if s := fc.Funcname[len(fc.Funcname)-1].GetString_(); s != nil {
		return strings.ToLower(s.Sval)
	}
	return ""
}

func hasWritingCall(n *pg_query.Node) bool {
	found := false
	walkNodes(n, func(c *pg_query.Node) bool {
		if fc := c.GetFuncCall(); fc != nil && writingFuncs[funcName(fc)] {
			found = true
		}
		return !found
	})
	return found
}

func (a *analyzer) fromItem(n *pg_query.Node, s int, nullable bool) {
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		a.addRel(x.RangeVar, s, false)
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		lnull := nullable || j.Jointype == pg_query.JoinType_JOIN_RIGHT || j.Jointype == pg_query.JoinType_JOIN_FULL
		rnull := nullable || j.Jointype == pg_query.JoinType_JOIN_LEFT || j.Jointype == pg_query.JoinType_JOIN_FULL
		a.fromItem(j.Larg, s, lnull)
		a.fromItem(j.Rarg, s, rnull)
		if j.Quals != nil {
			a.collectEqs(j.Quals, s)
			if j.Jointype == pg_query.JoinType_JOIN_INNER && !nullable {
				a.andPred(s, a.toPred(j.Quals, s))
			}
			a.scanAll(j.Quals, s)
		}
		if len(j.UsingClause) > 0 {
			l, r := joinSideName(j.Larg), joinSideName(j.Rarg)
			if l != "" && r != "" {
				for _, u := range j.UsingClause {
					if str := u.GetString_(); str != nil {
						col := strings.ToLower(str.Sval)
						a.st.eqs = append(a.st.eqs, colEq{colRef{s, []string{l}, col}, colRef{s, []string{r}, col}})
					}
				}
			}
		}
	case *pg_query.Node_RangeSubselect:
		rs := x.RangeSubselect
		if rs.Subquery != nil {
			a.nested(rs.Subquery, s)
		}
		r := rel{kind: relDerived, scope: s}
		if rs.Alias != nil {
			r.refName = strings.ToLower(rs.Alias.Aliasname)
			r.aliased = true
		}
		a.st.rels = append(a.st.rels, r)
		a.st.scopes[s].rels = append(a.st.scopes[s].rels, len(a.st.rels)-1)
		a.derivedRef(len(a.st.rels)-1, rs)
	case *pg_query.Node_RangeFunction:
		a.scanAll(n, s)
		r := rel{kind: relFunc, scope: s}
		if x.RangeFunction.Alias != nil {
			r.refName = strings.ToLower(x.RangeFunction.Alias.Aliasname)
			r.aliased = true
		}
		a.st.rels = append(a.st.rels, r)
		a.st.scopes[s].rels = append(a.st.scopes[s].rels, len(a.st.rels)-1)
	default:
		a.scanAll(n, s)
	}
}

func joinSideName(n *pg_query.Node) string {
	if rv := n.GetRangeVar(); rv != nil {
		if rv.Alias != nil && rv.Alias.Aliasname != "" {
			return strings.ToLower(rv.Alias.Aliasname)
		}
		return strings.ToLower(rv.Relname)
	}
	return ""
}

// restrict adds a WHERE clause to scope s: its key predicates, its
// top-level column equalities, and the scopes of its sublinks.
func (a *analyzer) restrict(s int, where *pg_query.Node) {
	if where == nil {
		return
	}
	a.collectEqs(where, s)
	a.andPred(s, a.toPred(where, s))
	a.scanAll(where, s)
}

func (a *analyzer) andPred(s int, p *pred) {
	if p == nil {
		return
	}
	cur := a.st.scopes[s].pred
	if cur == nil {
		a.st.scopes[s].pred = p
		return
	}
	a.st.scopes[s].pred = &pred{op: pAnd, kids: []*pred{cur, p}}
}

// collectEqs records col = col equalities among the top-level AND
// conjuncts of e.
func (a *analyzer) collectEqs(e *pg_query.Node, s int) {
	if b := e.GetBoolExpr(); b != nil {
		if b.Boolop == pg_query.BoolExprType_AND_EXPR {
			for _, k := range b.Args {
				a.collectEqs(k, s)
			}
		}
		return
	}
	a.semiJoin(e, s)
	x := e.GetAExpr()
	if x == nil || x.Kind != pg_query.A_Expr_Kind_AEXPR_OP || opName(x) != "=" {
		return
	}
	l, r := x.Lexpr.GetColumnRef(), x.Rexpr.GetColumnRef()
	if l == nil || r == nil {
		return
	}
	lc, ok1 := colRefOf(l, s)
	rc, ok2 := colRefOf(r, s)
	if ok1 && ok2 {
		a.st.eqs = append(a.st.eqs, colEq{lc, rc})
	}
}

func opName(x *pg_query.A_Expr) string {
	if len(x.Name) == 0 {
		return ""
	}
	if s := x.Name[len(x.Name)-1].GetString_(); s != nil {
		return s.Sval
	}
	return ""
}

func colRefOf(cr *pg_query.ColumnRef, s int) (colRef, bool) {
	var parts []string
	for _, f := range cr.Fields {
		str := f.GetString_()
		if str == nil {
			return colRef{}, false // A_Star
		}
		parts = append(parts, strings.ToLower(str.Sval))
	}
	if len(parts) == 0 {
		return colRef{}, false
	}
	return colRef{scope: s, qual: parts[:len(parts)-1], name: parts[len(parts)-1]}, true
}

// toPred turns a boolean expression into a key predicate tree; nil means
// "no restriction we understand".
func (a *analyzer) toPred(e *pg_query.Node, s int) *pred {
	if e == nil {
		return nil
	}
	if b := e.GetBoolExpr(); b != nil {
		switch b.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			var kids []*pred
			for _, k := range b.Args {
				if p := a.toPred(k, s); p != nil {
					kids = append(kids, p)
				}
			}
			if len(kids) == 0 {
				return nil
			}
			if len(kids) == 1 {
				return kids[0]
			}
			return &pred{op: pAnd, kids: kids}
		case pg_query.BoolExprType_OR_EXPR:
			var kids []*pred
			for _, k := range b.Args {
				p := a.toPred(k, s)
				if p == nil {
					return nil
				}
				kids = append(kids, p)
			}
			return &pred{op: pOr, kids: kids}
		}
		return nil
	}
	x := e.GetAExpr()
	if x == nil || opName(x) != "=" {
		return nil
	}
	switch x.Kind {
	case pg_query.A_Expr_Kind_AEXPR_OP:
		if cr := x.Lexpr.GetColumnRef(); cr != nil {
			if v := valueOf(x.Rexpr); v.kind != vOther {
				if c, ok := colRefOf(cr, s); ok {
					return &pred{op: pCol, col: c, vals: []valExpr{v}}
				}
			}
		}
		if cr := x.Rexpr.GetColumnRef(); cr != nil {
			if v := valueOf(x.Lexpr); v.kind != vOther {
				if c, ok := colRefOf(cr, s); ok {
					return &pred{op: pCol, col: c, vals: []valExpr{v}}
				}
			}
		}
	case pg_query.A_Expr_Kind_AEXPR_IN:
		cr := x.Lexpr.GetColumnRef()
		l := x.Rexpr.GetList()
		if cr == nil || l == nil {
			return nil
		}
		c, ok := colRefOf(cr, s)
		if !ok {
			return nil
		}
		var vals []valExpr
		for _, it := range l.Items {
			v := valueOf(it)
			if v.kind == vOther {
				return nil
			}
			vals = append(vals, v)
		}
		return &pred{op: pCol, col: c, vals: vals}
	case pg_query.A_Expr_Kind_AEXPR_OP_ANY:
		cr := x.Lexpr.GetColumnRef()
		if cr == nil {
			return nil
		}
		c, ok := colRefOf(cr, s)
		if !ok {
			return nil
		}
		if v := arrayOf(x.Rexpr); v.kind != vOther {
			return &pred{op: pCol, col: c, vals: []valExpr{v}}
		}
	}
	return nil
}

// valueOf classifies a scalar expression: a literal, $n, NULL, possibly
// under casts; anything else is vOther.
func valueOf(n *pg_query.Node) valExpr {
	if n == nil {
		return valExpr{kind: vOther, loc: -1}
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_AConst:
		return constVal(x.AConst)
	case *pg_query.Node_ParamRef:
		return valExpr{kind: vParam, param: int(x.ParamRef.Number) - 1, loc: int(x.ParamRef.Location)}
	case *pg_query.Node_TypeCast:
		v := valueOf(x.TypeCast.Arg)
		if v.kind == vConst || v.kind == vParam || v.kind == vNull {
			return v
		}
	case *pg_query.Node_SetToDefault:
		return valExpr{kind: vDefault, loc: int(x.SetToDefault.Location)}
	case *pg_query.Node_AExpr:
		// -<const> when the parser did not fold the sign.
		if x.AExpr.Kind == pg_query.A_Expr_Kind_AEXPR_OP && x.AExpr.Lexpr == nil && opName(x.AExpr) == "-" {
			if v := valueOf(x.AExpr.Rexpr); v.kind == vConst {
				if strings.HasPrefix(v.text, "-") {
					v.text = v.text[1:]
				} else {
					v.text = "-" + v.text
				}
				return v
			}
		}
	}
	return valExpr{kind: vOther, loc: -1}
}

func constVal(c *pg_query.A_Const) valExpr {
	loc := int(c.Location)
	if c.Isnull {
		return valExpr{kind: vNull, loc: loc}
	}
	switch v := c.Val.(type) {
	case *pg_query.A_Const_Ival:
		return valExpr{kind: vConst, text: strconv.FormatInt(int64(v.Ival.Ival), 10), loc: loc}
	case *pg_query.A_Const_Fval:
		return valExpr{kind: vConst, text: v.Fval.Fval, loc: loc}
	case *pg_query.A_Const_Sval:
		return valExpr{kind: vConst, text: v.Sval.Sval, str: true, loc: loc}
	case *pg_query.A_Const_Boolval:
		return valExpr{kind: vConst, text: strconv.FormatBool(v.Boolval.Boolval), loc: loc}
	}
	return valExpr{kind: vOther, loc: loc}
}

// arrayOf classifies the right side of = ANY(...).
func arrayOf(n *pg_query.Node) valExpr {
	if n == nil {
		return valExpr{kind: vOther}
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_ParamRef:
		return valExpr{kind: vArrayParam, param: int(x.ParamRef.Number) - 1}
	case *pg_query.Node_TypeCast:
		return arrayOf(x.TypeCast.Arg)
	case *pg_query.Node_AArrayExpr:
		v := valExpr{kind: vArrayConst}
		for _, e := range x.AArrayExpr.Elements {
			ev := valueOf(e)
			if ev.kind != vConst && ev.kind != vParam && ev.kind != vNull {
				return valExpr{kind: vOther}
			}
			v.elems = append(v.elems, ev)
		}
		return v
	case *pg_query.Node_AConst:
		c := constVal(x.AConst)
		if c.kind != vConst {
			return valExpr{kind: vOther}
		}
		elems, ok := parseTextArray(c.text)
		if !ok {
			return valExpr{kind: vOther}
		}
		v := valExpr{kind: vArrayConst}
		for _, e := range elems {
			if e == nil {
				v.elems = append(v.elems, valExpr{kind: vNull})
			} else {
				v.elems = append(v.elems, valExpr{kind: vConst, text: *e, str: true})
			}
		}
		return v
	}
	return valExpr{kind: vOther}
}

// scanAll finds sublinks and other nested statements in n and analyses them
// as child scopes of s.
func (a *analyzer) scanAll(n *pg_query.Node, s int) {
	if n == nil {
		return
	}
	walkExpr(n, func(c *pg_query.Node) bool {
		switch x := c.Node.(type) {
		case *pg_query.Node_SubLink:
			if x.SubLink.Testexpr != nil {
				a.scanAll(x.SubLink.Testexpr, s)
			}
			if x.SubLink.Subselect != nil {
				a.nested(x.SubLink.Subselect, s)
			}
			return false
		case *pg_query.Node_SelectStmt, *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt:
			a.nested(c, s)
			return false
		case *pg_query.Node_RangeVar:
			a.addRel(x.RangeVar, s, false)
			return false
		}
		return true
	})
}

func (a *analyzer) scanList(ns []*pg_query.Node, s int) {
	for _, n := range ns {
		a.scanAll(n, s)
	}
}

func (a *analyzer) updateStmt(u *pg_query.UpdateStmt, parent int) {
	st := a.st
	st.writes = true
	s := a.newScope(parent)
	a.withClause(u.WithClause, s)
	t := a.addRel(u.Relation, s, true)
	if parent < 0 {
		st.target = t
		for _, tl := range u.TargetList {
			if rt := tl.GetResTarget(); rt != nil {
				st.setCols = append(st.setCols, strings.ToLower(rt.Name))
			}
		}
	}
	for _, f := range u.FromClause {
		a.fromItem(f, s, false)
	}
	a.restrict(s, u.WhereClause)
	a.scanList(u.TargetList, s)
	a.scanList(u.ReturningList, s)
}

func (a *analyzer) deleteStmt(d *pg_query.DeleteStmt, parent int) {
	st := a.st
	st.writes = true
	s := a.newScope(parent)
	a.withClause(d.WithClause, s)
	t := a.addRel(d.Relation, s, true)
	if parent < 0 {
		st.target = t
	}
	for _, f := range d.UsingClause {
		a.fromItem(f, s, false)
	}
	a.restrict(s, d.WhereClause)
	a.scanList(d.ReturningList, s)
}

func (a *analyzer) insertStmt(ins *pg_query.InsertStmt) {
	st := a.st
	st.writes = true
	s := a.newScope(-1)
	a.withClause(ins.WithClause, s)
	st.target = a.addRel(ins.Relation, s, true)
	ii := &insertInfo{target: st.target, colsClose: -1, returning: len(ins.ReturningList) > 0}
	st.ins = ii
	for _, c := range ins.Cols {
		if rt := c.GetResTarget(); rt != nil {
			ii.cols = append(ii.cols, strings.ToLower(rt.Name))
		}
	}
	sel := ins.SelectStmt.GetSelectStmt()
	switch {
	case ins.SelectStmt == nil:
		ii.defaultValues = true
	case sel != nil && len(sel.ValuesLists) > 0 && sel.Op == pg_query.SetOperation_SETOP_NONE && len(sel.FromClause) == 0:
		for _, row := range sel.ValuesLists {
			l := row.GetList()
			var vals []valExpr
			if l != nil {
				for _, it := range l.Items {
					vals = append(vals, valueOf(it))
				}
			}
			ii.rows = append(ii.rows, vals)
			a.scanAll(row, s)
		}
		a.withClause(sel.WithClause, s)
		a.insertText(ins, ii)
	default:
		ii.fromSelect = true
		a.nested(ins.SelectStmt, s)
	}
	if oc := ins.OnConflictClause; oc != nil {
		ii.onConflict = "nothing"
		if oc.Action == pg_query.OnConflictAction_ONCONFLICT_UPDATE {
			ii.onConflict = "update"
			for _, tl := range oc.TargetList {
				rt := tl.GetResTarget()
				if rt == nil {
					continue
				}
				sc := setCol{name: strings.ToLower(rt.Name)}
				if cr := rt.Val.GetColumnRef(); cr != nil {
					if c, ok := colRefOf(cr, s); ok && len(c.qual) == 1 && c.qual[0] == "excluded" && c.name == sc.name {
						sc.excludedSame = true
					}
				}
				ii.conflictSet = append(ii.conflictSet, sc)
			}
			a.scanList(oc.TargetList, s)
			a.scanAll(oc.WhereClause, s)
		}
	}
	a.scanList(ins.ReturningList, s)
}

// insertText finds, with the scanner, the text spans of each VALUES row,
// the end of the column list and every $n, so plans can split and rewrite
// the statement without deparsing it.
func (a *analyzer) insertText(ins *pg_query.InsertStmt, ii *insertInfo) {
	st := a.st
	text := a.sql[st.start:st.end]
	sc, err := pg_query.Scan(text)
	if err != nil {
		return
	}
	toks := sc.Tokens
	depth := 0
	valuesAt := -1
	lastCol := -1
	if n := len(ins.Cols); n > 0 {
		if rt := ins.Cols[n-1].GetResTarget(); rt != nil {
			lastCol = int(rt.Location) - st.start
		}
	}
	for i, t := range toks {
		switch t.Token {
		case pg_query.Token_PARAM:
			n, _ := strconv.Atoi(text[t.Start+1 : t.End])
			st.params = append(st.params, paramTok{start: int(t.Start) + st.start, end: int(t.End) + st.start, n: n})
			if n > st.maxParam {
				st.maxParam = n
			}
		case pg_query.Token_ASCII_40:
			depth++
		case pg_query.Token_ASCII_41:
			depth--
			if depth == 0 && lastCol >= 0 && ii.colsClose < 0 && int(t.Start) > lastCol && valuesAt < 0 {
				ii.colsClose = int(t.Start) + st.start
			}
		case pg_query.Token_VALUES:
			if depth == 0 && valuesAt < 0 {
				valuesAt = i
			}
		}
	}
	if valuesAt < 0 {
		return
	}
	var spans [][2]int
	depth = 0
	start := -1
	for _, t := range toks[valuesAt+1:] {
		if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
			continue
		}
		if depth == 0 {
			if t.Token == pg_query.Token_ASCII_40 {
				start = int(t.Start)
				depth = 1
				continue
			}
			if t.Token == pg_query.Token_ASCII_44 {
				continue
			}
			break
		}
		switch t.Token {
		case pg_query.Token_ASCII_40:
			depth++
		case pg_query.Token_ASCII_41:
			depth--
			if depth == 0 {
				spans = append(spans, [2]int{start + st.start, int(t.End) + st.start})
			}
		}
	}
	if len(spans) == len(ii.rows) {
		ii.rowSpans = spans
	}
}

func (a *analyzer) copyStmt(c *pg_query.CopyStmt) {
	st := a.st
	st.kind = KindCopy
	ci := &copyInfo{target: -1, from: c.IsFrom, stdio: c.Filename == "" && !c.IsProgram, format: "text", null: `\N`}
	st.cp = ci
	s := a.newScope(-1)
	if c.Relation != nil {
		ci.target = a.addRel(c.Relation, s, c.IsFrom)
		st.target = ci.target
	}
	for _, at := range c.Attlist {
		if str := at.GetString_(); str != nil {
			ci.cols = append(ci.cols, strings.ToLower(str.Sval))
		}
	}
	if c.Query != nil {
		ci.query = copyQueryText(a.sql[st.start:st.end])
		if sel := c.Query.GetSelectStmt(); sel != nil {
			q := a.selectStmt(sel, s)
			a.selectShape(sel, q)
		} else {
			a.nested(c.Query, s)
		}
	}
	delimSet, quoteSet, escSet, nullSet := false, false, false, false
	for _, o := range c.Options {
		de := o.GetDefElem()
		if de == nil {
			continue
		}
		val := defElemString(de)
		switch strings.ToLower(de.Defname) {
		case "format":
			ci.format = strings.ToLower(val)
		case "delimiter":
			if len(val) == 1 {
				ci.delim = val[0]
				delimSet = true
			}
		case "quote":
			if len(val) == 1 {
				ci.quote = val[0]
				quoteSet = true
			}
		case "escape":
			if len(val) == 1 {
				ci.escape = val[0]
				escSet = true
			}
		case "null":
			ci.null = val
			nullSet = true
		case "header":
			v := strings.ToLower(val)
			ci.header = v == "" || v == "true" || v == "on" || v == "1" || v == "match"
		default:
			ci.otherOpts = true
		}
	}
	if ci.format == "csv" {
		if !delimSet {
			ci.delim = ','
		}
		if !quoteSet {
			ci.quote = '"'
		}
		if !escSet {
			ci.escape = ci.quote
		}
		if !nullSet {
			ci.null = ""
		}
	} else if !delimSet {
		ci.delim = '\t'
	}
	if c.IsFrom {
		st.writes = true
	}
}

func defElemString(de *pg_query.DefElem) string {
	if de.Arg == nil {
		return ""
	}
	switch x := de.Arg.Node.(type) {
	case *pg_query.Node_String_:
		return x.String_.Sval
	case *pg_query.Node_Boolean:
		return strconv.FormatBool(x.Boolean.Boolval)
	case *pg_query.Node_Integer:
		return strconv.Itoa(int(x.Integer.Ival))
	case *pg_query.Node_AConst:
		return constVal(x.AConst).text
	}
	return ""
}

func (a *analyzer) explainStmt(e *pg_query.ExplainStmt) {
	st := a.st
	st.kind = KindExplain
	text := a.sql[st.start:st.end]
	for _, o := range e.Options {
		if de := o.GetDefElem(); de != nil && strings.ToLower(de.Defname) == "analyze" {
			v := strings.ToLower(defElemString(de))
			st.explainAnlz = v == "" || v == "true" || v == "on" || v == "1"
		}
	}
	sc, err := pg_query.Scan(text)
	if err != nil || e.Query == nil {
		st.unsupported = unsupported("cannot find the statement inside EXPLAIN", "")
		return
	}
	toks := sc.Tokens
	i := 0
	for i < len(toks) && (toks[i].Token == pg_query.Token_SQL_COMMENT || toks[i].Token == pg_query.Token_C_COMMENT) {
		i++
	}
	if i < len(toks) && toks[i].Token == pg_query.Token_EXPLAIN {
		i++
	}
	if i < len(toks) && toks[i].Token == pg_query.Token_ASCII_40 {
		depth := 0
		for ; i < len(toks); i++ {
			if toks[i].Token == pg_query.Token_ASCII_40 {
				depth++
			} else if toks[i].Token == pg_query.Token_ASCII_41 {
				depth--
				if depth == 0 {
					i++
					break
				}
			}
		}
	}
	for i < len(toks) {
		switch toks[i].Token {
		case pg_query.Token_ANALYZE, pg_query.Token_ANALYSE, pg_query.Token_VERBOSE, pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			i++
			continue
		}
		break
	}
	if i >= len(toks) {
		st.unsupported = unsupported("cannot find the statement inside EXPLAIN", "")
		return
	}
	innerStart := st.start + int(toks[i].Start)
	st.explainPre = a.sql[st.start:innerStart]
	st.explain = analyzeStmt(a.sql, e.Query, innerStart, st.end)
	st.rels = st.explain.rels
	st.writes = st.explain.writes && st.explainAnlz
}

// walkNodes calls fn for every Node under n (n included), depth first;
// fn returning false skips that node's children. RangeVars embedded
// directly in statements (not wrapped in a Node) are passed wrapped.
func walkNodes(n *pg_query.Node, fn func(*pg_query.Node) bool) {
	if n == nil {
		return
	}
	walkValue(reflect.ValueOf(n), fn)
}

// walkExpr is walkNodes for expressions: fn sees nested statements and
// decides whether to descend.
func walkExpr(n *pg_query.Node, fn func(*pg_query.Node) bool) { walkNodes(n, fn) }

var (
	nodeType     = reflect.TypeOf((*pg_query.Node)(nil))
	rangeVarType = reflect.TypeOf((*pg_query.RangeVar)(nil))
)

// walkValue walks the generated parse-tree structs with the standard
// reflect package (exported fields only: pointers, slices, oneof
// interfaces). The tree is a few dozen nodes and analyses are cached, so
// reflection's cost does not matter here.
func walkValue(v reflect.Value, fn func(*pg_query.Node) bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		switch v.Type() {
		case nodeType:
			if !fn(v.Interface().(*pg_query.Node)) {
				return
			}
		case rangeVarType:
			fn(&pg_query.Node{Node: &pg_query.Node_RangeVar{RangeVar: v.Interface().(*pg_query.RangeVar)}})
			return
		}
		walkValue(v.Elem(), fn)
	case reflect.Interface:
		if !v.IsNil() {
			walkValue(v.Elem(), fn)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Pointer {
			return
		}
		for i := 0; i < v.Len(); i++ {
			walkValue(v.Index(i), fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Pointer, reflect.Interface, reflect.Slice:
				walkValue(v.Field(i), fn)
			}
		}
	}
}

// stmtTypeName turns a node type such as *pg_query.Node_AlterTableStmt into
// "ALTER TABLE".
func stmtTypeName(x any) string {
	name := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", x), "*pg_query.Node_"), "Stmt")
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
