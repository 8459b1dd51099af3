package planner

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

func mustPlan(t testing.TB, p *Planner, snap *topology.Snapshot, sql string, params Params) plan.Operator {
	t.Helper()
	a, err := p.Analyze(sql)
	if err != nil {
		t.Fatalf("analyze %q: %v", sql, err)
	}
	op, err := p.Plan(snap, a, params)
	if err != nil {
		t.Fatalf("plan %q: %v", sql, err)
	}
	return op
}

func textParams(vals ...string) Params {
	var p Params
	for _, v := range vals {
		p.Values = append(p.Values, []byte(v))
	}
	return p
}

// TestRouteMatchesRouter checks, for many keys, that a key literal, a text
// parameter and a binary parameter all route to router.ShardForKey.
func TestRouteMatchesRouter(t *testing.T) {
	p := New(Options{})
	snap := fixture(t)
	r := router.For(snap)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		k := rng.Int64() >> uint(rng.IntN(63))
		if i%3 == 0 {
			k = -k
		}
		want, err := r.ShardForKey("users", router.IntKey(k))
		if err != nil {
			t.Fatal(err)
		}
		lit := mustPlan(t, p, snap, fmt.Sprintf("SELECT * FROM posts WHERE author_id = %d", k), Params{}).(*plan.Route)
		txt := mustPlan(t, p, snap, "SELECT * FROM posts WHERE author_id = $1", textParams(strconv.FormatInt(k, 10))).(*plan.Route)
		bin := make([]byte, 8)
		binary.BigEndian.PutUint64(bin, uint64(k))
		bp := mustPlan(t, p, snap, "SELECT * FROM posts WHERE author_id = $1", Params{Values: [][]byte{bin}, Formats: []int16{1}}).(*plan.Route)
		ins := mustPlan(t, p, snap, "INSERT INTO users (id) VALUES ($1)", textParams(strconv.FormatInt(k, 10))).(*plan.Route)
		if lit.Shard != want || txt.Shard != want || bp.Shard != want || ins.Shard != want {
			t.Fatalf("key %d: literal %s, text %s, binary %s, insert %s; router says %s", k, lit.Shard, txt.Shard, bp.Shard, ins.Shard, want)
		}
	}
	for _, region := range []string{"eu", "us", "apac", "latam"} {
		want, _ := r.ShardForKey("regions", router.TextKey(region))
		got := mustPlan(t, p, snap, "SELECT * FROM regions_data WHERE region = '"+region+"'", Params{}).(*plan.Route)
		if got.Shard != want {
			t.Fatalf("region %s: %s, want %s", region, got.Shard, want)
		}
	}
	for i := 0; i < 200; i++ {
		var u [16]byte
		for j := range u {
			u[j] = byte(rng.IntN(256))
		}
		want, _ := r.ShardForKey("devices", router.UUIDKey(u))
		got := mustPlan(t, p, snap, "SELECT * FROM devices WHERE id = '"+topology.FormatUUID(u)+"'", Params{}).(*plan.Route)
		gotB := mustPlan(t, p, snap, "SELECT * FROM devices WHERE id = $1", Params{Values: [][]byte{u[:]}, Formats: []int16{1}}).(*plan.Route)
		if got.Shard != want || gotB.Shard != want {
			t.Fatalf("uuid %x: %s/%s, want %s", u, got.Shard, gotB.Shard, want)
		}
	}
}

