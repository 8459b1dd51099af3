package main

import (
	"testing"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// TestExampleConfigLoads keeps shardproxy.example.yaml (documented in
// docs/config.md) valid as the config evolves.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../../shardproxy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Shards) != 1 || len(cfg.Shards[0].Replicas) != 1 {
		t.Fatalf("example should have one shard with one replica, got %+v", cfg.Shards)
	}
	if cfg.Pool.Mode != "transaction" || cfg.Auth.Method != "scram-sha-256" || len(cfg.Users) != 1 {
		t.Fatalf("example should show a SCRAM user in transaction mode: %+v %+v", cfg.Pool, cfg.Auth)
	}
}
