package planner

import (
	"math"
	"testing"

	"github.com/shardproxy/shardproxy/topology"
)

// fixture is the fixed topology of the golden tests: four shards (s0 is the
// default); users(id), posts(author_id) and comments(post_author_id)
// hash-distributed and colocated in distribution "users" (key 42 pinned to
// s3); devices(id) by uuid hash; regions_data(region) by list;
// metrics(tenant_id) by integer range (negative keys map nowhere);
// countries and currencies are reference tables.
func fixture(t testing.TB) *topology.Snapshot {
	t.Helper()
	shards := []string{"s0", "s1", "s2", "s3"}
	b := topology.NewBuilder(1)
	for i, s := range shards {
		b.AddShard(topology.Shard{Name: s, Primary: "127.0.0.1:" + string(rune('1'+i)) + "000"})
	}
	b.SetDefaultShard("s0")
	b.AddDistribution(topology.Distribution{Name: "users", Scheme: topology.Hash, KeyType: topology.Int,
		Ranges: topology.HashLayout(shards, 0), Overrides: map[string]string{"42": "s3"}})
	b.AddDistribution(topology.Distribution{Name: "devices", Scheme: topology.Hash, KeyType: topology.UUID,
		Ranges: topology.HashLayout(shards, 0)})
	b.AddDistribution(topology.Distribution{Name: "regions", Scheme: topology.List, KeyType: topology.Text,
		ListValues: map[string]string{"eu": "s1", "us": "s2", "apac": "s3", "latam": "s3"}})
	b.AddDistribution(topology.Distribution{Name: "tenants", Scheme: topology.RangeScheme, KeyType: topology.Int,
		Ranges: []topology.Range{{Lo: 0, Hi: 999, Shard: "s0"}, {Lo: 1000, Hi: 1999, Shard: "s1"}, {Lo: 2000, Hi: math.MaxInt64, Shard: "s2"}}})
	b.AddTable(topology.Table{Name: "users", Kind: topology.Distributed, KeyColumn: "id", Distribution: "users"})
	b.AddTable(topology.Table{Name: "posts", Kind: topology.Distributed, KeyColumn: "author_id", Distribution: "users"})
	b.AddTable(topology.Table{Name: "comments", Kind: topology.Distributed, KeyColumn: "post_author_id", Distribution: "users"})
	b.AddTable(topology.Table{Name: "devices", Kind: topology.Distributed, KeyColumn: "id", Distribution: "devices"})
	b.AddTable(topology.Table{Name: "regions_data", Kind: topology.Distributed, KeyColumn: "region", Distribution: "regions"})
	b.AddTable(topology.Table{Name: "metrics", Kind: topology.Distributed, KeyColumn: "tenant_id", Distribution: "tenants"})
	b.AddTable(topology.Table{Name: "countries", Kind: topology.Reference})
	b.AddTable(topology.Table{Name: "app.currencies", Kind: topology.Reference})
	snap, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// fixtureOptions: users and devices have generated keys; users' columns are
// known (for INSERT without a column list).
func fixtureOptions() Options {
	return Options{
		GeneratedKeys: func(table string) bool { return table == "public.users" || table == "public.devices" },
		Columns: func(table string) []string {
			if table == "public.users" {
				return []string{"id", "name", "email"}
			}
			return nil
		},
	}
}