// TestINScattersToExactlyTheKeysShards: an IN list reaches exactly the
// shards of its keys.
func TestINScattersToExactlyTheKeysShards(t *testing.T) {
	p := New(Options{})
	snap := fixture(t)
	r := router.For(snap)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		n := 1 + rng.IntN(6)
		var lits []string
		set := map[string]bool{}
		for j := 0; j < n; j++ {
			k := rng.Int64N(1 << 40)
			lits = append(lits, strconv.FormatInt(k, 10))
			s, _ := r.ShardForKey("users", router.IntKey(k))
			set[s] = true
		}
		var want []string
		for s := range set {
			want = append(want, s)
		}
		sort.Strings(want)
		op := mustPlan(t, p, snap, "SELECT * FROM users WHERE id IN ("+strings.Join(lits, ",")+")", Params{})
		var got []string
		switch x := op.(type) {
		case *plan.Route:
			got = []string{x.Shard}
		case *plan.Scatter:
			got = x.Shards
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("IN (%s): %v, want %v", strings.Join(lits, ","), got, want)
		}
		// The same through = ANY($1) with a text array.
		op = mustPlan(t, p, snap, "SELECT * FROM users WHERE id = ANY($1)", textParams("{"+strings.Join(lits, ",")+"}"))
		got = plan.Tree(op).Shards
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("ANY({%s}): %v, want %v", strings.Join(lits, ","), got, want)
		}
	}
}

