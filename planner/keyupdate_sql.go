package planner

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// The two statements a key update runs on each source shard (see
// plan.KeyUpdate). Updating the key in place would make the source shard
// check foreign keys from the table (posts.author_id → users.id) against
// its own rows, and the new parent usually lives on the new key's shard:
// so the key is computed first, by a locking SELECT, and the UPDATE then
// sets it only on the rows that stay, leaving the others' key unchanged
// (no foreign key check there) until they are deleted and inserted on the
// new shard, where the check is the right one. Each SET expression is
// still evaluated once per row: the key's by the SELECT, the others' by
// the UPDATE.

// keyTypeSQL is the SQL type the new key is computed as (assignment to
// the column then gives it the column's own type, errors included).
func keyTypeSQL(kt topology.KeyType) string {
	switch kt {
	case topology.Text:
		return "pg_catalog.text"
	case topology.UUID:
		return "pg_catalog.uuid"
	}
	return "pg_catalog.int8"
}

// lockAndUpdate builds t.lock and t.update from the parsed statement
// (not modified); ref is the name the statement gives the table.
func (t *keyUpdateTmpl) lockAndUpdate(p *Planner, tree *pg_query.ParseResult, ref, key string, kt topology.KeyType) error {
	refuse := func(what, hint string) error {
		return unsupported(fmt.Sprintf("%s cannot change the distribution key column %s", what, key), hint)
	}
	upd := tree.Stmts[0].Stmt.GetUpdateStmt()
	var keyExpr *pg_query.Node
	for _, n := range upd.TargetList {
		rt := n.GetResTarget()
		if rt == nil || strings.ToLower(rt.Name) != key {
			continue
		}
		switch {
		case len(rt.Indirection) > 0:
			return refuse("an assignment to a part of the key", "assign the whole key: SET "+key+" = …")
		case rt.Val.GetMultiAssignRef() != nil:
			return refuse("SET (…) = (…)", "assign the key on its own: SET "+key+" = …")
		case rt.Val.GetSetToDefault() != nil:
			return refuse("SET "+key+" = DEFAULT", "give the new key as a value")
		}
		keyExpr = rt.Val
	}
	if keyExpr == nil {
		return refuse("this UPDATE", "assign the key with SET "+key+" = …")
	}
	qref, typ := plan.QuoteIdent(ref), keyTypeSQL(kt)

	// The locking SELECT: a skeleton parsed, then given the statement's
	// table, WHERE clause and key expression.
	lockTree, err := pg_query.Parse(fmt.Sprintf("SELECT %s.ctid, CAST(NULL AS %s) FROM t WHERE true FOR UPDATE OF %s", qref, typ, qref))
	if err != nil {
		return err
	}
	sel := lockTree.Stmts[0].Stmt.GetSelectStmt()
	sel.TargetList[1].GetResTarget().Val.GetTypeCast().Arg = proto.Clone(keyExpr).(*pg_query.Node)
	sel.FromClause[0] = &pg_query.Node{Node: &pg_query.Node_RangeVar{RangeVar: proto.Clone(upd.Relation).(*pg_query.RangeVar)}}
	sel.WhereClause = nil
	if upd.WhereClause != nil {
		sel.WhereClause = proto.Clone(upd.WhereClause).(*pg_query.Node)
	}
	t.lockIdx = renumberKeyParams(0, sel.TargetList[1], sel.WhereClause)
	lockSQL, err := pg_query.Deparse(lockTree)
	if err != nil {
		return refuse("this UPDATE", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	la, err := p.Analyze(lockSQL)
	if err != nil {
		return err
	}
	if len(la.Statements) != 1 {
		return refuse("this UPDATE", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	t.lock = la

	// The UPDATE of the locked rows: the statement's SET list with the
	// key's expression replaced, joined with the rows' ctids and new keys.
	updTree := proto.Clone(tree).(*pg_query.ParseResult)
	u := updTree.Stmts[0].Stmt.GetUpdateStmt()
	skel, err := pg_query.Parse(fmt.Sprintf(`UPDATE t SET x = CASE WHEN shardproxy_moves.shardproxy_stay THEN shardproxy_moves.shardproxy_key ELSE %[1]s.%[2]s END
FROM (SELECT unnest($1::pg_catalog.tid[]) AS shardproxy_ctid, unnest($2::%[3]s[]) AS shardproxy_key, unnest($3::pg_catalog.bool[]) AS shardproxy_stay) AS shardproxy_moves
WHERE %[1]s.ctid = ANY ($1::pg_catalog.tid[]) AND %[1]s.ctid = shardproxy_moves.shardproxy_ctid
RETURNING %[1]s.ctid, shardproxy_moves.shardproxy_key, %[1]s.*`, qref, plan.QuoteIdent(key), typ))
	if err != nil {
		return err
	}
	su := skel.Stmts[0].Stmt.GetUpdateStmt()
	for _, n := range u.TargetList {
		if rt := n.GetResTarget(); rt != nil && strings.ToLower(rt.Name) == key {
			rt.Val = su.TargetList[0].GetResTarget().Val
		}
	}
	t.updateIdx = renumberKeyParams(0, u.TargetList...) // the key's expression is gone: its $n may be unused here
	shift := int32(len(t.updateIdx))
	for _, n := range []*pg_query.Node{su.FromClause[0], su.WhereClause} {
		walkNodes(n, func(c *pg_query.Node) bool {
			if pr := c.GetParamRef(); pr != nil {
				pr.Number += shift
			}
			return true
		})
	}
	u.FromClause, u.WhereClause, u.ReturningList = su.FromClause, su.WhereClause, su.ReturningList
	if t.update, err = pg_query.Deparse(updTree); err != nil {
		return refuse("this UPDATE", "update the key with a plain UPDATE … SET key = … WHERE …")
	}
	return nil
}

// renumberKeyParams renumbers the $n under nodes in order of first
// appearance, starting after first, and returns the original 0-based
// index of each new $first+1, $first+2, … ([]int{} when there is none).
func renumberKeyParams(first int32, nodes ...*pg_query.Node) []int {
	newOf := map[int32]int32{}
	idx := []int{}
	for _, n := range nodes {
		walkNodes(n, func(c *pg_query.Node) bool {
			pr := c.GetParamRef()
			if pr == nil {
				return true
			}
			m, ok := newOf[pr.Number]
			if !ok {
				idx = append(idx, int(pr.Number)-1)
				m = first + int32(len(idx))
				newOf[pr.Number] = m
			}
			pr.Number = m
			return true
		})
	}
	return idx
}

// lockWithWhereOf is the locking SELECT with the WHERE clause of usql, an
// UPDATE of the same statement numbering its $n as the client does (the
// ownership filter's restriction of the source UPDATE for one shard).
func (t *keyUpdateTmpl) lockWithWhereOf(usql string) (string, error) {
	refusal := unsupported("cannot restrict this UPDATE of the distribution key to the rows each shard owns while they are being moved",
		"retry after the move (shardctl rebalance status), or restrict the UPDATE to one key")
	ut, err := pg_query.Parse(usql)
	if err != nil || len(ut.Stmts) != 1 || ut.Stmts[0].Stmt.GetUpdateStmt() == nil {
		return "", refusal
	}
	where := ut.Stmts[0].Stmt.GetUpdateStmt().WhereClause
	lt, err := pg_query.Parse(t.lock.SQL)
	if err != nil || len(lt.Stmts) != 1 || lt.Stmts[0].Stmt.GetSelectStmt() == nil {
		return "", refusal
	}
	newOf := map[int32]int32{}
	for i, orig := range t.lockIdx {
		newOf[int32(orig+1)] = int32(i + 1)
	}
	ok := true
	walkNodes(where, func(c *pg_query.Node) bool {
		if pr := c.GetParamRef(); pr != nil {
			n, found := newOf[pr.Number]
			ok = ok && found
			pr.Number = n
		}
		return true
	})
	if !ok {
		return "", refusal
	}
	lt.Stmts[0].Stmt.GetSelectStmt().WhereClause = where
	out, err := pg_query.Deparse(lt)
	if err != nil {
		return "", refusal
	}
	return out, nil
}
