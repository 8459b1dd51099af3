package planner

import (
	"fmt"
	"slices"

	"sort"
	"strconv"
	"strings"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// Plan turns an analysis into a plan for one execution over snap with the
// execution's Bind values. It is cheap: the topology-dependent part of the
// analysis is computed once per snapshot and reused; per call only key
// values are routed (and, for multi-row INSERTs, the parts' SQL built).
//
// Statements that would need several shards and more than concatenating
// their rows, or that cannot be routed correctly, fail with
// *plan.Unsupported (0A000). A hint or params.ForcedShard naming an unknown
// shard fails with 42704.
func (p *Planner) Plan(snap *topology.Snapshot, a *Analysis, params Params) (plan.Operator, error) {
	switch len(a.Statements) {
	case 0:
		return &plan.Session{Kind: "empty", SQL: a.SQL}, nil
	case 1:
		if op, ok := p.planPoint(snap, a, &params); ok {
			return op, nil // a Route: restrictToOwned changes only Scatters
		}
		return p.planSingle(snap, a, &params)
	}
	seq := &plan.Sequence{}
	for _, s := range a.Statements {
		op, err := p.planStmt(snap, a, s.info, &params)
		if err != nil {
			return nil, err
		}
		seq.Statements = append(seq.Statements, op)
	}
	if err := restrictToOwned(snap, seq); err != nil {
		return nil, err
	}
	return seq, nil
}

// planSingle plans a one-statement analysis with the general planner (no
// point fast path).
func (p *Planner) planSingle(snap *topology.Snapshot, a *Analysis, params *Params) (plan.Operator, error) {
	op, err := p.planStmt(snap, a, a.Statements[0].info, params)
	if err != nil {
		return nil, err
	}
	if err := restrictToOwned(snap, op); err != nil {
		return nil, err
	}
	return op, nil
}

func (p *Planner) planStmt(snap *topology.Snapshot, a *Analysis, st *stmtInfo, params *Params) (plan.Operator, error) {
	sql := a.SQL[st.start:st.end]
	if st.session != nil {
		return &plan.Session{Kind: st.session.kind, Name: st.session.name, Value: st.session.value, SQL: sql, Proxy: st.session.proxy, Fetch: st.session.fetch}, nil
	}
	if st.kind == KindExplain && st.explain != nil {
		inner, err := p.planStmt(snap, a, st.explain, params)
		if err != nil {
			return nil, err
		}
		if _, viaProxy := inner.(*plan.InsertSelect); viaProxy && st.explainAnlz {
			return nil, unsupported("EXPLAIN ANALYZE of an INSERT … SELECT whose rows pass through the proxy is not supported",
				"use EXPLAIN without ANALYZE (it shows the proxy's plan and the shards' plans of the SELECT)")
		}
		return &plan.Explain{Inner: inner, Prefix: st.explainPre, Analyze: st.explainAnlz}, nil
	}
	forced, why := a.Hint, "hint comment"
	if forced == "" {
		forced, why = params.ForcedShard, "SET shardproxy.shard"
	}
	if forced != "" {
		if !snap.HasShard(forced) {
			return nil, &plan.Error{Code: "42704", Message: fmt.Sprintf("shard %q does not exist", forced),
				Hint: "shards: " + strings.Join(snap.ShardNames(), ", ")}
		}
		return &plan.Route{Shard: forced, SQL: sql, Reason: why, ReadOnly: st.readOnly}, nil
	}
	if st.unsupported != nil {
		return nil, st.unsupported
	}
	if snap.DefaultShard() == "" {
		return nil, &plan.Error{Code: "08006", Message: "the topology has no shards"}
	}
	b := st.bind(snap)
	if b.err != nil {
		return nil, b.err
	}
	if b.keyUpdate {
		return p.planKeyUpdate(snap, a, st, b, params) // keyupdate.go
	}
	switch {
	case st.ddl != nil:
		return p.planDDL(st, b, sql)
	case st.kind == KindInsert:
		return p.planInsert(a, st, b, sql, params)
	case st.kind == KindCopy:
		return p.planCopy(st, b, sql, params)
	case st.kind == KindUpdate || st.kind == KindDelete || st.kind == KindMerge:
		op, err := p.planWrite(st, b, sql, params)
		if err != nil && st.kind != KindMerge {
			return p.pullOut(snap, a, st, params, err) // pullout.go
		}
		return op, err
	case st.declare != nil:
		return p.planDeclare(snap, st, b, sql, params)
	case st.kind == KindSelect || st.kind == KindCursor:
		op, err := p.planRead(st, b, sql, params, st.nestedWrite || st.kind == KindCursor, false)
		if err != nil && st.kind == KindSelect {
			return p.pullOut(snap, a, st, params, err) // pullout.go
		}
		return op, err
	}
	return &plan.Route{Shard: snap.DefaultShard(), SQL: sql, Reason: "default shard: " + string(st.kind) + " statement"}, nil
}

// placement is where a statement's data is.
type placement struct {
	single  string   // one shard serves everything ("" if not)
	reason  string   // why
	scatter []string // one class over these shards (single == "")
	class   int      // the scattered class
	err     error
}

type need struct {
	ci     int
	shards []string
	all    bool
}

// placeArms places a top-level set operation whose parts are on several
// shards: every shard runs the whole statement, which is right when each
// part reads exactly one class (its rows are split between the shards, so
// the shards' results together are the part's result), or, below a UNION
// that removes duplicates, no distributed table at all.
func (p *Planner) placeArms(st *stmtInfo, b *binding, needs []need) placement {
	per, stray := armClasses(st, b)
	if stray >= 0 {
		return placement{err: unsupported("the set operation reads "+b.classes[stray].label+" outside its parts, on several shards",
			"add key conditions that put every part on the same shard")}
	}
	// A part may read no distributed table: every shard returns all its
	// rows, which the shards' own UNION deduplicates or the proxy's SetOp
	// counts once (replicatedParts).
	for ai := range per {
		if len(per[ai]) > 1 {
			var labels []string
			for _, ci := range per[ai] {
				labels = append(labels, b.classes[ci].label)
			}
			return placement{err: unsupported(fmt.Sprintf("part %d of the set operation reads %s, which are not joined on their distribution keys and are not all on one shard", ai+1, strings.Join(labels, " and ")),
				"join distributed tables on their keys, or add key conditions that put every table on the same shard")}
		}
	}
	var shards, reasons []string
	for _, n := range needs {
		for _, s := range n.shards {
			shards = addShard(shards, s)
		}
	}
	for ci := range b.classes {
		reasons = append(reasons, scatterWhy(&b.classes[ci]))
	}
	return placement{scatter: shards, class: -1, reason: strings.Join(reasons, " UNION ")}
}

// armClasses lists, per part of st's top-level set operation (left to
// right), the distributed classes it reads; stray is a class read outside
// every part (-1 when none).
func armClasses(st *stmtInfo, b *binding) (per [][]int, stray int) {
	arms := st.arms[st.topScope]
	per, stray = make([][]int, len(arms)), -1
	for ci := range b.classes {
		ai := -1
		for i, a := range arms {
			if st.within(b.classes[ci].home, a) {
				ai = i
			}
		}
		if ai < 0 {
			if stray < 0 {
				stray = ci
			}
			continue
		}
		per[ai] = append(per[ai], ci)
	}
	return per, stray
}

// replicatedParts lists the parts (1-based, left to right) of st's
// top-level set operation that read no distributed table.
func replicatedParts(st *stmtInfo, b *binding) []int {
	if st.topScope < 0 {
		return nil
	}
	per, _ := armClasses(st, b)
	var out []int
	for i, cs := range per {
		if len(cs) == 0 {
			out = append(out, i+1)
		}
	}
	return out
}

// place decides where the tables of st (other than skip) must be read.
func (p *Planner) place(st *stmtInfo, b *binding, params *Params) placement {
	def := b.snap.DefaultShard()
	var needs []need
	for ci := range b.classes {
		s, all, err := b.shardSet(ci, params)
		if err != nil {
			return placement{err: err}
		}
		if len(s) > 0 {
			needs = append(needs, need{ci, s, all})
		}
	}
	if len(b.classes) == 0 {
		switch {
		case len(b.others) > 0:
			return placement{single: def, reason: "default shard: " + strings.Join(b.others, ", ") + " not in topology"}
		case b.hasRef:
			return placement{single: def, reason: "reference tables: any shard"}
		}
		return placement{single: def, reason: "default shard: no distributed tables"}
	}
	if len(needs) == 0 {
		return placement{single: def, reason: "key matches no shard: " + b.classes[0].reason}
	}
	one := needs[0].shards[0]
	singleOK := true
	for _, n := range needs {
		if len(n.shards) != 1 || n.shards[0] != one {
			singleOK = false
		}
	}
	if singleOK && (len(b.others) == 0 || one == def) {
		var rs []string
		for _, n := range needs {
			rs = append(rs, b.classes[n.ci].reason)
		}
		return placement{single: one, reason: strings.Join(rs, " AND ")}
	}
	if len(b.others) > 0 {
		c := &b.classes[needs[0].ci]
		return placement{err: unsupported(
			fmt.Sprintf("table %s is not in the topology and lives only on the default shard %s, but the statement also reads distributed table %s on other shards",
				strings.Join(b.others, ", "), def, strings.TrimSuffix(c.label, "."+b.rels[c.members[0]].key)),
			fmt.Sprintf("declare %s as a reference table, or add a condition on %s that routes to shard %s", strings.Join(b.others, ", "), c.label, def))}
	}
	if st.topScope >= 0 && len(st.arms[st.topScope]) > 0 {
		return p.placeArms(st, b, needs)
	}
	if len(needs) == 1 {
		return placement{scatter: needs[0].shards, class: needs[0].ci, reason: b.classes[needs[0].ci].reason}
	}
	var labels []string
	for _, n := range needs {
		labels = append(labels, b.classes[n.ci].label)
	}
	return placement{err: unsupported(
		fmt.Sprintf("the statement reads %s, which are not joined on their distribution keys and are not all on one shard", strings.Join(labels, " and ")),
		"join distributed tables on their keys (e.g. ON posts.author_id = users.id), or add key conditions that put every table on the same shard")}
}

func (p *Planner) planRead(st *stmtInfo, b *binding, sql string, params *Params, mustSingle bool, copyHeader bool) (plan.Operator, error) {
	pl := p.place(st, b, params)
	if pl.err != nil {
		return nil, pl.err
	}
	if pl.single != "" {
		anyShard := len(b.classes) == 0 && len(b.others) == 0 && b.hasRef && st.readOnly
		return &plan.Route{Shard: pl.single, SQL: sql, Reason: pl.reason, ReadOnly: st.readOnly, ReadAnyShard: anyShard}, nil
	}
	why := pl.reason
	hint := "add conditions on the distribution keys that select one shard"
	if pl.class >= 0 {
		c := &b.classes[pl.class]
		why = scatterWhy(c)
		hint = fmt.Sprintf("add a condition on %s that selects one shard, such as WHERE %s = ...", c.label, c.label)
	}
	needs := fmt.Sprintf("%s needs shards %s", why, strings.Join(pl.scatter, ","))
	if mustSingle {
		return nil, unsupported(needs+"; this statement can run on one shard only", hint)
	}
	if err := p.nestedCheck(st, b, needs, hint); err != nil {
		return nil, err
	}
	grouped := pl.class >= 0 && p.groupedByKey(st.groupBy, b, st, pl.class)
	sc := &plan.Scatter{Shards: pl.scatter, SQL: sql, Reason: why, ReadOnly: st.readOnly, CopyHeader: copyHeader}
	localWindows := len(st.windows) > 0 && pl.class >= 0 && p.windowsByKey(st.windows, b, st, pl.class) &&
		(len(st.groupNeeds) == 0 || grouped)
	mergeNeeds := st.mergeNeeds
	if !localWindows {
		for _, w := range st.windows {
			mergeNeeds = append(mergeNeeds[:len(mergeNeeds):len(mergeNeeds)], "window function "+w.name+"()")
		}
	}
	if len(mergeNeeds) == 0 && (len(st.groupNeeds) == 0 || grouped) {
		return sc, nil
	}
	if st.kind != KindSelect {
		what := append(append([]string(nil), mergeNeeds...), st.groupNeeds...)
		return nil, unsupported(fmt.Sprintf("%s across shards is not supported in this statement (%s)", strings.Join(what, ", "), needs), hint)
	}
	m := b.mergeTemplate(st, sql, grouped, localWindows)
	if m.err != nil {
		if u, ok := m.err.(*plan.Unsupported); ok {
			h := u.Hint
			if h == "" {
				h = hint
			}
			return nil, &plan.Unsupported{Message: u.Message + " (" + needs + ")", Hint: h}
		}
		return nil, m.err
	}
	if m.none {
		return sc, nil
	}
	sc.SQL = m.sql
	return m.ops(sc, params)
}

// nestedCheck refuses subqueries, CTEs and UNION parts that need more than
// concatenation (LIMIT, DISTINCT, aggregates not grouped by the key, ...)
// over scattered tables, unless they are correlated with the outer query
// on the distribution key (then each shard has all the rows they see).
func (p *Planner) nestedCheck(st *stmtInfo, b *binding, needs, hint string) error {
	for s, sh := range st.shapes {
		if s == st.topScope || p.inTopSetOp(st, s) {
			continue
		}
		var what []string
		for _, m := range sh.merge {
			if m != "UNION ALL" {
				what = append(what, m)
			}
		}
		for ri := range st.rels {
			if b.rels[ri].kind != rbDist || !st.within(st.rels[ri].scope, s) {
				continue
			}
			ci := b.relClass[ri]
			// Correlated with the outer query on the key (directly, not
			// through a derived table or IN list): each shard has every
			// row the subquery sees.
			anchored := false
			for _, m := range b.classes[ci].members {
				if !st.within(st.rels[m].scope, s) && b.corr[m] == b.corr[ri] {
					anchored = true
				}
			}
			if anchored {
				continue
			}
			w := what
			if p.groupedByKey(sh.distinctBy, b, st, ci) {
				// DISTINCT over the key: duplicates are on one shard.
				w = slices.DeleteFunc(slices.Clone(w), func(m string) bool { return m == "DISTINCT" })
			}
			grouped := len(sh.group) == 0 || p.groupedByKey(sh.groupBy, b, st, ci)
			if !grouped {
				w = append(append([]string(nil), w...), sh.group...)
			}
			if !grouped || !p.windowsByKey(sh.windows, b, st, ci) {
				// Windows partitioned by the key see whole partitions.
				for _, win := range sh.windows {
					w = append(w[:len(w):len(w)], "window function "+win.name+"()")
				}
			}
			if len(w) > 0 {
				return unsupported(fmt.Sprintf("a subquery with %s over %s needs rows from several shards (%s)", strings.Join(w, ", "), b.classes[ci].label, needs),
					"correlate the subquery with the outer query on the distribution key, move the "+w[0]+" to the outer query, or "+hint)
			}
		}
	}
	return nil
}

// inTopSetOp reports whether scope s is a set operation inside the
// top-level set operation (its arms are checked as a whole by the merge).
func (p *Planner) inTopSetOp(st *stmtInfo, s int) bool {
	for ; s >= 0; s = st.scopes[s].parent {
		if _, ok := st.arms[s]; !ok {
			return false
		}
		if s == st.topScope {
			return true
		}
	}
	return false
}

// within reports whether scope s is anc or nested in it.
func (st *stmtInfo) within(s, anc int) bool {
	for ; s >= 0; s = st.scopes[s].parent {
		if s == anc {
			return true
		}
	}
	return false
}

func scatterWhy(c *class) string {
	if c.reason == "" {
		return "no condition on " + c.label
	}
	return c.reason
}

func (p *Planner) groupedByKey(groupBy []colRef, b *binding, st *stmtInfo, ci int) bool {
	for _, g := range groupBy {
		if ri := b.keyRel(st, g); ri >= 0 && b.relClass[ri] == ci {
			return true
		}
	}
	return false
}

// windowsByKey reports whether every window function's partition includes
// the key of class ci (then each partition lies on one shard).
func (p *Planner) windowsByKey(ws []windowUse, b *binding, st *stmtInfo, ci int) bool {
	for _, w := range ws {
		if !p.groupedByKey(w.partition, b, st, ci) {
			return false
		}
	}
	return true
}

// broadcast runs sql on every shard that holds the reference tables: a
// shard still being given them (topology.ReferencesSyncing) gets neither
// reference writes nor DDL until the rebalance controller made its copy
// exact and marked it ready.
func (p *Planner) broadcast(b *binding, sql, reason string, atomic bool) *plan.Broadcast {
	return &plan.Broadcast{Shards: b.snap.ReferenceShards(), SQL: sql, Reason: reason, ReturnFrom: b.snap.DefaultShard(), NeedsAtomic: atomic}
}

// refWrite plans a write to a reference table: every shard, but only when
// the statement reads nothing that differs between shards.
func (p *Planner) refWrite(st *stmtInfo, b *binding, sql string) (plan.Operator, error) {
	t := st.rels[st.target].name
	if len(b.classes) > 0 || len(b.others) > 0 {
		return nil, unsupported(fmt.Sprintf("a write to reference table %s may read only reference tables and catalogs", t),
			"compute the values first, or write them with VALUES")
	}
	return p.broadcast(b, sql, "write to reference table "+t, true), nil
}

func (p *Planner) planWrite(st *stmtInfo, b *binding, sql string, params *Params) (plan.Operator, error) {
	t := st.target
	switch b.rels[t].kind {
	case rbRef:
		return p.refWrite(st, b, sql)
	case rbDist:
		if st.kind == KindMerge {
			return nil, unsupported("MERGE into distributed table "+st.rels[t].name+" is not supported yet", "use INSERT ... ON CONFLICT")
		}
		op, err := p.planRead(st, b, sql, params, false, false)
		if err != nil {
			if u, ok := err.(*plan.Unsupported); ok {
				err = &plan.Unsupported{Message: fmt.Sprintf("%s on %s: %s", strings.ToUpper(string(st.kind)), st.rels[t].name, u.Message), Hint: u.Hint}
			}
			return nil, err
		}
		if sc, ok := op.(*plan.Scatter); ok {
			sc.Write, sc.ReadOnly = true, false
		}
		return op, nil
	}
	return p.planRead(st, b, sql, params, true, false)
}

func (p *Planner) planDDL(st *stmtInfo, b *binding, sql string) (plan.Operator, error) {
	d := st.ddl
	atomic := !d.noTxn && d.description != "LOCK"
	if d.dropIndex {
		return p.broadcast(b, sql, "DROP INDEX: the index may belong to a distributed or reference table", atomic), nil
	}
	if len(d.tables) == 1 && d.tables[0] == "*" {
		return p.broadcast(b, sql, d.description+" of every table", false), nil
	}
	var sharded, other []string
	seen := map[string]bool{}
	for _, t := range d.tables {
		if seen[t] || t == "" {
			continue
		}
		seen[t] = true
		if tb, ok := b.snap.Table(t); ok {
			sharded = append(sharded, string(tb.Kind)+" table "+t)
		} else {
			other = append(other, t)
		}
	}
	if len(sharded) == 0 {
		return &plan.Route{Shard: b.snap.DefaultShard(), SQL: sql, Reason: "default shard: " + d.description + " of objects not in the topology"}, nil
	}
	if len(other) > 0 {
		return nil, unsupported(fmt.Sprintf("%s names %s and tables not in the topology (%s), which live on different shards",
			d.description, strings.Join(sharded, ", "), strings.Join(other, ", ")), "run it separately for each kind of table")
	}
	return p.broadcast(b, sql, d.description+" of "+strings.Join(sharded, ", "), atomic), nil
}

func (p *Planner) planCopy(st *stmtInfo, b *binding, sql string, params *Params) (plan.Operator, error) {
	ci := st.cp
	def := b.snap.DefaultShard()
	if ci.target < 0 {
		if ci.format == "binary" {
			op, err := p.planRead(st, b, sql, params, false, false)
			if err != nil {
				return nil, unsupported("COPY (query) TO in binary format over several shards is supported only when the shards' rows are simply concatenated (no ORDER BY, LIMIT, aggregates, DISTINCT across shards)",
					"use text or csv format, or a key condition")
			}
			if sc, ok := op.(*plan.Scatter); ok {
				sc.CopyBinary = true
			}
			return op, nil
		}
		op, err := p.planRead(st, b, sql, params, false, ci.header && ci.format == "csv")
		if err != nil {
			return p.planCopyOut(b, ci, params, err) // copy_out.go
		}
		return op, nil
	}
	r := &st.rels[ci.target]
	rb := b.rels[ci.target]
	switch rb.kind {
	case rbDist:
		if !ci.stdio {
			return nil, unsupported("COPY of distributed table "+r.name+" with a server file or program cannot be split across shards", "use COPY ... FROM STDIN / TO STDOUT")
		}
		if !ci.from {
			return &plan.Scatter{Shards: b.r.ShardsOf(rb.dist), SQL: sql, Reason: "COPY TO of distributed table " + r.name,
				ReadOnly: true, CopyHeader: ci.header && ci.format == "csv", CopyBinary: ci.format == "binary"}, nil
		}
		idx := -1
		for i, c := range ci.cols {
			if c == rb.key {
				idx = i
			}
		}
		if len(ci.cols) > 0 && idx < 0 {
			return nil, unsupported(fmt.Sprintf("COPY into %s must include the distribution key column %s", r.name, rb.key), "add "+rb.key+" to the column list")
		}
		if len(ci.cols) == 0 && p.opts.Columns != nil {
			for i, c := range p.opts.Columns(r.name) {
				if strings.ToLower(c) == rb.key {
					idx = i
				}
			}
		}
		return &plan.CopySplit{Table: r.name, Distribution: rb.dist, KeyColumn: rb.key, KeyType: rb.kt, KeyColumnIndex: idx,
			Format: ci.format, Delimiter: ci.delim, Quote: ci.quote, Escape: ci.escape, Null: ci.null, Header: ci.header,
			SQL: sql, Shards: b.r.ShardsOf(rb.dist), NeedsAtomic: true}, nil
	case rbRef:
		if ci.from {
			if !ci.stdio {
				return nil, unsupported("COPY into reference table "+r.name+" from a server file is not supported", "use COPY ... FROM STDIN")
			}
			op := p.broadcast(b, sql, "COPY into reference table "+r.name, true)
			op.Copy = true
			return op, nil
		}
		return &plan.Route{Shard: def, SQL: sql, Reason: "reference table " + r.name + ": any shard", ReadOnly: true, ReadAnyShard: true}, nil
	}
	return &plan.Route{Shard: def, SQL: sql, Reason: "default shard: " + r.name + " not in topology", ReadOnly: !ci.from}, nil
}

func (p *Planner) planInsert(a *Analysis, st *stmtInfo, b *binding, sql string, params *Params) (plan.Operator, error) {
	ii := st.ins
	t := st.target
	r := &st.rels[t]
	rb := b.rels[t]
	switch rb.kind {
	case rbRef:
		if ii.fromSelect && (len(b.classes) > 0 || len(b.others) > 0) {
			return p.planInsertSelect(st, b, sql, params) // insert_select.go
		}
		return p.refWrite(st, b, sql)
	case rbDist:
		if ii.fromSelect {
			return p.planInsertSelect(st, b, sql, params)
		}
	default:
		op, err := p.planRead(st, b, sql, params, true, false)
		if _, refused := err.(*plan.Unsupported); refused && ii.fromSelect {
			return p.planInsertSelect(st, b, sql, params)
		}
		return op, err
	}
	hint := fmt.Sprintf("use INSERT INTO %s (%s, ...) VALUES (...) with constants or parameters for %s", r.relname, rb.key, rb.key)
	if ii.defaultValues {
		return nil, unsupported("INSERT ... DEFAULT VALUES into distributed table "+r.name+" is not supported", hint)
	}
	if len(b.classes) > 1 || len(b.others) > 0 {
		return nil, unsupported("INSERT into distributed table "+r.name+" with subqueries over other distributed or unlisted tables is not supported yet", hint)
	}
	cols := ii.cols
	if cols == nil && p.opts.Columns != nil {
		cols = p.opts.Columns(r.name)
		for i := range cols {
			cols[i] = strings.ToLower(cols[i])
		}
	}
	if cols == nil {
		return nil, unsupported("INSERT into distributed table "+r.name+" needs a column list to find the distribution key "+rb.key, hint)
	}
	keyIdx := -1
	for i, c := range cols {
		if c == rb.key {
			keyIdx = i
		}
	}
	generated := p.opts.GeneratedKeys != nil && p.opts.GeneratedKeys(r.name)
	// Rows whose key the allocator must supply.
	var alloc []int
	for i, row := range ii.rows {
		if keyIdx < 0 || (keyIdx < len(row) && row[keyIdx].kind == vDefault) {
			alloc = append(alloc, i)
		}
	}
	if len(alloc) > 0 && !generated {
		return nil, unsupported(fmt.Sprintf("INSERT into distributed table %s must supply the distribution key column %s", r.name, rb.key),
			"give "+rb.key+" a value in every row (or configure it as a generated key)")
	}
	extra, err := p.omittedGenerated(r.name, cols, ii)
	if err != nil {
		return nil, err
	}
	if len(alloc) > 0 || len(extra) > 0 {
		return p.allocateKeys(st, b, a.SQL, sql, params, keyIdx, alloc, extra)
	}
	label := r.name + "." + rb.key
	shardOf := make([]string, len(ii.rows))
	for i, row := range ii.rows {
		if keyIdx >= len(row) {
			return nil, &plan.Error{Code: "42601", Message: "INSERT has more target columns than expressions"}
		}
		v := row[keyIdx]
		var key router.Value
		switch v.kind {
		case vConst:
			k, err := router.KeyFromText(rb.kt, v.text)
			if err != nil {
				return nil, err
			}
			key = k
		case vParam:
			k, null, err := paramKey(params, v.param, rb.kt)
			if err == errUnknownKey {
				return nil, &plan.Error{Code: "42804", Message: fmt.Sprintf("parameter $%d for distribution key %s cannot be read as a %s key", v.param+1, label, rb.kt)}
			}
			if err != nil {
				return nil, err
			}
			if null {
				return nil, nullKey(label)
			}
			key = k
		case vNull:
			return nil, nullKey(label)
		default:
			return nil, unsupported(fmt.Sprintf("the value of distribution key %s in VALUES row %d must be a constant or a parameter", label, i+1), hint)
		}
		s, err := b.r.ShardForKey(rb.dist, key)
		if err != nil {
			return nil, err
		}
		shardOf[i] = s
	}
	same := true
	for _, s := range shardOf {
		if s != shardOf[0] {
			same = false
		}
	}
	if same {
		reason := label + " = " + valString(ii.rows[0][keyIdx])
		if len(ii.rows) > 1 {
			reason = fmt.Sprintf("%d rows of %s on one shard", len(ii.rows), label)
		}
		return &plan.Route{Shard: shardOf[0], SQL: sql, Reason: reason}, nil
	}
	if ii.rowSpans == nil {
		return nil, unsupported("cannot split this multi-row INSERT into "+r.name+" by shard", "insert the rows of each key separately")
	}
	return splitInsert(a.SQL, st, r.name, shardOf), nil
}

func nullKey(label string) error {
	return &plan.Error{Code: "23502", Message: "null value in distribution key column " + label}
}

// splitInsert builds one INSERT per shard holding that shard's rows, with
// parameters renumbered in order of appearance.
func splitInsert(full string, st *stmtInfo, table string, shardOf []string) *plan.SplitInsert {
	ii := st.ins
	var shards []string
	rowsOf := map[string][]int{}
	for i, s := range shardOf {
		if _, ok := rowsOf[s]; !ok {
			shards = append(shards, s)
		}
		rowsOf[s] = append(rowsOf[s], i)
	}
	sort.Strings(shards)
	out := &plan.SplitInsert{Table: table, Returning: ii.returning, NeedsAtomic: true}
	first, last := ii.rowSpans[0][0], ii.rowSpans[len(ii.rowSpans)-1][1]
	for _, s := range shards {
		w := paramWriter{full: full, toks: st.params, renumber: len(st.params) > 0}
		w.copy(st.start, first)
		for j, ri := range rowsOf[s] {
			if j > 0 {
				w.b.WriteString(", ")
			}
			w.copy(ii.rowSpans[ri][0], ii.rowSpans[ri][1])
		}
		w.copy(last, st.end)
		route := &plan.Route{Shard: s, SQL: w.b.String(), Reason: fmt.Sprintf("%d of %d rows", len(rowsOf[s]), len(shardOf))}
		if w.renumber {
			route.ParamIndexes = w.indexes
			if route.ParamIndexes == nil {
				route.ParamIndexes = []int{}
			}
		}
		out.Parts = append(out.Parts, route)
		out.Rows = append(out.Rows, rowsOf[s])
	}
	return out
}

// paramWriter copies ranges of SQL text, renumbering $n tokens.
type paramWriter struct {
	full     string
	toks     []paramTok
	renumber bool
	b        strings.Builder
	newOf    map[int]int
	indexes  []int
}

func (w *paramWriter) copy(from, to int) {
	pos := from
	for _, t := range w.toks {
		if t.start < from || t.end > to || !w.renumber {
			continue
		}
		w.b.WriteString(w.full[pos:t.start])
		if w.newOf == nil {
			w.newOf = map[int]int{}
		}
		n, ok := w.newOf[t.n]
		if !ok {
			w.indexes = append(w.indexes, t.n-1)
			n = len(w.indexes)
			w.newOf[t.n] = n
		}
		w.b.WriteString("$" + strconv.Itoa(n))
		pos = t.end
	}
	w.b.WriteString(w.full[pos:to])
}

// omittedColumn is a generated non-key column an INSERT leaves to its
// default: absent from the column list (idx -1, every row) or DEFAULT in
// the listed rows.
type omittedColumn struct {
	name string
	idx  int
	rows []int
}

// omittedGenerated lists the generated non-key columns of table
// (Options.GeneratedColumns) whose values the INSERT leaves to the
// default, which on a shard would come from that shard's own sequence.
func (p *Planner) omittedGenerated(table string, cols []string, ii *insertInfo) ([]omittedColumn, error) {
	if p.opts.GeneratedColumns == nil {
		return nil, nil
	}
	var out []omittedColumn
	for _, g := range p.opts.GeneratedColumns(table) {
		oc := omittedColumn{name: g, idx: -1}
		for i, c := range cols {
			if c == g {
				oc.idx = i
			}
		}
		for ri, row := range ii.rows {
			switch {
			case oc.idx < 0:
				oc.rows = append(oc.rows, ri)
			case oc.idx >= len(row) && ii.cols != nil:
				return nil, &plan.Error{Code: "42601", Message: "INSERT has more target columns than expressions"}
			case oc.idx >= len(row):
				return nil, unsupported("cannot supply generated column "+g+" of "+table+" in this INSERT", "list the columns explicitly")
			case row[oc.idx].kind == vDefault:
				oc.rows = append(oc.rows, ri)
			}
		}
		if len(oc.rows) > 0 {
			out = append(out, oc)
		}
	}
	return out, nil
}

// allocateKeys rewrites the INSERT so the key column (rows alloc) and the
// omitted generated columns take parameters the executor fills from the
// allocator (see plan.AllocateKeys).
func (p *Planner) allocateKeys(st *stmtInfo, b *binding, full, sql string, params *Params, keyIdx int, alloc []int, extra []omittedColumn) (plan.Operator, error) {
	ii := st.ins
	r := &st.rels[st.target]
	rb := b.rels[st.target]
	needList := len(alloc) > 0 && keyIdx < 0
	for _, e := range extra {
		needList = needList || e.idx < 0
	}
	if ii.rowSpans == nil || (needList && ii.colsClose < 0) {
		return nil, unsupported("cannot add generated keys to this INSERT into "+r.name, "list the columns explicitly")
	}
	if st.maxParam > len(params.Values) {
		return nil, &plan.Error{Code: "08P01", Message: fmt.Sprintf("bind message supplies %d parameters, but the statement uses $%d", len(params.Values), st.maxParam)}
	}
	first := len(params.Values) + 1
	type edit struct {
		at, del int
		text    string
	}
	var edits []edit
	next := first
	// fill makes column (at idx in the rows, or appended when idx < 0)
	// take the next parameters in the given rows. Edits at one position
	// keep this order (stable sort): key first, then extra columns.
	fill := func(column string, idx int, rows []int) {
		if idx < 0 && len(rows) > 0 {
			edits = append(edits, edit{at: ii.colsClose, text: ", " + quoteIdent(column)})
		}
		for _, ri := range rows {
			ph := "$" + strconv.Itoa(next)
			next++
			if idx < 0 {
				edits = append(edits, edit{at: ii.rowSpans[ri][1] - 1, text: ", " + ph})
			} else {
				v := ii.rows[ri][idx]
				edits = append(edits, edit{at: v.loc, del: len("DEFAULT"), text: ph})
			}
		}
	}
	fill(rb.key, keyIdx, alloc)
	var extraCols []plan.AllocColumn
	for _, e := range extra {
		fill(e.name, e.idx, e.rows)
		extraCols = append(extraCols, plan.AllocColumn{Column: e.name, Count: len(e.rows)})
	}
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].at < edits[j].at })
	var sb strings.Builder
	pos := st.start
	for _, e := range edits {
		sb.WriteString(full[pos:e.at])
		sb.WriteString(e.text)
		pos = e.at + e.del
	}
	sb.WriteString(full[pos:st.end])
	return &plan.AllocateKeys{Table: r.name, Column: rb.key, Distribution: rb.dist, KeyType: rb.kt,
		Count: len(alloc), FirstParam: first, SQL: sb.String(), Extra: extraCols}, nil
}