// TestSplitInsertRoundTrip: every part parses, holds exactly its shard's
// rows, and re-planning a part with its parameters routes it to its shard.
func TestSplitInsertRoundTrip(t *testing.T) {
	p := New(Options{})
	snap := fixture(t)
	r := router.For(snap)
	rng := rand.New(rand.NewPCG(5, 6))
	for iter := 0; iter < 100; iter++ {
		n := 2 + rng.IntN(12)
		var rows []string
		var params Params
		useParams := iter%2 == 0
		keys := make([]int64, n)
		for i := 0; i < n; i++ {
			keys[i] = rng.Int64N(1 << 30)
			if useParams {
				rows = append(rows, fmt.Sprintf("($%d, $%d, 'row %d, with (parens)')", 2*i+1, 2*i+2, i))
				params.Values = append(params.Values, []byte(strconv.FormatInt(keys[i], 10)), []byte("name"+strconv.Itoa(i)))
			} else {
				rows = append(rows, fmt.Sprintf("(%d, 'n%d', /* c */ 'row %d, with (parens)')", keys[i], i, i))
			}
		}
		var sql string
		if useParams {
			sql = "INSERT INTO users (id, name, note) VALUES " + strings.Join(rows, ", ") + " ON CONFLICT DO NOTHING RETURNING id"
		} else {
			sql = "INSERT INTO users (id, name, note) VALUES\n  " + strings.Join(rows, ",\n  ") + "\nRETURNING id"
		}
		op := mustPlan(t, p, snap, sql, params)
		var parts []*plan.Route
		switch x := op.(type) {
		case *plan.SplitInsert:
			parts = x.Parts
			if !x.Returning {
				t.Fatal("RETURNING lost")
			}
		case *plan.Route:
			parts = []*plan.Route{x}
		}
		total := 0
		for _, part := range parts {
			tree, err := pg_query.Parse(part.SQL)
			if err != nil {
				t.Fatalf("part does not parse: %v\n%s", err, part.SQL)
			}
			ins := tree.Stmts[0].Stmt.GetInsertStmt()
			nrows := len(ins.SelectStmt.GetSelectStmt().ValuesLists)
			total += nrows
			if len(ins.ReturningList) != 1 {
				t.Fatalf("part lost RETURNING: %s", part.SQL)
			}
			var pp Params
			for _, idx := range part.ParamIndexes {
				pp.Values = append(pp.Values, params.Values[idx])
			}
			if part.ParamIndexes == nil {
				pp = params
			}
			again := mustPlan(t, p, snap, part.SQL, pp)
			rt, ok := again.(*plan.Route)
			if !ok || rt.Shard != part.Shard {
				t.Fatalf("part for %s re-plans to %s:\n%s", part.Shard, plan.String(again), part.SQL)
			}
		}
		if total != n {
			t.Fatalf("parts hold %d rows, want %d", total, n)
		}
		for _, k := range keys {
			if _, err := r.ShardForKey("users", router.IntKey(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestAllocateKeysContract follows the executor's steps: allocate, append
// as parameters, re-plan the rewritten SQL.
func TestAllocateKeysContract(t *testing.T) {
	p := New(fixtureOptions())
	snap := fixture(t)
	r := router.For(snap)
	orig := textParams("alice", "bob")
	op := mustPlan(t, p, snap, "INSERT INTO users (name) VALUES ($1), ($2) RETURNING id", orig)
	ak, ok := op.(*plan.AllocateKeys)
	if !ok {
		t.Fatalf("want AllocateKeys, got %s", plan.String(op))
	}
	if ak.Count != 2 || ak.FirstParam != 3 || ak.Column != "id" || ak.KeyType != topology.Int {
		t.Fatalf("bad AllocateKeys: %+v", ak)
	}
	keys := []string{"1001", "1002"}
	params := AppendKeys(orig, keys)
	op2 := mustPlan(t, p, snap, ak.SQL, params)
	s1, _ := r.ShardForKey("users", router.IntKey(1001))
	s2, _ := r.ShardForKey("users", router.IntKey(1002))
	got := plan.Tree(op2)
	switch x := op2.(type) {
	case *plan.Route:
		if s1 != s2 || x.Shard != s1 {
			t.Fatalf("route %s, keys on %s and %s", x.Shard, s1, s2)
		}
	case *plan.SplitInsert:
		if s1 == s2 || len(x.Parts) != 2 {
			t.Fatalf("split %v, keys on %s and %s", got, s1, s2)
		}
		for _, part := range x.Parts {
			var vals []string
			for _, i := range part.ParamIndexes {
				vals = append(vals, string(params.Values[i]))
			}
			if !(part.Shard == s1 && strings.Join(vals, ",") == "alice,1001") && !(part.Shard == s2 && strings.Join(vals, ",") == "bob,1002") {
				t.Fatalf("part %s gets %v", part.Shard, vals)
			}
		}
	default:
		t.Fatalf("unexpected %s", plan.String(op2))
	}
}

func TestLinesAndDescribe(t *testing.T) {
	p := New(Options{})
	snap := fixture(t)
	op := mustPlan(t, p, snap, "EXPLAIN INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b')", Params{})
	lines := plan.Lines(op)
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "Explain") || !strings.HasPrefix(lines[1], "  SplitInsert") || !strings.HasPrefix(lines[2], "    Route shard=") {
		t.Fatalf("lines:\n%s", strings.Join(lines, "\n"))
	}
	if n := len(plan.Leaves(op)); n != 2 {
		t.Fatalf("leaves: %d", n)
	}
}

func TestAnalysisFacts(t *testing.T) {
	p := New(Options{})
	a, err := p.Analyze("SELECT * FROM Users u JOIN app.Currencies c ON true WHERE u.id = 1; INSERT INTO posts (author_id) VALUES (1)")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Statements) != 2 {
		t.Fatalf("statements: %d", len(a.Statements))
	}
	s0, s1 := a.Statements[0], a.Statements[1]
	if s0.Kind != KindSelect || !s0.ReadOnly || strings.Join(s0.Tables, ",") != "app.currencies,public.users" {
		t.Fatalf("stmt 0: %+v", s0)
	}
	if s1.Kind != KindInsert || s1.ReadOnly || s1.SQL != "INSERT INTO posts (author_id) VALUES (1)" {
		t.Fatalf("stmt 1: %+v", s1)
	}
	_, err = p.Analyze("SELECT FROM WHERE")
	pe, ok := err.(*plan.Error)
	if !ok || pe.Code != "42601" || pe.Position == 0 {
		t.Fatalf("parse error: %#v", err)
	}
}

// TestTopologyChangeRebinds: the same cached analysis plans differently
// once the topology changes.
func TestTopologyChangeRebinds(t *testing.T) {
	p := New(Options{})
	snap := fixture(t)
	a, _ := p.Analyze("SELECT * FROM audit_log WHERE id = 5")
	op, _ := p.Plan(snap, a, Params{})
	if op.(*plan.Route).Shard != "s0" {
		t.Fatal("audit_log not on default shard")
	}
	b := topology.NewBuilder(2)
	for _, s := range snap.Shards() {
		b.AddShard(s)
	}
	b.SetDefaultShard("s0")
	for _, d := range snap.Distributions() {
		b.AddDistribution(d)
	}
	for _, tb := range snap.Tables() {
		b.AddTable(tb)
	}
	b.AddTable(topology.Table{Name: "audit_log", Kind: topology.Distributed, KeyColumn: "id", Distribution: "users"})
	snap2, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	op, _ = p.Plan(snap2, a, Params{})
	want, _ := router.For(snap2).ShardForKey("users", router.IntKey(5))
	if op.(*plan.Route).Shard != want {
		t.Fatalf("after change: %s, want %s", plan.String(op), want)
	}
}

func TestCacheEvictionBound(t *testing.T) {
	for _, shards := range []int{1, 16} {
		p := New(Options{CacheSize: 100, CacheShards: shards})
		for i := 0; i < 1000; i++ {
			if _, err := p.Analyze(fmt.Sprintf("SELECT %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if n := p.CacheLen(); n > 100+shards || n < 50 {
			t.Fatalf("shards %d: cache holds %d entries, bound 100", shards, n)
		}
	}
	// Exact LRU order with one shard: recently used entries survive.
	p := New(Options{CacheSize: 3, CacheShards: 1})
	a1, _ := p.Analyze("SELECT 1")
	p.Analyze("SELECT 2")
	p.Analyze("SELECT 3")
	p.Analyze("SELECT 1") // touch
	p.Analyze("SELECT 4") // evicts SELECT 2
	again, _ := p.Analyze("SELECT 1")
	if again != a1 {
		t.Fatal("recently used entry was evicted")
	}
	if _, _, ok := p.cache.get("SELECT 2"); ok {
		t.Fatal("least recently used entry survived")
	}
	if p.CacheLen() != 3 {
		t.Fatalf("len %d", p.CacheLen())
	}
}

func TestCacheConcurrent(t *testing.T) {
	p := New(Options{CacheSize: 64})
	snap := fixture(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				k := (i*7 + g) % 100
				a, err := p.Analyze(fmt.Sprintf("SELECT * FROM users WHERE id = %d", k))
				if err != nil {
					t.Error(err)
					return
				}
				op, err := p.Plan(snap, a, Params{})
				if err != nil {
					t.Error(err)
					return
				}
				want, _ := router.For(snap).ShardForKey("users", router.IntKey(int64(k)))
				if op.(*plan.Route).Shard != want {
					t.Errorf("key %d: %s", k, plan.String(op))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if p.CacheLen() > 64+16 {
		t.Fatalf("cache len %d", p.CacheLen())
	}
}

const pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"

func BenchmarkAnalyzeUncached(b *testing.B) {
	p := New(Options{CacheSize: -1})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := p.Analyze(pgbenchSelect); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAnalyzeCached(b *testing.B) {
	p := New(Options{})
	p.Analyze(pgbenchSelect)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := p.Analyze(pgbenchSelect); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnalyzeCachedParallel compares one mutex with the sharded LRU
// under contention (100 distinct statements).
func BenchmarkAnalyzeCachedParallel(b *testing.B) {
	var sqls []string
	for i := 0; i < 100; i++ {
		sqls = append(sqls, fmt.Sprintf("SELECT * FROM users WHERE id = $1 AND k = %d", i))
	}
	for _, shards := range []int{1, 16} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			p := New(Options{CacheShards: shards})
			for _, s := range sqls {
				p.Analyze(s)
			}
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					p.Analyze(sqls[i%len(sqls)])
					i++
				}
			})
		})
	}
}

// BenchmarkPlanPointSelect is the per-execution cost of the hot path:
// cached analysis + Plan with a text parameter.
func BenchmarkPlanPointSelect(b *testing.B) {
	p := New(Options{})
	snap := fixture(b)
	params := textParams("12345")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a, _ := p.Analyze("SELECT * FROM users WHERE id = $1")
		if _, err := p.Plan(snap, a, params); err != nil {
			b.Fatal(err)
		}
	}
}
