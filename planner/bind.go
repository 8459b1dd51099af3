package planner

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// boundCache holds the binding of a statement to the last snapshot it was
// planned against; a new snapshot replaces it.
type boundCache struct{ p atomic.Pointer[binding] }

type rbKind uint8

const (
	rbNone    rbKind = iota // CTE reference, subquery, function
	rbDist                  // distributed table
	rbRef                   // reference table
	rbCatalog               // pg_catalog / information_schema relation
	rbOther                 // table not in the topology: default shard only
)

type relBind struct {
	kind rbKind
	dist string
	key  string
	kt   topology.KeyType
}

// class is a set of distributed-table references that are joined on their
// keys (same distribution), so their rows meet on one shard.
type class struct {
	dist    string
	kt      topology.KeyType
	members []int
	pred    *kpred // restriction on the class key from its home scope; nil = none
	label   string // "public.users.id"
	home    int    // the scope of its outermost member
	reason  string // pred as text
}

// kpred is a predicate tree reduced to one class's key.
type kpred struct {
	op   predOp
	kids []*kpred
	vals []valExpr
}

// binding is a stmtInfo resolved against one topology snapshot.
type binding struct {
	snap     *topology.Snapshot
	r        *router.Router
	rels     []relBind
	relClass []int
	corr     []int // per rel: its representative under direct key equalities only
	classes  []class
	others   []string // tables not in the topology (sorted)
	hasRef   bool
	err      error

	mu    sync.Mutex
	merge [4]*mergeTmpl // scatter rewrites: [grouped by the class key + 2 × windows partitioned by it]

	keyUpdate bool           // an UPDATE that sets the target's distribution key (plan.KeyUpdate)
	keyUpd    *keyUpdateTmpl // its internal statements, built on first use (under mu)

	point atomic.Pointer[pointTmpl] // point.go: set on first Plan, noPoint when not one
}

func (st *stmtInfo) bind(snap *topology.Snapshot) *binding {
	if b := st.bound.p.Load(); b != nil && b.snap == snap {
		return b
	}
	b := newBinding(st, snap)
	st.bound.p.Store(b)
	return b
}

func isCatalog(r *rel) bool {
	switch r.schema {
	case "pg_catalog", "information_schema":
		return true
	case "":
		return strings.HasPrefix(r.relname, "pg_")
	}
	return false
}

func newBinding(st *stmtInfo, snap *topology.Snapshot) *binding {
	b := &binding{snap: snap, r: router.For(snap), rels: make([]relBind, len(st.rels)), relClass: make([]int, len(st.rels))}
	others := map[string]bool{}
	for i := range st.rels {
		r := &st.rels[i]
		b.relClass[i] = -1
		if r.kind != relTable {
			continue
		}
		t, ok := snap.Table(r.name)
		switch {
		case ok && t.Kind == topology.Distributed:
			kt, _ := b.r.KeyType(t.Distribution)
			b.rels[i] = relBind{kind: rbDist, dist: t.Distribution, key: strings.ToLower(t.KeyColumn), kt: kt}
		case ok && t.Kind == topology.Reference:
			b.rels[i] = relBind{kind: rbRef}
			b.hasRef = true
		case isCatalog(r):
			b.rels[i] = relBind{kind: rbCatalog}
		default:
			b.rels[i] = relBind{kind: rbOther}
			others[r.name] = true
		}
	}
	for t := range others {
		b.others = append(b.others, t)
	}
	sort.Strings(b.others)

	// Union distributed references joined on their keys.
	parent := make([]int, len(st.rels))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(eqs []colEq) {
		for _, e := range eqs {
			x, y := b.keyRel(st, e.a), b.keyRel(st, e.b)
			if x < 0 || y < 0 || b.rels[x].dist != b.rels[y].dist {
				continue
			}
			parent[find(x)] = find(y)
		}
	}
	// Direct key equalities first: they decide which nested SELECTs are
	// correlated with their outer query on the key (b.corr).
	var direct []colEq
	for _, e := range st.eqs {
		if x, y := b.resolve(st, e.a), b.resolve(st, e.b); x >= 0 && y >= 0 && b.rels[x].kind == rbDist && b.rels[y].kind == rbDist {
			direct = append(direct, e)
		}
	}
	union(direct)
	b.corr = make([]int, len(st.rels))
	for i := range b.corr {
		b.corr[i] = find(i)
	}
	// Then joins through derived tables, CTEs and IN subqueries.
	union(st.eqs)
	union(st.semiEqs)
	roots := map[int]int{}
	for i := range st.rels {
		if b.rels[i].kind != rbDist {
			continue
		}
		root := find(i)
		ci, ok := roots[root]
		if !ok {
			ci = len(b.classes)
			roots[root] = ci
			b.classes = append(b.classes, class{dist: b.rels[i].dist, kt: b.rels[i].kt,
				label: st.rels[i].name + "." + b.rels[i].key})
		}
		b.classes[ci].members = append(b.classes[ci].members, i)
		b.relClass[i] = ci
	}
	for ci := range b.classes {
		c := &b.classes[ci]
		home, depth, tie := -1, 1<<30, false
		for _, m := range c.members {
			s := st.rels[m].scope
			d := st.scopes[s].depth
			if d < depth {
				home, depth, tie = s, d, false
			} else if d == depth && s != home {
				tie = true
			}
		}
		c.home = home
		if !tie && home >= 0 {
			c.pred = b.project(st, st.scopes[home].pred, ci)
		}
		c.reason = c.describe(c.pred)
	}

	// Statement-level checks that need key columns.
	if st.target >= 0 && b.rels[st.target].kind == rbDist {
		key := b.rels[st.target].key
		tname := st.rels[st.target].name
		for _, col := range st.setCols {
			if col == key && st.kind == KindUpdate {
				b.keyUpdate = true // rows may move between shards: keyupdate.go
			}
		}
		if st.ins != nil {
			for _, sc := range st.ins.conflictSet {
				if sc.name == key && !sc.excludedSame {
					b.err = unsupported(fmt.Sprintf("ON CONFLICT DO UPDATE cannot change the distribution key column %s of %s: moving rows between shards is not supported yet", key, tname),
						"leave the key column out of the SET list")
				}
			}
		}
	}
	return b
}

