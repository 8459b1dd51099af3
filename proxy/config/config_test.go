package config

import (
	"errors"
	"strings"
	"testing"
)

const shardedYAML = `
listen: 127.0.0.1:6432
auth: {method: trust}
shards:
  - {name: s0, primary: {host: 127.0.0.1, port: 5432}}
  - {name: s1, primary: {host: 127.0.0.1, port: 5433}}
sharding:
  distributions:
    - {name: users, scheme: hash, key_type: int}
  tables:
    - {name: users, key: id, distribution: users}
    - {name: countries, kind: reference}
`

func TestShardingSectionBuildsTopology(t *testing.T) {
	cfg, err := Parse([]byte(shardedYAML))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cfg.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(snap.ShardNames(), ","); got != "s0,s1" {
		t.Errorf("shards %q", got)
	}
	if snap.DefaultShard() != "s0" {
		t.Errorf("default shard %q, want the first shard", snap.DefaultShard())
	}
	tb, ok := snap.Table("public.users")
	if !ok || tb.KeyColumn != "id" {
		t.Errorf("users table: %+v, %v", tb, ok)
	}
	if p := cfg.ShardSpecs()[1].Primary; p != "127.0.0.1:5433" {
		t.Errorf("shard spec primary %q", p)
	}
}

func TestShardingErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"unknown shard":        strings.Replace(shardedYAML, "{name: users, scheme: hash, key_type: int}", "{name: users, scheme: hash, key_type: int, shards: [s9]}", 1),
		"table without key":    strings.Replace(shardedYAML, "{name: users, key: id, distribution: users}", "{name: users, distribution: users}", 1),
		"unknown distribution": strings.Replace(shardedYAML, "distribution: users}", "distribution: nope}", 1),
	}
	for name, doc := range cases {
		_, err := Parse([]byte(doc))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != "sharding" {
			t.Errorf("%s: error %v, want a FieldError for key sharding", name, err)
		}
	}
}
