package topology_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/topology"
)

// TestShardReferencesLifecycle: a shard added after the reference tables
// existed is syncing, left out of ReferenceShards and refused as a range
// owner or default shard until SetShardReferences makes it ready.
func TestShardReferencesLifecycle(t *testing.T) {
	snap, err := topology.Build([]topology.ShardSpec{{Name: "a", Primary: "127.0.0.1:1"}, {Name: "b", Primary: "127.0.0.1:2"}}, topology.Spec{
		Distributions: []topology.DistributionSpec{{Name: "users", Scheme: topology.Hash, KeyType: topology.Int}},
		Tables: []topology.TableSpec{
			{Name: "users", Kind: topology.Distributed, Key: "id", Distribution: "users"},
			{Name: "countries", Kind: topology.Reference},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(c topology.Command) {
		t.Helper()
		next, err := topology.ApplyCommand(snap, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Type(), err)
		}
		snap = next
	}
	mustFail := func(c topology.Command, want string) {
		t.Helper()
		if _, err := topology.ApplyCommand(snap, c); err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, topology.ErrInvalid) {
			t.Fatalf("%s: got %v, want an invalid error containing %q", c.Type(), err, want)
		}
	}
	apply(topology.AddShard{Shard: topology.Shard{Name: "c", Primary: "127.0.0.1:3", References: topology.ReferencesSyncing}})
	// Without the request the shard is ready at once (old log entries).
	apply(topology.AddShard{Shard: topology.Shard{Name: "d", Primary: "127.0.0.1:4"}})
	if c, _ := snap.Shard("c"); c.References != topology.ReferencesSyncing {
		t.Fatalf("c references %q, want syncing", c.References)
	}
	if got := strings.Join(snap.ReferenceShards(), ","); got != "a,b,d" {
		t.Fatalf("ReferenceShards %s, want a,b,d", got)
	}
	d, _ := snap.Distribution("users")
	mustFail(topology.AssignRange{Distribution: "users", Lo: d.Ranges[0].Lo, Hi: d.Ranges[0].Hi, Shard: "c"}, "being given the reference tables")
	mustFail(topology.SetDefaultShard{Shard: "c"}, "being given the reference tables")
	apply(topology.DistributeTable{Table: "orders", KeyColumn: "id", Distribution: "orders"})
	o, _ := snap.Distribution("orders")
	for _, r := range o.Ranges {
		if r.Shard == "c" {
			t.Fatal("a new distribution laid out ranges on a syncing shard")
		}
	}
	mustFail(topology.SetShardReferences{Shard: "c", From: topology.ReferencesSyncing, To: topology.ReferencesReady}, "cannot go from syncing to ready")
	mustFail(topology.SetShardReferences{Shard: "c", From: topology.ReferencesCutover, To: topology.ReferencesReady}, "not cutover")
	apply(topology.SetShardReferences{Shard: "c", From: topology.ReferencesSyncing, To: topology.ReferencesCutover})
	apply(topology.SetShardReferences{Shard: "c", From: topology.ReferencesCutover, To: topology.ReferencesSyncing})
	apply(topology.SetShardReferences{Shard: "c", From: topology.ReferencesSyncing, To: topology.ReferencesCutover})
	apply(topology.SetShardReferences{Shard: "c", From: topology.ReferencesCutover, To: topology.ReferencesReady})
	if got := strings.Join(snap.ReferenceShards(), ","); got != "a,b,c,d" {
		t.Fatalf("ReferenceShards %s, want a,b,c,d", got)
	}
	apply(topology.SetDefaultShard{Shard: "c"})
	// The state survives encoding (a Raft snapshot).
	b, err := snap.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := topology.DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(back.ReferenceShards(), ","); got != "a,b,c,d" {
		t.Fatalf("decoded ReferenceShards %s", got)
	}

	// No reference tables: nothing to sync, the shard is ready at once.
	empty, err := topology.Build([]topology.ShardSpec{{Name: "a", Primary: "127.0.0.1:1"}}, topology.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	next, err := topology.ApplyCommand(empty, topology.AddShard{Shard: topology.Shard{Name: "b", Primary: "127.0.0.1:2", References: topology.ReferencesSyncing}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := next.Shard("b"); b.References != topology.ReferencesReady {
		t.Fatalf("b references %q without reference tables, want ready", b.References)
	}
}