// resolve returns the rel a column reference names, or -1 when it cannot
// tell. Unqualified names are resolved only among the distributed tables of
// the innermost scope whose key has that name (anything else is -1: it may
// be some other table's column).
func (b *binding) resolve(st *stmtInfo, c colRef) int {
	if len(c.qual) == 0 {
		cand := -1
		for _, ri := range st.scopes[c.scope].rels {
			if b.rels[ri].kind == rbDist && b.rels[ri].key == c.name {
				if cand >= 0 {
					return -1
				}
				cand = ri
			}
		}
		return cand
	}
	for s := c.scope; s >= 0; s = st.scopes[s].parent {
		found, n := -1, 0
		for _, ri := range st.scopes[s].rels {
			r := &st.rels[ri]
			switch len(c.qual) {
			case 1:
				if r.refName == c.qual[0] {
					found, n = ri, n+1
				}
			case 2:
				if !r.aliased && r.kind == relTable && r.name == c.qual[0]+"."+c.qual[1] {
					found, n = ri, n+1
				}
			}
		}
		if n == 1 {
			return found
		}
		if n > 1 {
			return -1
		}
	}
	return -1
}

// project reduces p to the conditions on class ci's key.
func (b *binding) project(st *stmtInfo, p *pred, ci int) *kpred {
	if p == nil {
		return nil
	}
	switch p.op {
	case pCol:
		ri := b.keyRel(st, p.col)
		if ri < 0 || b.relClass[ri] != ci {
			return nil
		}
		return &kpred{op: pCol, vals: p.vals}
	case pAnd:
		var kids []*kpred
		for _, k := range p.kids {
			if kp := b.project(st, k, ci); kp != nil {
				kids = append(kids, kp)
			}
		}
		switch len(kids) {
		case 0:
			return nil
		case 1:
			return kids[0]
		}
		return &kpred{op: pAnd, kids: kids}
	case pOr:
		var kids []*kpred
		for _, k := range p.kids {
			kp := b.project(st, k, ci)
			if kp == nil {
				return nil
			}
			kids = append(kids, kp)
		}
		return &kpred{op: pOr, kids: kids}
	}
	return nil
}

