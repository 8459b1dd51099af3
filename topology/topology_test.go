package topology_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/topology"
)

func shards(names ...string) []topology.ShardSpec {
	var out []topology.ShardSpec
	for i, n := range names {
		out = append(out, topology.ShardSpec{Name: n, Primary: "127.0.0.1:" + string(rune('1'+i)) + "5432", Region: "eu"})
	}
	return out
}

func fixture(t *testing.T) *topology.Snapshot {
	t.Helper()
	snap, err := topology.Build(shards("s0", "s1", "s2"), topology.Spec{
		DefaultShard: "s0",
		Distributions: []topology.DistributionSpec{
			{Name: "users", Overrides: map[string]string{"0042": "s2"}},
			{Name: "regions", Scheme: topology.List, KeyType: topology.Text,
				Lists: map[string][]string{"s1": {"de", "fr"}, "s2": {"us"}}},
			{Name: "events", Scheme: topology.RangeScheme, Ranges: []topology.RangeSpec{
				{From: "", To: "1000", Shard: "s0"}, {From: "1000", To: "", Shard: "s1"}}},
			{Name: "docs", Scheme: topology.RangeScheme, KeyType: topology.Text, Ranges: []topology.RangeSpec{
				{From: "", To: "m", Shard: "s0"}, {From: "m", Shard: "s1"}}},
		},
		Tables: []topology.TableSpec{
			{Name: "users", Key: "id", Distribution: "users"},
			{Name: "Public.Posts", Key: "author_id", Distribution: "users"},
			{Name: "countries", Kind: topology.Reference},
		},
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return snap
}

// coverage checks that a hash range table covers the int64 space exactly
// once and returns the share of the space per shard.
func coverage(t *testing.T, rs []topology.Range) map[string]float64 {
	t.Helper()
	share := map[string]float64{}
	if len(rs) == 0 || rs[0].Lo != math.MinInt64 || rs[len(rs)-1].Hi != math.MaxInt64 {
		t.Fatalf("table does not span the int64 space: %v", rs)
	}
	for i, r := range rs {
		if r.Lo > r.Hi || (i > 0 && rs[i-1].Hi+1 != r.Lo) {
			t.Fatalf("bad range %d: %+v after %+v", i, r, rs[max(i-1, 0)])
		}
		share[r.Shard] += r.Fraction()
	}
	return share
}

func TestBuildAndGetters(t *testing.T) {
	s := fixture(t)
	if s.Version() != 1 || s.DefaultShard() != "s0" {
		t.Fatalf("version %d default %q", s.Version(), s.DefaultShard())
	}
	if got := s.ShardNames(); !reflect.DeepEqual(got, []string{"s0", "s1", "s2"}) {
		t.Fatalf("shard names %v", got)
	}
	tb, ok := s.Table("public.posts")
	if !ok || tb.Kind != topology.Distributed || tb.KeyColumn != "author_id" || tb.Distribution != "users" {
		t.Fatalf("posts: %+v %v", tb, ok)
	}
	if tb, ok := s.Table("public.countries"); !ok || tb.Kind != topology.Reference {
		t.Fatalf("countries: %+v", tb)
	}
	if _, ok := s.Table("public.unlisted"); ok {
		t.Fatalf("unlisted table found")
	}
	u, _ := s.Distribution("users")
	if u.Overrides["42"] != "s2" {
		t.Fatalf("override not canonicalised: %v", u.Overrides)
	}
	share := coverage(t, u.Ranges)
	for _, n := range []string{"s0", "s1", "s2"} {
		if share[n] < 0.2 || share[n] > 0.47 {
			t.Errorf("shard %s owns %.3f of the hash space", n, share[n])
		}
	}
	ev, _ := s.Distribution("events")
	want := []topology.Range{{Lo: math.MinInt64, Hi: 999, Shard: "s0"}, {Lo: 1000, Hi: math.MaxInt64, Shard: "s1"}}
	if !reflect.DeepEqual(ev.Ranges, want) {
		t.Fatalf("events ranges %v", ev.Ranges)
	}

	// Getters return copies: changing them does not change the snapshot.
	u.Ranges[0].Shard = "zzz"
	u.Overrides["1"] = "zzz"
	sh, _ := s.Shard("s0")
	sh.Replicas = append(sh.Replicas, "x:1")
	u2, _ := s.Distribution("users")
	sh2, _ := s.Shard("s0")
	if u2.Ranges[0].Shard == "zzz" || u2.Overrides["1"] != "" || len(sh2.Replicas) != 0 {
		t.Fatalf("snapshot changed through a getter")
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name string
		spec topology.Spec
		want string
	}{
		{"dup list value", topology.Spec{Distributions: []topology.DistributionSpec{{Name: "r", Scheme: topology.List, KeyType: topology.Text,
			Lists: map[string][]string{"s0": {"de"}, "s1": {"de"}}}}}, `distribution r: value "de" is listed for both s0 and s1`},
		{"unknown shard in ranges", topology.Spec{Distributions: []topology.DistributionSpec{{Name: "e", Scheme: topology.RangeScheme,
			Ranges: []topology.RangeSpec{{To: "10", Shard: "nope"}}}}}, `shard "nope" does not exist`},
		{"overlap", topology.Spec{Distributions: []topology.DistributionSpec{{Name: "e", Scheme: topology.RangeScheme,
			Ranges: []topology.RangeSpec{{To: "10", Shard: "s0"}, {From: "5", Shard: "s1"}}}}}, `overlap`},
		{"hash gap", topology.Spec{Distributions: []topology.DistributionSpec{{Name: "h",
			Ranges: []topology.RangeSpec{{To: "10", Shard: "s0"}, {From: "20", Shard: "s1"}}}}}, `distribution h: gap between 9 and 20`},
		{"bad key type", topology.Spec{Distributions: []topology.DistributionSpec{{Name: "h", KeyType: "float"}}}, `unknown key type`},
		{"table without dist", topology.Spec{Tables: []topology.TableSpec{{Name: "t", Key: "id", Distribution: "nope"}}}, `table public.t: distribution "nope" does not exist`},
		{"bad default", topology.Spec{DefaultShard: "s9"}, `default shard: shard "s9" does not exist`},
		{"bad int list value", topology.Spec{Distributions: []topology.DistributionSpec{{Name: "r", Scheme: topology.List,
			Lists: map[string][]string{"s0": {"x"}}}}}, `invalid input syntax for type bigint`},
	}
	for _, c := range cases {
		_, err := topology.Build(shards("s0", "s1"), c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, topology.ErrInvalid) {
			t.Errorf("%s: got %v, want error containing %q", c.name, err, c.want)
		}
	}
}

func TestHashLayoutDeterministicAndCovering(t *testing.T) {
	a := topology.HashLayout([]string{"a", "b", "c"}, 0)
	b := topology.HashLayout([]string{"c", "a", "b", "a"}, 64)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("layout depends on order or duplicates")
	}
	coverage(t, a)
	for i := 1; i < len(a); i++ {
		if a[i].Shard == a[i-1].Shard {
			t.Fatalf("adjacent ranges of %s not merged", a[i].Shard)
		}
	}
	one := topology.HashLayout([]string{"only"}, 8)
	if len(one) != 1 || one[0].Lo != math.MinInt64 || one[0].Hi != math.MaxInt64 {
		t.Fatalf("single shard layout %v", one)
	}
	if topology.HashLayout(nil, 8) != nil {
		t.Fatalf("empty layout not nil")
	}
}

// owners returns, for two covering tables, the fraction of the space whose
// owner differs, failing if any of it moved anywhere but to newShard.
func movedTo(t *testing.T, old, cur []topology.Range, newShard string) float64 {
	t.Helper()
	moved := 0.0
	i, j := 0, 0
	lo := int64(math.MinInt64)
	for {
		hi := min(old[i].Hi, cur[j].Hi)
		if old[i].Shard != cur[j].Shard {
			if cur[j].Shard != newShard {
				t.Fatalf("[%d, %d] moved from %s to %s", lo, hi, old[i].Shard, cur[j].Shard)
			}
			moved += topology.Range{Lo: lo, Hi: hi}.Fraction()
		}
		if hi == math.MaxInt64 {
			return moved
		}
		lo = hi + 1
		if old[i].Hi == hi {
			i++
		}
		if cur[j].Hi == hi {
			j++
		}
	}
}

func TestAddShardLayoutMovesAboutOneNth(t *testing.T) {
	old := topology.HashLayout([]string{"s0", "s1", "s2"}, 64)
	cur := topology.AddShardLayout(old, "s3", 64)
	share := coverage(t, cur)
	moved := movedTo(t, old, cur, "s3")
	if moved < 0.17 || moved > 0.33 {
		t.Fatalf("adding a 4th shard moved %.3f of the space, want about 0.25", moved)
	}
	if math.Abs(share["s3"]-moved) > 1e-9 {
		t.Fatalf("s3 owns %.4f but %.4f moved", share["s3"], moved)
	}
	// Same as laying out four shards from scratch.
	if full := topology.HashLayout([]string{"s0", "s1", "s2", "s3"}, 64); !reflect.DeepEqual(full, cur) {
		t.Fatalf("AddShardLayout differs from HashLayout of all four shards")
	}
	// After manual changes, adding still only takes from others.
	edited := topology.ReassignRange(old, -1000, 1000, "s1")
	cur2 := topology.AddShardLayout(edited, "s3", 64)
	coverage(t, cur2)
	if m := movedTo(t, topology.MergeAdjacent(edited), cur2, "s3"); m < 0.17 || m > 0.33 {
		t.Fatalf("moved %.3f", m)
	}
}

func TestCommands(t *testing.T) {
	ctx := context.Background()
	st := topology.NewStaticStore(nil)
	apply := func(c topology.Command) *topology.Snapshot {
		t.Helper()
		s, err := st.Apply(ctx, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Type(), err)
		}
		return s
	}
	mustFail := func(c topology.Command, kind error, want string) {
		t.Helper()
		before := st.Current()
		_, err := st.Apply(ctx, c)
		if err == nil || !errors.Is(err, kind) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v, want %v containing %q", c.Type(), err, kind, want)
		}
		if st.Current() != before {
			t.Fatalf("%s: failed command changed the store", c.Type())
		}
	}
	apply(topology.AddShard{Shard: topology.Shard{Name: "a", Primary: "127.0.0.1:5432"}})
	apply(topology.AddShard{Shard: topology.Shard{Name: "b", Primary: "127.0.0.1:5433"}})
	s := apply(topology.DistributeTable{Table: "Users", KeyColumn: "id", Distribution: "users", VNodes: 16})
	if s.Version() != 3 || s.DefaultShard() != "a" {
		t.Fatalf("version %d default %s", s.Version(), s.DefaultShard())
	}
	mustFail(topology.AddShard{Shard: topology.Shard{Name: "c", Primary: "h:1"}, ExpectVersion: 2}, topology.ErrVersionMismatch, "expects version 2, current is 3")
	var vm *topology.VersionMismatchError
	_, err := st.Apply(ctx, topology.SetDefaultShard{Shard: "b", ExpectVersion: 1})
	if !errors.As(err, &vm) || vm.Expected != 1 || vm.Actual != 3 {
		t.Fatalf("VersionMismatchError: %v", err)
	}
	apply(topology.AddShard{Shard: topology.Shard{Name: "c", Primary: "127.0.0.1:5434"}, ExpectVersion: 3})
	mustFail(topology.AddShard{Shard: topology.Shard{Name: "c", Primary: "127.0.0.1:5434"}}, topology.ErrInvalid, `shard "c" already exists`)
	mustFail(topology.AddShard{Shard: topology.Shard{Name: "d", Primary: "nohostport"}}, topology.ErrInvalid, "shard d: primary")
	apply(topology.DistributeTable{Table: "posts", KeyColumn: "author_id", Distribution: "users"})
	mustFail(topology.DistributeTable{Table: "x", KeyColumn: "k", Distribution: "users", KeyType: topology.Text}, topology.ErrInvalid, "does not match")
	apply(topology.ReferenceTable{Table: "countries"})

	// c owns nothing yet; removing it works, re-add it and give it a range.
	apply(topology.RemoveShard{Name: "c"})
	apply(topology.AddShard{Shard: topology.Shard{Name: "c", Primary: "127.0.0.1:5434"}})
	apply(topology.AssignRange{Distribution: "users", Lo: -100, Hi: 100, Shard: "c"})
	mustFail(topology.RemoveShard{Name: "c"}, topology.ErrInvalid, "shard c still owns range [-100, 100] of distribution users")
	mustFail(topology.RemoveShard{Name: "a"}, topology.ErrInvalid, "default shard")
	mustFail(topology.AssignRange{Distribution: "users", Lo: 5, Hi: 1, Shard: "c"}, topology.ErrInvalid, "lo 5 > hi 1")
	mustFail(topology.AssignRange{Distribution: "nope", Lo: 1, Hi: 5, Shard: "c"}, topology.ErrNotFound, `distribution "nope" does not exist`)
	mustFail(topology.AssignRange{Distribution: "users", Lo: 1, Hi: 5, Shard: "zz"}, topology.ErrNotFound, `shard "zz"`)

	s = apply(topology.SplitRange{Distribution: "users", At: 0})
	d, _ := s.Distribution("users")
	i := topology.FindRange(d.Ranges, 0)
	if d.Ranges[i].Lo != 0 || d.Ranges[i].Hi != 100 || d.Ranges[i-1].Lo != -100 || d.Ranges[i-1].Hi != -1 {
		t.Fatalf("split: %v", d.Ranges[i-1:i+1])
	}
	coverage(t, d.Ranges)
	mustFail(topology.SplitRange{Distribution: "users", At: 0}, topology.ErrInvalid, "cannot split at 0")
	s = apply(topology.MergeRanges{Distribution: "users", Lo: -100, Hi: 100})
	d, _ = s.Distribution("users")
	if i := topology.FindRange(d.Ranges, 0); d.Ranges[i] != (topology.Range{Lo: -100, Hi: 100, Shard: "c"}) {
		t.Fatalf("merge: %v", d.Ranges[i])
	}
	mustFail(topology.MergeRanges{Distribution: "users", Lo: -100, Hi: 50}, topology.ErrInvalid, "boundaries")
	mustFail(topology.MergeRanges{Distribution: "users", Lo: math.MinInt64, Hi: 100}, topology.ErrInvalid, "cannot merge ranges of shards")

	apply(topology.SetOverride{Distribution: "users", Key: " 007", Shard: "b"})
	s = st.Current()
	d, _ = s.Distribution("users")
	if d.Overrides["7"] != "b" {
		t.Fatalf("override: %v", d.Overrides)
	}
	mustFail(topology.SetOverride{Distribution: "users", Key: "x", Shard: "b"}, topology.ErrInvalid, "bigint")
	mustFail(topology.SetOverride{Distribution: "users", Key: "8", Shard: "zz"}, topology.ErrInvalid, `override "8": shard "zz" does not exist`)
	apply(topology.ClearOverride{Distribution: "users", Key: "7"})
	mustFail(topology.ClearOverride{Distribution: "users", Key: "7"}, topology.ErrNotFound, "no override")

	apply(topology.AddReplica{Shard: "a", Endpoint: "127.0.0.1:6000"})
	mustFail(topology.AddReplica{Shard: "a", Endpoint: "127.0.0.1:6000"}, topology.ErrInvalid, "listed twice")
	apply(topology.AddReplica{Shard: "a", Endpoint: "127.0.0.1:6001"})
	s = apply(topology.PromoteReplica{Shard: "a", Endpoint: "127.0.0.1:6000", KeepOldPrimary: true})
	sh, _ := s.Shard("a")
	if sh.Primary != "127.0.0.1:6000" || !reflect.DeepEqual(sh.Replicas, []string{"127.0.0.1:6001", "127.0.0.1:5432"}) {
		t.Fatalf("promote: %+v", sh)
	}
	apply(topology.RemoveReplica{Shard: "a", Endpoint: "127.0.0.1:5432"})
	mustFail(topology.RemoveReplica{Shard: "a", Endpoint: "127.0.0.1:5432"}, topology.ErrNotFound, "no replica")
	apply(topology.SetDefaultShard{Shard: "b"})
	mustFail(topology.SetDefaultShard{Shard: "zz"}, topology.ErrNotFound, "zz")

	apply(topology.CreateDistribution{Distribution: topology.Distribution{Name: "regions", Scheme: topology.List, KeyType: topology.Text,
		ListValues: map[string]string{"de": "a"}}})
	apply(topology.SetListValue{Distribution: "regions", Value: "us", Shard: "b"})
	mustFail(topology.SetListValue{Distribution: "users", Value: "1", Shard: "b"}, topology.ErrInvalid, "no list values")
	s = apply(topology.SetListValue{Distribution: "regions", Value: "de"})
	d, _ = s.Distribution("regions")
	if !reflect.DeepEqual(d.ListValues, map[string]string{"us": "b"}) {
		t.Fatalf("list values %v", d.ListValues)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCommandEncodingRoundTrip(t *testing.T) {
	cmds := []topology.Command{
		topology.AddShard{Shard: topology.Shard{Name: "a", Primary: "h:1", Replicas: []string{"h:2"}, Region: "eu", State: topology.ShardDraining}, ExpectVersion: 7},
		topology.RemoveShard{Name: "a"},
		topology.AddReplica{Shard: "a", Endpoint: "h:3"},
		topology.RemoveReplica{Shard: "a", Endpoint: "h:3"},
		topology.PromoteReplica{Shard: "a", Endpoint: "h:2", KeepOldPrimary: true},
		topology.SetDefaultShard{Shard: "a"},
		topology.CreateDistribution{Distribution: topology.Distribution{Name: "r", Scheme: topology.List, KeyType: topology.Text, ListValues: map[string]string{"x": "a"}}},
		topology.DistributeTable{Table: "t", KeyColumn: "k", Distribution: "d", KeyType: topology.UUID, Shards: []string{"a"}, VNodes: 3},
		topology.ReferenceTable{Table: "r"},
		topology.AssignRange{Distribution: "d", Lo: math.MinInt64, Hi: math.MaxInt64, Shard: "a"},
		topology.SplitRange{Distribution: "d", At: -5},
		topology.MergeRanges{Distribution: "d", Lo: 1, Hi: 2},
		topology.SetOverride{Distribution: "d", Key: "k", Shard: "a"},
		topology.ClearOverride{Distribution: "d", Key: "k"},
		topology.SetListValue{Distribution: "r", Value: "v", Shard: "a"},
		topology.StartMove{Move: topology.Move{ID: "m", Distribution: "d", Ranges: []topology.Span{{Lo: 1, Hi: 2}}, From: "a", To: "b", HoldTimeoutMS: 250}},
		topology.SetMoveState{ID: "m", From: topology.MovePending, To: topology.MoveCopying},
		topology.FlipMove{ID: "m"},
		topology.EndMove{ID: "m"},
		topology.SetShardReferences{Shard: "a", From: topology.ReferencesSyncing, To: topology.ReferencesCutover},
	}
	if len(cmds) != len(topology.CommandTypes()) {
		t.Fatalf("test covers %d of %d command types", len(cmds), len(topology.CommandTypes()))
	}
	for _, c := range cmds {
		b, err := topology.EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := topology.DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip %s: %#v != %#v", b, got, c)
		}
	}
	if _, err := topology.DecodeCommand([]byte(`{"type":"format_disk","cmd":{}}`)); err == nil {
		t.Fatal("unknown type decoded")
	}
	if _, err := topology.DecodeCommand([]byte(`{"type":"remove_shard","cmd":{"nmae":"a"}}`)); err == nil {
		t.Fatal("unknown field decoded")
	}
}

