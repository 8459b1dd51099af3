package e2e

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// TestReplicaScatterMixedShards: a scatter read over a shard whose reads go
// to its replica and a shard that has no replica (a shard just added, say)
// reads the first on its replica and the second on its primary in one
// statement. Taking the second shard's primary must not give back the
// replica connection the scatter already sent its part to (it did: "no
// connection to shard … for a scatter read", and the released connection's
// late answer reached the next session that took it — a merge then
// crashed the proxy on a row of another statement).
func TestReplicaScatterMixedShards(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl := pgcluster.StartT(t, pgcluster.Options{Shards: 2, Replicas: 1})
	for _, sh := range cl.Shards {
		execOn(t, ctx, sh.Primary, `CREATE TABLE users (id bigint PRIMARY KEY, name text)`)
	}
	p := startProxy(t, cl, func(c *config.Config) {
		c.Sharding = shardedSpec
		replicaConfig(replicaUnlimitedLag)(c)
		c.Shards[1].Replicas = nil // the proxy knows no replica of the second shard
	})
	seedUsersReplicated(t, ctx, cl, p, 100)
	replicaPort := cl.Shards[0].Replicas[0].Port
	c := connectPgx(t, ctx, p.dsn("postgres"))
	other := connectPgx(t, ctx, p.dsn("postgres"))
	waitFor(t, 15*time.Second, "point reads reaching the first shard's replica", func() bool {
		for id := 1; id <= 10; id++ {
			if serverPort(t, ctx, c, "SELECT inet_server_port() FROM users WHERE id = $1", id) == replicaPort {
				return true
			}
		}
		return false
	})
	for round := 0; round < 30; round++ {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			rows, err := c.Query(ctx, "SELECT id, name FROM users ORDER BY id", mode) // a merge over both shards
			if err != nil {
				t.Fatalf("round %d, %v: %v", round, mode, err)
			}
			ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (int64, error) {
				var id int64
				var name string
				err := r.Scan(&id, &name)
				return id, err
			})
			if err != nil || len(ids) != 100 || ids[0] != 1 || ids[99] != 100 {
				t.Fatalf("round %d, %v: %d rows, %v", round, mode, len(ids), err)
			}
			// Another session gets its own answers on the connections the
			// first one gave back.
			var n int64
			if err := other.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 100 {
				t.Fatalf("round %d: another session's count: %d, %v", round, n, err)
			}
		}
	}
}
