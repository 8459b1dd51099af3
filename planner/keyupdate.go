package planner

import (
	"fmt"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// UPDATE of the distribution key (plan.KeyUpdate). On the shards its
// WHERE selects, a locking SELECT computes each row's new key, then the
// statement's own SET list runs on those rows with the key set only where
// it stays on the shard (keyupdate_sql.go), returning the rows to the
// proxy instead of the client's RETURNING list; the executor moves the
// rows whose new key belongs elsewhere and then evaluates the client's
// RETURNING list over the updated rows where they ended up. What the
// move could not keep exact is refused here with 0A000: UPDATE … FROM,
// WITH, WHERE CURRENT OF, a subquery in RETURNING, EXPLAIN ANALYZE (it
// would run the UPDATE without the move); tables referenced by foreign
// keys, partitioned and inherited ones are refused by the executor,
// which reads the catalog inside the transaction.

// keyUpdateTmpl is what a key update derives from its text, once per
// binding.
type keyUpdateTmpl struct {
	source    *Analysis // the UPDATE with RETURNING ctid, <ref>.* (routing and checks)
	lock      *Analysis // SELECT ctid, CAST(<new key> AS <key type>) … WHERE … FOR UPDATE
	lockIdx   []int     // the client's values lock's $1… are
	update    string    // the UPDATE of the locked rows (plan.KeyUpdate.Update)
	updateIdx []int
	tableSQL  string
	returning string // SELECT <client's RETURNING list> … WHERE ctid = ANY($n::tid[]); "" without
	retParams []int
	keySet    valExpr // what SET gives the key, when a constant or $n (else kind vOther)
	err       error
}

func (p *Planner) planKeyUpdate(snap *topology.Snapshot, a *Analysis, st *stmtInfo, b *binding, params *Params) (plan.Operator, error) {
	rb := b.rels[st.target]
	table := st.rels[st.target].name
	b.mu.Lock()
	t := b.keyUpd
	if t == nil {
		t = p.keyUpdateTemplate(a.SQL[st.start:st.end], rb.key, table, rb.kt)
		b.keyUpd = t
	}
	b.mu.Unlock()
	if t.err != nil {
		return nil, t.err
	}
	sst := t.source.Statements[0].info
	sb := sst.bind(snap)
	if sb.err != nil {
		return nil, sb.err
	}
	src, err := p.planWrite(sst, sb, t.source.SQL, params)
	if err != nil {
		return nil, err
	}
	switch s := src.(type) {
	case *plan.Route:
		if stays, err := t.keyStaysOn(b, rb.dist, rb.kt, s.Shard, params); err != nil {
			return nil, err
		} else if stays {
			// Every row it can update is on s.Shard and keeps a key of
			// that shard (`SET id = $1 … WHERE id = $1`, as ORMs write):
			// a plain Route of the statement.
			return &plan.Route{Shard: s.Shard, SQL: a.SQL[st.start:st.end], Reason: s.Reason + "; the new " + rb.key + " belongs to the same shard"}, nil
		}
		s.Reason = "rows to update: " + s.Reason
	}
	for _, s := range a.Statements {
		if s.info.explain == st && s.info.explainAnlz {
			return nil, unsupported(fmt.Sprintf("EXPLAIN ANALYZE of an UPDATE of the distribution key column %s of %s that may move rows is not supported (it would run the UPDATE without moving them)", rb.key, table),
				"use EXPLAIN without ANALYZE")
		}
	}
	switch src.(type) {
	case *plan.Route, *plan.Scatter:
	default:
		return nil, unsupported(fmt.Sprintf("this UPDATE of the distribution key column %s of %s cannot be run as one step per shard", rb.key, table),
			"update the rows of one key at a time")
	}
	// The rows are locked and their new keys computed by t.lock, planned
	// like any statement (so it reads only owned rows during a move).
	lst := t.lock.Statements[0].info
	lb := lst.bind(snap)
	if lb.err != nil {
		return nil, lb.err
	}
	lockParams := SelectParams(*params, t.lockIdx)
	lock, err := p.planRead(lst, lb, t.lock.SQL, &lockParams, false, false)
	if err != nil {
		return nil, err
	}
	switch l := lock.(type) {
	case *plan.Route:
		l.ReadOnly = false
	case *plan.Scatter:
		l.ReadOnly = false
		// During a move, a shard holding rows it does not own locks only
		// its own: the WHERE clause the ownership filter gives the UPDATE
		// (a table's rows behind a subselect would have no ctid).
		sc, ok := src.(*plan.Scatter)
		if !ok {
			break
		}
		if err := restrictToOwned(snap, sc); err != nil {
			return nil, err
		}
		for shard, usql := range sc.ShardSQL {
			lsql, err := t.lockWithWhereOf(usql)
			if err != nil {
				return nil, err
			}
			if l.ShardSQL == nil {
				l.ShardSQL = map[string]string{}
			}
			l.ShardSQL[shard] = lsql
		}
	default:
		return nil, unsupported(fmt.Sprintf("this UPDATE of the distribution key column %s of %s cannot be run as one step per shard", rb.key, table),
			"update the rows of one key at a time")
	}
	return &plan.KeyUpdate{
		SQL: a.SQL[st.start:st.end], Table: table, TableSQL: t.tableSQL, Distribution: rb.dist,
		KeyColumn: rb.key, KeyType: rb.kt, Source: lock, SourceParams: t.lockIdx, Update: t.update, UpdateParams: t.updateIdx,
		Returning: t.returning, ReturningParams: t.retParams,
		Reason: "SET " + rb.key + ": rows whose new key belongs to another shard move there",
	}, nil
}

// keyUpdateTemplate parses the statement text (sql) once and builds the
// internal statements' text.
func (p *Planner) keyUpdateTemplate(sql, key, table string, kt topology.KeyType) *keyUpdateTmpl {
	refuse := func(what, hint string) *keyUpdateTmpl {
		return &keyUpdateTmpl{err: unsupported(fmt.Sprintf("%s cannot change the distribution key column %s of %s", what, key, table), hint)}
	}
	tree, err := pg_query.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return refuse("this UPDATE", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	upd := tree.Stmts[0].Stmt.GetUpdateStmt()
	if upd == nil || upd.Relation == nil {
		return refuse("this statement", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	switch {
	case len(upd.FromClause) > 0:
		return refuse("UPDATE … FROM", "compute the new keys first (e.g. SELECT them) and update with the values, without FROM")
	case upd.WithClause != nil:
		return refuse("UPDATE with a WITH clause", "run the WITH query first and update with its values")
	case upd.WhereClause.GetCurrentOfExpr() != nil:
		return refuse("UPDATE … WHERE CURRENT OF", "update by the row's key instead of through a cursor")
	}
	rv := upd.Relation
	t := &keyUpdateTmpl{tableSQL: plan.QuoteIdent(rv.Relname), keySet: valExpr{kind: vOther}}
	for _, n := range upd.TargetList {
		if rt := n.GetResTarget(); rt != nil && strings.ToLower(rt.Name) == key && len(rt.Indirection) == 0 {
			t.keySet = valueOf(rt.Val)
		}
	}
	if rv.Schemaname != "" {
		t.tableSQL = plan.QuoteIdent(rv.Schemaname) + "." + t.tableSQL
	}
	ref := rv.Relname
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		ref = rv.Alias.Aliasname
	}
	sub := false
	for _, n := range upd.ReturningList {
		walkNodes(n, func(c *pg_query.Node) bool {
			sub = sub || c.GetSubLink() != nil
			return !sub
		})
	}
	if sub {
		return refuse("UPDATE … RETURNING with a subquery", "return the table's own columns and query the rest in a separate statement")
	}
	if len(upd.ReturningList) > 0 {
		retFrom := int(upd.ReturningList[0].GetResTarget().GetLocation())
		sc, err := pg_query.Scan(sql)
		if err != nil || retFrom <= 0 || retFrom >= len(sql) {
			return refuse("this UPDATE … RETURNING", "leave out RETURNING and read the rows afterwards")
		}
		toks, _ := paramTokens(sql, 0, sc.Tokens)
		w := paramWriter{full: sql, toks: toks, renumber: len(toks) > 0}
		w.b.WriteString("SELECT ")
		w.copy(retFrom, len(sql))
		w.b.WriteString("\nFROM ONLY " + t.tableSQL)
		if ref != rv.Relname {
			w.b.WriteString(" AS " + plan.QuoteIdent(ref))
		}
		n := len(w.indexes) + 1
		w.b.WriteString(" WHERE ctid = ANY($" + strconv.Itoa(n) + "::pg_catalog.tid[])")
		t.returning = w.b.String()
		t.retParams = renumbered(&w)
	}
	// The statement that locks the rows and computes their new keys, and
	// the one that updates them (keyupdate_sql.go).
	if err := t.lockAndUpdate(p, tree, ref, key, kt); err != nil {
		return &keyUpdateTmpl{err: err}
	}
	// The statement that updates: the same UPDATE returning the rows.
	src := proto.Clone(tree).(*pg_query.ParseResult)
	su := src.Stmts[0].Stmt.GetUpdateStmt()
	su.ReturningList = []*pg_query.Node{
		pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(ref), pg_query.MakeStrNode("ctid")}, 0), 0),
		pg_query.MakeResTargetNodeWithVal(pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(ref), pg_query.MakeAStarNode()}, 0), 0),
	}
	text, err := pg_query.Deparse(src)
	if err != nil {
		return refuse("this UPDATE", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	sa, err := p.Analyze(text)
	if err != nil {
		return &keyUpdateTmpl{err: err}
	}
	if len(sa.Statements) != 1 || sa.Statements[0].info.kind != KindUpdate {
		return refuse("this UPDATE", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	t.source = sa
	return t
}

// keyStaysOn reports whether the key the statement sets (a constant or a
// Bind value) belongs to shard.
func (t *keyUpdateTmpl) keyStaysOn(b *binding, dist string, kt topology.KeyType, shard string, params *Params) (bool, error) {
	var v router.Value
	switch t.keySet.kind {
	case vConst:
		k, err := router.KeyFromText(kt, t.keySet.text)
		if err != nil {
			return false, nil
		}
		v = k
	case vParam:
		k, null, err := paramKey(params, t.keySet.param, kt)
		if err == errUnknownKey || null {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		v = k
	default:
		return false, nil
	}
	to, err := b.r.ShardForKey(dist, v)
	return err == nil && to == shard, nil
}
