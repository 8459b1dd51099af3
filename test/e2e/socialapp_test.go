package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
	"github.com/shardproxy/shardproxy/test/socialapp/apptest"
)

// startSocialProxy starts 4 shards with one streaming replica each and a
// proxy over them with the social app's sharding.yaml topology.
func startSocialProxy(t *testing.T) (*pgcluster.Cluster, *runningProxy) {
	t.Helper()
	spec, err := socialapp.ShardingSpec()
	if err != nil {
		t.Fatal(err)
	}
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 4, Replicas: 1})
	p := startProxy(t, c, func(cc *config.Config) {
		cc.Sharding = spec
		cc.Pool.Size = 10
	})
	return c, p
}

// TestSocialAppThroughProxy runs the social app's HTTP suite on one plain
// PostgreSQL server and through shardproxy over 4 shards × 1 replica with
// the app's intended topology: the app is the same, only the DSN differs,
// and the two normalised transcripts must be identical.
func TestSocialAppThroughProxy(t *testing.T) {
	plain := pgcluster.StartT(t, pgcluster.Options{})
	sharded, p := startSocialProxy(t)

	var want, got *apptest.Transcript
	if !t.Run("Plain", func(t *testing.T) { want = apptest.RunSuite(t, plain.Shards[0].Primary.DSN("postgres")) }) {
		t.FailNow()
	}
	t.Run("Proxy", func(t *testing.T) { got = apptest.RunSuite(t, p.dsn("postgres")) })
	if d := want.Diff(got); d != "" {
		t.Errorf("transcript through the proxy differs from plain PostgreSQL: %s", d)
	}
	// The rows really are spread over the shards (the suite makes a dozen
	// users, so not necessarily all four), and together the shards hold
	// exactly what the proxy reports.
	ctx := testCtx(t, 30*time.Second)
	for _, table := range []string{"users", "posts"} {
		var total, viaProxy int64
		holding := 0
		for _, sh := range sharded.Shards {
			c := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
			var n int64
			if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			c.Close(ctx)
			if n > 0 {
				holding++
			}
			total += n
		}
		c := connectPgx(t, ctx, p.dsn("postgres"))
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&viaProxy); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
		if total != viaProxy || holding < 2 {
			t.Errorf("%s: %d shards hold %d rows, the proxy counts %d", table, holding, total, viaProxy)
		}
	}
}

// TestSocialAppLoadThroughProxy seeds a small data set through the proxy
// and runs the load generator against it: no errors, and the like counters
// stay exact across shards.
func TestSocialAppLoadThroughProxy(t *testing.T) {
	_, p := startSocialProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, err := socialapp.Open(ctx, p.dsn("postgres")+"&pool_max_conns=8")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := store.Seed(ctx, socialapp.SeedOptions{Users: 200, Posts: 2000, BatchRows: 200, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if res.AnalyzeErr != nil {
		t.Errorf("ANALYZE after seeding: %v", res.AnalyzeErr)
	}
	rep, err := socialapp.Load(ctx, socialapp.StoreClient{S: store}, socialapp.LoadOptions{Users: 4, Duration: 2 * time.Second, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load through the proxy:\n%s", rep)
	if rep.Errors != 0 || rep.Requests < 20 {
		t.Errorf("load: %d requests, %d errors", rep.Requests, rep.Errors)
	}
	for _, op := range []socialapp.Op{socialapp.OpTimeline, socialapp.OpProfile, socialapp.OpLike, socialapp.OpPost} {
		if rep.ByOp[op].Count == 0 {
			t.Errorf("no %s requests in %v", op, rep.ByOp)
		}
	}
	// The counts are read on the primaries: the shards have replicas, and
	// read-your-writes is per session, so this session's reads on a replica
	// may not yet see the load's last commits (made on other connections)
	// and the two counts could come from different moments.
	check := connectPgx(t, ctx, p.dsn("postgres"))
	defer check.Close(ctx)
	mustExec(t, ctx, check, "SET shardproxy.target_role = 'primary'", pgx.QueryExecModeSimpleProtocol)
	var users, likes, sumLikes int64
	if err := check.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	if err := check.QueryRow(ctx, `SELECT count(*) FROM likes`).Scan(&likes); err != nil {
		t.Fatal(err)
	}
	if err := check.QueryRow(ctx, `SELECT sum(like_count) FROM posts`).Scan(&sumLikes); err != nil {
		t.Fatal(err)
	}
	if users < 200 || likes != sumLikes {
		t.Errorf("after load: %d users, %d likes rows but like_count sums to %d", users, likes, sumLikes)
	}
}
