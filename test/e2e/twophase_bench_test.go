package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// BenchmarkTransactionCommit compares a write transaction on one shard
// with one that writes on two shards (two-phase commit) through the
// proxy, and the one-shard transaction straight at PostgreSQL. Each
// transaction updates two accounts and commits; one client, so ns/op is
// the latency of a transaction.
//
//	go test -run '^$' -bench TransactionCommit -benchtime 3s ./test/e2e/
func BenchmarkTransactionCommit(b *testing.B) {
	c := pgcluster.StartT(b, pgcluster.Options{Shards: 2})
	spec := topology.Spec{
		Distributions: []topology.DistributionSpec{{Name: "accounts", Scheme: topology.Hash, KeyType: topology.Int}},
		Tables:        []topology.TableSpec{{Name: "accounts", Key: "id", Distribution: "accounts"}},
	}
	var cfg config.Config
	p := startProxy(b, c, func(cc *config.Config) { cc.Sharding = spec; cfg = *cc })
	snap, err := cfg.Topology()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	app := connectPgx(b, ctx, p.dsn("postgres"))
	var values []string
	for id := 1; id <= 100; id++ {
		values = append(values, fmt.Sprintf("(%d, 1000000)", id))
	}
	for _, sql := range []string{
		"CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL)",
		"INSERT INTO accounts VALUES " + strings.Join(values, ", "),
	} {
		if _, err := app.Exec(ctx, sql); err != nil {
			b.Fatal(err)
		}
	}
	// Keys: two on the same shard, and one on the other.
	shardOf := func(k int64) string {
		s, err := router.For(snap).ShardForKey("accounts", router.IntKey(k))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	same, other := int64(0), int64(0)
	for k := int64(2); k <= 100 && (same == 0 || other == 0); k++ {
		if shardOf(k) == shardOf(1) {
			if same == 0 {
				same = k
			}
		} else if other == 0 {
			other = k
		}
	}
	direct := connectPgx(b, ctx, c.Shards[0].Primary.DSN("postgres"))
	if _, err := direct.Exec(ctx, "CREATE TABLE bench_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL); INSERT INTO bench_accounts SELECT g, 1000000 FROM generate_series(1, 100) g"); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, conn *pgx.Conn, table string, from, to int64) {
		for b.Loop() {
			tx, err := conn.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "UPDATE "+table+" SET balance = balance - 1 WHERE id = $1", from); err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "UPDATE "+table+" SET balance = balance + 1 WHERE id = $1", to); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct-one-server", func(b *testing.B) { run(b, direct, "bench_accounts", 1, 2) })
	b.Run("proxy-one-shard", func(b *testing.B) { run(b, app, "accounts", 1, same) })
	b.Run("proxy-two-shards-2pc", func(b *testing.B) { run(b, app, "accounts", 1, other) })
}
