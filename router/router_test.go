package router_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

func snapshot(t testing.TB) *topology.Snapshot {
	t.Helper()
	var shards []topology.ShardSpec
	for i, n := range []string{"s0", "s1", "s2", "s3"} {
		shards = append(shards, topology.ShardSpec{Name: n, Primary: "127.0.0.1:" + string(rune('1'+i)) + "000"})
	}
	snap, err := topology.Build(shards, topology.Spec{
		Distributions: []topology.DistributionSpec{
			{Name: "users", Overrides: map[string]string{"42": "s3"}},
			{Name: "tenants", KeyType: topology.UUID},
			{Name: "names", KeyType: topology.Text, Overrides: map[string]string{"vip": "s2"}},
			{Name: "regions", Scheme: topology.List, KeyType: topology.Text,
				Lists: map[string][]string{"s1": {"de", "fr"}, "s2": {"us"}}},
			{Name: "events", Scheme: topology.RangeScheme, Ranges: []topology.RangeSpec{
				{To: "0", Shard: "s0"}, {From: "0", To: "1000", Shard: "s1"}, {From: "2000", Shard: "s2"}}},
			{Name: "docs", Scheme: topology.RangeScheme, KeyType: topology.Text, Ranges: []topology.RangeSpec{
				{To: "m", Shard: "s0"}, {From: "m", To: "t", Shard: "s1"}}},
			{Name: "sessions", Scheme: topology.RangeScheme, KeyType: topology.UUID, Ranges: []topology.RangeSpec{
				{To: "80000000-0000-0000-0000-000000000000", Shard: "s0"},
				{From: "80000000-0000-0000-0000-000000000000", Shard: "s3"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestShardForKeyHash(t *testing.T) {
	snap := snapshot(t)
	r := router.For(snap)
	if router.For(snap) != r {
		t.Fatal("For did not cache the router on the snapshot")
	}
	d, _ := snap.Distribution("users")
	counts := map[string]int{}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 20000; i++ {
		k := int64(rng.Uint64())
		if i < 1000 {
			k = int64(i)
		}
		got, err := r.ShardForKey("users", router.IntKey(k))
		if err != nil {
			t.Fatal(err)
		}
		// Cross-check with a linear scan of the range table.
		want := ""
		h := router.HashInt8(k)
		for _, rg := range d.Ranges {
			if rg.Contains(h) {
				want = rg.Shard
			}
		}
		if k == 42 {
			want = "s3"
		}
		if got != want {
			t.Fatalf("key %d (hash %d): got %s want %s", k, h, got, want)
		}
		counts[got]++
	}
	for _, s := range []string{"s0", "s1", "s2", "s3"} {
		if counts[s] < 20000/4/2 {
			t.Errorf("shard %s got only %d of 20000 keys: %v", s, counts[s], counts)
		}
	}
	if s, _ := r.ShardForHash("users", router.HashInt8(42)); s == "" {
		t.Fatal("ShardForHash")
	}
	if got := r.ShardsOf("users"); !reflect.DeepEqual(got, []string{"s0", "s1", "s2", "s3"}) {
		t.Fatalf("ShardsOf %v", got)
	}
}

func TestShardForKeyOtherSchemes(t *testing.T) {
	r := router.New(snapshot(t))
	mustText := func(kt topology.KeyType, s string) router.Value {
		v, err := router.KeyFromText(kt, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		dist string
		key  router.Value
		want string // "" = error
		code string
	}{
		{"regions", router.TextKey("de"), "s1", ""},
		{"regions", router.TextKey("us"), "s2", ""},
		{"regions", router.TextKey("mars"), "", "22023"},
		{"events", router.IntKey(math.MinInt64), "s0", ""},
		{"events", router.IntKey(-1), "s0", ""},
		{"events", router.IntKey(0), "s1", ""},
		{"events", router.IntKey(999), "s1", ""},
		{"events", router.IntKey(1000), "", "22023"}, // gap [1000, 1999]
		{"events", router.IntKey(1999), "", "22023"},
		{"events", router.IntKey(2000), "s2", ""},
		{"events", router.IntKey(math.MaxInt64), "s2", ""},
		{"docs", router.TextKey(""), "s0", ""},
		{"docs", router.TextKey("lzzz"), "s0", ""},
		{"docs", router.TextKey("m"), "s1", ""},
		{"docs", router.TextKey("szzz"), "s1", ""},
		{"docs", router.TextKey("t"), "", "22023"},
		{"sessions", mustText(topology.UUID, "7FFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"), "s0", ""},
		{"sessions", mustText(topology.UUID, "80000000000000000000000000000000"), "s3", ""},
		{"names", router.TextKey("vip"), "s2", ""},
		{"users", router.TextKey("42"), "", "42804"},
		{"nope", router.IntKey(1), "", "42704"},
	}
	for _, c := range cases {
		got, err := r.ShardForKey(c.dist, c.key)
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("%s %v: got %q, %v; want %s", c.dist, c.key, got, err, c.want)
			}
			continue
		}
		var re *router.RouteError
		if !errors.As(err, &re) || re.SQLState() != c.code || re.Distribution != c.dist {
			t.Errorf("%s %v: got %q, %v; want error %s", c.dist, c.key, got, err, c.code)
		}
	}
	_, err := r.ShardForKey("regions", router.TextKey("mars"))
	if !strings.Contains(err.Error(), `distribution regions: key "mars" maps to no shard`) {
		t.Fatalf("unclear error: %v", err)
	}
}

func TestRouterFollowsCommands(t *testing.T) {
	st := topology.NewStaticStore(snapshot(t))
	key := router.IntKey(7)
	before, _ := router.For(st.Current()).ShardForKey("users", key)
	target := "s0"
	if before == "s0" {
		target = "s1"
	}
	h := key.Hash()
	if _, err := st.Apply(t.Context(), topology.AssignRange{Distribution: "users", Lo: h, Hi: h, Shard: target}); err != nil {
		t.Fatal(err)
	}
	after, _ := router.For(st.Current()).ShardForKey("users", key)
	if after != target {
		t.Fatalf("after AssignRange key 7 goes to %s, want %s", after, target)
	}
	if _, err := st.Apply(t.Context(), topology.SetOverride{Distribution: "users", Key: "7", Shard: "s2"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := router.For(st.Current()).ShardForKey("users", key); s != "s2" {
		t.Fatalf("override ignored: %s", s)
	}
}

func TestKeyParsing(t *testing.T) {
	ok := []struct {
		kt     topology.KeyType
		format int16
		in     []byte
		want   router.Value
	}{
		{topology.Int, 0, []byte(" -42 "), router.IntKey(-42)},
		{topology.Int, 0, []byte("+9223372036854775807"), router.IntKey(math.MaxInt64)},
		{topology.Int, 1, []byte{0xff, 0xfe}, router.IntKey(-2)},
		{topology.Int, 1, []byte{0x80, 0, 0, 0}, router.IntKey(math.MinInt32)},
		{topology.Int, 1, []byte{0, 0, 0, 1, 0, 0, 0, 0}, router.IntKey(1 << 32)},
		{topology.Text, 0, []byte("héllo"), router.TextKey("héllo")},
		{topology.Text, 1, []byte("😀"), router.TextKey("😀")},
		{topology.UUID, 0, []byte("{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"), router.UUIDKey([16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11})},
		{topology.UUID, 1, []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}, router.UUIDKey([16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11})},
	}
	for _, c := range ok {
		got, err := router.KeyFromParam(c.kt, c.format, c.in)
		if err != nil || got != c.want {
			t.Errorf("%s/%d %q: got %v, %v; want %v", c.kt, c.format, c.in, got, err, c.want)
		}
	}
	// Each with PostgreSQL's SQLSTATE for the same parameter of a bigint,
	// text or uuid column.
	bad := []struct {
		kt     topology.KeyType
		format int16
		in     []byte
		code   string
	}{
		{topology.Int, 0, []byte("1.5"), "22P02"},
		{topology.Int, 0, []byte("9223372036854775808"), "22003"},
		{topology.Int, 0, []byte("-9223372036854775809"), "22003"},
		{topology.Int, 0, []byte(""), "22P02"},
		{topology.Int, 0, []byte("1_000"), "22P02"},
		{topology.Int, 1, []byte{1, 2, 3}, "22P02"},
		{topology.Text, 0, []byte{0xff, 0xfe}, "22021"},
		{topology.Text, 0, []byte("a\x00b"), "22021"},
		{topology.UUID, 0, []byte("not-a-uuid"), "22P02"},
		{topology.UUID, 1, make([]byte, 15), "22P02"},
		{topology.Int, 2, []byte("1"), "22P02"},
		{"float", 0, []byte("1"), "22P02"},
	}
	for _, c := range bad {
		_, err := router.KeyFromParam(c.kt, c.format, c.in)
		var ke *router.KeyError
		if !errors.As(err, &ke) || ke.SQLState() != c.code {
			t.Errorf("%s/%d %q: got %v, want a KeyError with SQLSTATE %s", c.kt, c.format, c.in, err, c.code)
		}
	}
	if v := router.UUIDKey([16]byte{}); v.Canonical() != "00000000-0000-0000-0000-000000000000" {
		t.Fatal(v.Canonical())
	}
}

// Properties that hold without a server (the server test is the real proof).
func TestHashProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 10000; i++ {
		v := int64(int32(rng.Uint32()))
		// int8 values in int4 range hash as the int4 value (hash_uint32 of the value).
		if router.HashInt8(v) != router.HashUint32(uint32(int32(v))) {
			t.Fatalf("fold broken for %d", v)
		}
		b := make([]byte, rng.IntN(100))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if router.HashBytes(b) != router.HashText(string(b)) {
			t.Fatalf("HashBytes and HashText differ on %x", b)
		}
	}
}
