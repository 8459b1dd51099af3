package compat

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// startLoaded starts 4 shards behind an in-process proxy and creates a
// reference database refDB on the first shard's server; both get the
// corpus schema and data (generate). It returns the cluster and
// connections to the reference and through the proxy.
func startLoaded(tb testing.TB, ctx context.Context, refDB string) (*pgcluster.Cluster, *pgconn.PgConn, *pgconn.PgConn) {
	tb.Helper()
	c := pgcluster.StartT(tb, pgcluster.Options{Shards: 4})
	addr := startProxy(tb, c)
	admin := connect(tb, ctx, c.Shards[0].Primary.DSN("postgres"))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+refDB).ReadAll(); err != nil {
		tb.Fatal(err)
	}
	ref := connect(tb, ctx, c.Shards[0].Primary.DSN(refDB))
	sharded := connect(tb, ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr))
	data := generate()
	if err := load(ctx, ref, data); err != nil {
		tb.Fatalf("loading the reference: %v", err)
	}
	if err := load(ctx, sharded, data); err != nil {
		tb.Fatalf("loading through the proxy: %v", err)
	}
	return c, ref, sharded
}
