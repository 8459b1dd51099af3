package rebalance

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/topology"
)

func TestRefReplicationName(t *testing.T) {
	seen := map[string]string{}
	long := strings.Repeat("Shard-Name.With/Odd chars", 5)
	for _, shard := range []string{"shard4", "Shard4", long, long + "x"} {
		for _, db := range []string{"postgres", "app", long} {
			n := refReplicationName(shard, db)
			if len(n) > 63 || !strings.HasPrefix(n, refReplicationPrefix) || strings.ToLower(n) != n {
				t.Errorf("refReplicationName(%q, %q) = %q: want lower case, prefix %s, at most 63 bytes", shard, db, n, refReplicationPrefix)
			}
			if n == replicationName(shard, db) {
				t.Errorf("reference sync and move of the same id share name %q", n)
			}
			seen[shard+"/"+db] = n
		}
	}
	// Distinct databases never share a name (slots are per server); the
	// same shard always gets the same one (a new leader finds it).
	if seen["shard4/postgres"] == seen["shard4/app"] {
		t.Errorf("databases share a name: %s", seen["shard4/postgres"])
	}
	if refReplicationName("shard4", "app") != seen["shard4/app"] {
		t.Error("refReplicationName is not deterministic")
	}
}

func TestRefSource(t *testing.T) {
	build := func(def string, shards ...topology.Shard) *topology.Snapshot {
		b := topology.NewBuilder(3)
		for _, s := range shards {
			s.Primary = "127.0.0.1:1"
			b.AddShard(s)
		}
		b.SetDefaultShard(def)
		snap, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	syncing := topology.Shard{Name: "new", References: topology.ReferencesSyncing}
	cases := []struct {
		name string
		snap *topology.Snapshot
		want string // "" none
	}{
		{"the default shard first", build("b", topology.Shard{Name: "a"}, topology.Shard{Name: "b"}, syncing), "b"},
		{"an offline default shard is skipped", build("b", topology.Shard{Name: "a"}, topology.Shard{Name: "b", State: topology.ShardOffline}, syncing), "a"},
		{"a shard still syncing is no source", build("a", topology.Shard{Name: "a", State: topology.ShardOffline}, topology.Shard{Name: "c", References: topology.ReferencesSyncing}, syncing), ""},
	}
	for _, c := range cases {
		s, ok := refSource(c.snap, "new")
		if got := map[bool]string{true: s.Name}[ok]; got != c.want {
			t.Errorf("%s: source %q, want %q", c.name, got, c.want)
		}
	}
}