func TestSnapshotJSONRoundTrip(t *testing.T) {
	s := fixture(t)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := topology.DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b) != string(b2) {
		t.Fatalf("round trip differs:\n%s\n%s", b, b2)
	}
	if !reflect.DeepEqual(s.Distributions(), back.Distributions()) || !reflect.DeepEqual(s.Shards(), back.Shards()) ||
		!reflect.DeepEqual(s.Tables(), back.Tables()) || back.Version() != s.Version() || back.DefaultShard() != s.DefaultShard() {
		t.Fatal("decoded snapshot differs")
	}
	// Embedded in another document.
	var doc struct {
		Snap *topology.Snapshot `json:"snap"`
	}
	if err := json.Unmarshal([]byte(`{"snap":`+string(b)+`}`), &doc); err != nil || doc.Snap.Version() != 1 {
		t.Fatalf("embedded decode: %v", err)
	}
	// Invalid JSON content is rejected by validation.
	bad := strings.Replace(string(b), `"default_shard":"s0"`, `"default_shard":"s9"`, 1)
	if _, err := topology.DecodeSnapshot([]byte(bad)); err == nil || !errors.Is(err, topology.ErrInvalid) {
		t.Fatalf("invalid snapshot decoded: %v", err)
	}
}

func TestStaticStoreWatch(t *testing.T) {
	st := topology.NewStaticStore(fixture(t))
	ctx, cancel := context.WithCancel(context.Background())
	fast := st.Watch(ctx)
	slow := st.Watch(ctx)
	first := <-fast
	if first != st.Current() {
		t.Fatal("watch did not start with the current snapshot")
	}
	<-slow
	// The writer never blocks on the slow watcher, which then sees only the
	// latest version.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50; i++ {
			if _, err := st.Apply(context.Background(), topology.AddReplica{Shard: "s1", Endpoint: "127.0.0.1:" + strconv.Itoa(7000+i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	last := uint64(1)
	for last < 51 {
		select {
		case s := <-fast:
			if s.Version() <= last {
				t.Fatalf("watch went from version %d to %d", last, s.Version())
			}
			last = s.Version()
		case <-time.After(10 * time.Second):
			t.Fatalf("fast watcher stuck at version %d", last)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writer blocked")
	}
	if s := <-slow; s.Version() != 51 {
		t.Fatalf("slow watcher got version %d, want the latest (51)", s.Version())
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for _, ch := range []<-chan *topology.Snapshot{fast, slow} {
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-deadline:
				t.Fatal("watch channel not closed after cancel")
			}
		}
	}
	if err := st.Replace(fixture(t)); err == nil {
		t.Fatal("Replace accepted an older version")
	}
}

func TestQualifyAndCanonical(t *testing.T) {
	if got := topology.QualifyName(" Users "); got != "public.users" {
		t.Fatal(got)
	}
	if got := topology.QualifyName("App.Users"); got != "app.users" {
		t.Fatal(got)
	}
	for in, want := range map[string]string{
		"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11":     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}":    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"a0eebc999c0b4ef8bb6d6bb9bd380a11":         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11":  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1":      "",
		"a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11":    "",
		"-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11":    "",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-":    "",
		"a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11":    "",
		"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11":    "",
		"g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11":     "",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11a0":   "",
		" a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ":   "",
		"{}":                                       "",
		"00000000-0000-0000-0000-000000000000":     "00000000-0000-0000-0000-000000000000",
		"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF":     "ffffffff-ffff-ffff-ffff-ffffffffffff",
		"{FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF}":   "ffffffff-ffff-ffff-ffff-ffffffffffff",
		"ffffffffffffffffffffffffffffffff":         "ffffffff-ffff-ffff-ffff-ffffffffffff",
		"ffff-ffff-ffff-ffff-ffff-ffff-ffff-ffff":  "ffffffff-ffff-ffff-ffff-ffffffffffff",
		"ffffffff-ffff-ffff-ffff-ffffffffffff-fff": "",
	} {
		got, err := topology.CanonicalKey(topology.UUID, in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("uuid %q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{"007": "7", " -0 ": "0", "+5": "5", "9223372036854775807": "9223372036854775807", "9223372036854775808": "", "1.0": "", "": ""} {
		got, err := topology.CanonicalKey(topology.Int, in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("int %q: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestValidateMessages(t *testing.T) {
	base := func() *topology.Builder {
		return topology.NewBuilder(1).
			AddShard(topology.Shard{Name: "a", Primary: "127.0.0.1:5432"}).
			AddShard(topology.Shard{Name: "b", Primary: "127.0.0.1:5433"})
	}
	full := func(rs ...topology.Range) topology.Distribution {
		return topology.Distribution{Name: "users", Scheme: topology.Hash, KeyType: topology.Int, Ranges: rs}
	}
	cases := []struct {
		b    *topology.Builder
		want string
	}{
		{base().AddDistribution(full(topology.Range{Lo: math.MinInt64, Hi: 10, Shard: "a"}, topology.Range{Lo: 20, Hi: math.MaxInt64, Shard: "b"})),
			"distribution users: gap between 10 and 20"},
		{base().AddDistribution(full(topology.Range{Lo: math.MinInt64, Hi: 10, Shard: "a"}, topology.Range{Lo: 5, Hi: math.MaxInt64, Shard: "b"})),
			"distribution users: ranges [-9223372036854775808, 10] and [5, 9223372036854775807] overlap"},
		{base().AddDistribution(full(topology.Range{Lo: math.MinInt64, Hi: 10, Shard: "a"})),
			"distribution users: gap between 10 and 9223372036854775807"},
		{base().AddDistribution(full(topology.Range{Lo: 0, Hi: math.MaxInt64, Shard: "a"})),
			"distribution users: gap between -9223372036854775808 and 0"},
		{base().AddDistribution(full()), "distribution users: hash range table is empty"},
		{base().AddDistribution(full(topology.Range{Lo: math.MinInt64, Hi: math.MaxInt64, Shard: "c"})),
			`distribution users range [-9223372036854775808, 9223372036854775807]: shard "c" does not exist`},
		{base().AddDistribution(topology.Distribution{Name: "r", Scheme: topology.List, KeyType: topology.Int, ListValues: map[string]string{"07": "a"}}),
			`distribution r: list value "07" is not in canonical form (use "7")`},
		{base().AddDistribution(topology.Distribution{Name: "t", Scheme: topology.RangeScheme, KeyType: topology.Text,
			TextRanges: []topology.TextRange{{From: "a", To: "m", Shard: "a"}, {From: "k", Shard: "b"}}}),
			`distribution t: ranges from "a" and from "k" overlap`},
		{base().AddDistribution(topology.Distribution{Name: "t", Scheme: topology.RangeScheme, KeyType: topology.Text,
			Ranges: []topology.Range{{Lo: 1, Hi: 2, Shard: "a"}}}), "text keys use text ranges"},
		{base().AddDistribution(topology.Distribution{Name: "t", Scheme: "modulo", KeyType: topology.Int}), `unknown scheme "modulo"`},
		{base().AddTable(topology.Table{Name: "t", Kind: topology.Reference, KeyColumn: "id"}), "reference table has no key column"},
		{base().AddTable(topology.Table{Name: "t", Kind: topology.Distributed, Distribution: "users"}), "needs a key column"},
		{base().AddShard(topology.Shard{Name: "a", Primary: "127.0.0.1:1"}), `shard "a" is listed twice`},
		{base().AddShard(topology.Shard{Name: "c", Primary: "127.0.0.1:99999"}), "port must be 1-65535"},
		{base().AddShard(topology.Shard{Name: "c", Primary: "127.0.0.1:1", State: "melting"}), `unknown state "melting"`},
		{base().AddMove(topology.Move{ID: "m1", Distribution: "users", From: "a", To: "b"}), `move m1: distribution "users" does not exist`},
	}
	for _, c := range cases {
		_, err := c.b.Build()
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, topology.ErrInvalid) {
			t.Errorf("got %v, want error containing %q", err, c.want)
		}
	}
	if _, err := base().AddDistribution(full(topology.Range{Lo: math.MinInt64, Hi: math.MaxInt64, Shard: "a"})).Build(); err != nil {
		t.Fatal(err)
	}
}