func (c *class) describe(p *kpred) string {
	if p == nil {
		return ""
	}
	switch p.op {
	case pCol:
		if len(p.vals) == 1 {
			v := p.vals[0]
			if v.kind == vArrayParam || v.kind == vArrayConst {
				return c.label + " = ANY(" + valString(v) + ")"
			}
			return c.label + " = " + valString(v)
		}
		parts := make([]string, len(p.vals))
		for i, v := range p.vals {
			parts[i] = valString(v)
		}
		return c.label + " IN (" + strings.Join(parts, ", ") + ")"
	case pAnd, pOr:
		sep := " AND "
		if p.op == pOr {
			sep = " OR "
		}
		parts := make([]string, len(p.kids))
		for i, k := range p.kids {
			parts[i] = c.describe(k)
			if k.op != pCol {
				parts[i] = "(" + parts[i] + ")"
			}
		}
		return strings.Join(parts, sep)
	}
	return ""
}

func valString(v valExpr) string {
	switch v.kind {
	case vConst:
		if v.str {
			return "'" + strings.ReplaceAll(v.text, "'", "''") + "'"
		}
		return v.text
	case vParam, vArrayParam:
		return fmt.Sprintf("$%d", v.param+1)
	case vNull:
		return "NULL"
	case vDefault:
		return "DEFAULT"
	case vArrayConst:
		parts := make([]string, len(v.elems))
		for i, e := range v.elems {
			parts[i] = valString(e)
		}
		return "ARRAY[" + strings.Join(parts, ", ") + "]"
	}
	return "?"
}

// shardSet evaluates class ci's predicate with the execution's params: the
// shards that may hold matching rows. all is true when the predicate does
// not narrow the class (every shard of the distribution).
func (b *binding) shardSet(ci int, params *Params) (shards []string, all bool, err error) {
	c := &b.classes[ci]
	if c.pred != nil {
		shards, all, err = b.eval(c, c.pred, params)
		if err != nil {
			return nil, false, err
		}
		if !all {
			return shards, false, nil
		}
	}
	return b.r.ShardsOf(c.dist), true, nil
}

func (b *binding) eval(c *class, p *kpred, params *Params) ([]string, bool, error) {
	switch p.op {
	case pCol:
		var out []string
		add := func(v router.Value) {
			s, err := b.r.ShardForKey(c.dist, v)
			if err != nil {
				return // maps to no shard: no row can have it
			}
			out = addShard(out, s)
		}
		for _, v := range p.vals {
			switch v.kind {
			case vConst:
				k, err := router.KeyFromText(c.kt, v.text)
				if err != nil {
					return nil, true, nil
				}
				add(k)
			case vParam:
				k, null, err := paramKey(params, v.param, c.kt)
				if err == errUnknownKey {
					return nil, true, nil
				}
				if err != nil {
					return nil, false, err
				}
				if !null {
					add(k)
				}
			case vArrayParam:
				ks, err := paramArray(params, v.param, c.kt)
				if err == errUnknownKey {
					return nil, true, nil
				}
				if err != nil {
					return nil, false, err
				}
				for _, k := range ks {
					if k != nil {
						add(*k)
					}
				}
			case vArrayConst:
				sub, all, err := b.eval(c, &kpred{op: pCol, vals: v.elems}, params)
				if err != nil || all {
					return nil, all, err
				}
				for _, s := range sub {
					out = addShard(out, s)
				}
			case vNull:
			default:
				return nil, true, nil
			}
		}
		return out, false, nil
	case pAnd:
		var acc []string
		have := false
		for _, k := range p.kids {
			s, all, err := b.eval(c, k, params)
			if err != nil {
				return nil, false, err
			}
			if all {
				continue
			}
			if !have {
				acc, have = s, true
				continue
			}
			var n []string
			for _, x := range acc {
				for _, y := range s {
					if x == y {
						n = append(n, x)
					}
				}
			}
			acc = n
		}
		return acc, !have, nil
	case pOr:
		var acc []string
		for _, k := range p.kids {
			s, all, err := b.eval(c, k, params)
			if err != nil || all {
				return nil, all, err
			}
			for _, x := range s {
				acc = addShard(acc, x)
			}
		}
		return acc, false, nil
	}
	return nil, true, nil
}

// addShard inserts s into the sorted set out.
func addShard(out []string, s string) []string {
	i := sort.SearchStrings(out, s)
	if i < len(out) && out[i] == s {
		return out
	}
	out = append(out, "")
	copy(out[i+1:], out[i:])
	out[i] = s
	return out
}
