package socialapp_test

import (
	"context"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
	"github.com/shardproxy/shardproxy/topology"
)

// TestShardingSpec checks sharding.yaml builds a topology over 4 shards and
// that each distributed table's key is the first column of its primary key
// (and of every unique constraint) in the real schema, so every constraint
// can be enforced on one shard.
func TestShardingSpec(t *testing.T) {
	spec, err := socialapp.ShardingSpec()
	if err != nil {
		t.Fatal(err)
	}
	var shards []topology.ShardSpec
	for _, n := range []string{"s0", "s1", "s2", "s3"} {
		shards = append(shards, topology.ShardSpec{Name: n, Primary: n + ":5432"})
	}
	if _, err := topology.Build(shards, spec); err != nil {
		t.Fatalf("topology.Build: %v", err)
	}
	keys := map[string]string{}
	reference := map[string]bool{}
	for _, tb := range spec.Tables {
		if tb.Kind == topology.Reference {
			reference[tb.Name] = true
		} else {
			keys[tb.Name] = tb.Key
		}
	}
	for _, name := range socialapp.AppTables {
		if keys[name] == "" {
			t.Errorf("table %s is not in sharding.yaml", name)
		}
	}
	if !reference["countries"] {
		t.Error("countries is not a reference table in sharding.yaml")
	}

	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := socialapp.Open(ctx, c.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Unique indexes (PKs included): the key must be among their columns.
	rows, err := store.Pool().Query(ctx, `SELECT t.relname, i.relname,
  array(SELECT a.attname::text FROM unnest(x.indkey) k JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k)
FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public' AND x.indisunique`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var table, index string
		var cols []string
		if err := rows.Scan(&table, &index, &cols); err != nil {
			t.Fatal(err)
		}
		seen[table] = true
		if reference[table] {
			continue
		}
		key, ok := keys[table]
		if !ok {
			t.Errorf("table %s has a unique index but is not in sharding.yaml", table)
			continue
		}
		if len(cols) == 0 || cols[0] != key {
			t.Errorf("unique index %s on %s%v does not start with the shard key %s", index, table, cols, key)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for name := range keys {
		if !seen[name] {
			t.Errorf("sharding.yaml lists %s, which the schema does not have", name)
		}
	}
	// Foreign keys between distributed tables must join on the key.
	rows, err = store.Pool().Query(ctx, `SELECT c.conname, src.relname, dst.relname,
  (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]),
  (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attnum = c.confkey[1])
FROM pg_constraint c JOIN pg_class src ON src.oid = c.conrelid JOIN pg_class dst ON dst.oid = c.confrelid
WHERE c.contype = 'f'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, src, dst, srcCol, dstCol string
		if err := rows.Scan(&name, &src, &dst, &srcCol, &dstCol); err != nil {
			t.Fatal(err)
		}
		if reference[dst] {
			continue
		}
		if srcCol != keys[src] || dstCol != keys[dst] {
			t.Errorf("foreign key %s %s(%s) -> %s(%s) is not on both shard keys", name, src, srcCol, dst, dstCol)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
