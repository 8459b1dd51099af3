//go:build long

package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
	"github.com/shardproxy/shardproxy/topology"
)

// TestSoakSocialAppRebalance (make test-long): the social app's load
// generator runs through the proxy over 4 shards with a streaming replica
// each for SHARDPROXY_SOAK (default 3m), and meanwhile a fifth shard is
// added, given the reference tables and made to take its share of the data
// by a rebalance. No request may fail; afterwards the app's invariants hold
// on the primaries (likes rows = the posts' like counters), every table's
// rows are held once (the shards' counts add up to what the proxy counts),
// the new shard holds data, and the reference table is the same everywhere.
func TestSoakSocialAppRebalance(t *testing.T) {
	soak := 3 * time.Minute
	if v := os.Getenv("SHARDPROXY_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SHARDPROXY_SOAK: %v", err)
		}
		soak = d
	}
	ctx := testCtx(t, soak+5*time.Minute)
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 5, Replicas: 1})
	spec, err := socialapp.ShardingSpec()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.TrustLoopback = true
	cfg.Pool.Size = 10
	cfg.Shards = shardConfigs(c.Shards[:4])
	cfg.Sharding = spec
	store, p, log := startStoreProxy(t, cfg)
	ctrl, _ := startController(t, store, 2*time.Second, log)

	app, err := socialapp.Open(ctx, p.dsn("postgres")+"&pool_max_conns=12")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Seed(ctx, socialapp.SeedOptions{Users: 2000, Posts: 20000, BatchRows: 500, Seed: 11}); err != nil {
		t.Fatal(err)
	}

	st, err := app.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The load picks user ids at random between the smallest and the
	// largest; ids from the cluster allocator come in blocks and leave
	// gaps, so that share of lookups is an honest 404.
	gaps := 1 - float64(st.Users)/float64(st.MaxUserID-st.MinUserID+1)
	t.Logf("%d users over ids %d..%d: %.1f%% of the id range unused", st.Users, st.MinUserID, st.MaxUserID, 100*gaps)

	type loadResult struct {
		rep socialapp.LoadReport
		err error
	}
	loadDone := make(chan loadResult, 1)
	go func() {
		rep, err := socialapp.Load(ctx, socialapp.StoreClient{S: app}, socialapp.LoadOptions{Users: 8, Duration: soak, Seed: 5})
		loadDone <- loadResult{rep, err}
	}()

	// A third of the way in: the fifth shard joins and the data is
	// rebalanced onto it.
	select {
	case <-time.After(soak / 3):
	case r := <-loadDone:
		t.Fatalf("the load ended early: %v", r.err)
	}
	added := c.Shards[4]
	if _, err := store.Apply(ctx, topology.AddShard{Shard: topology.Shard{Name: added.Name, Primary: added.Primary.Addr(),
		References: topology.ReferencesSyncing}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the new shard's reference tables", func() bool {
		sh, ok := store.Current().Shard(added.Name)
		return ok && sh.ReferencesReady()
	})
	plan, err := ctrl.PlanNow(ctx, rebalance.PlanRequest{By: "size"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.StartPlan(ctx, plan, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the rebalance", func() bool { return len(store.Current().Moves()) == 0 })
	for _, pr := range ctrl.Status() {
		t.Logf("move %s %s→%s: %s, rows %d copied, hold %.1f ms, last error %q", pr.Move.ID, pr.Move.From, pr.Move.To, pr.Phase, pr.RowsCopied, pr.HoldMS, pr.LastError)
		if pr.Phase != "done" {
			t.Errorf("move %s ended %s", pr.Move.ID, pr.Phase)
		}
	}

	r := <-loadDone
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("load through the proxy during the soak:\n%s", r.rep)
	if r.rep.Errors != 0 || r.rep.Requests < 100 {
		t.Errorf("load: %d requests, %d errors, first: %v", r.rep.Requests, r.rep.Errors, r.rep.FirstErrors)
	}
	// Not-found answers beyond the id gaps would be rows the proxy failed
	// to find (e.g. on a replica of a move's target that had not replayed
	// the moved rows yet).
	if nf := float64(r.rep.NotFound) / float64(r.rep.Requests); nf > gaps+0.02 {
		t.Errorf("%.1f%% of the requests found nothing, more than the %.1f%% of unused user ids explain", 100*nf, 100*gaps)
	}

	check := connectPgx(t, ctx, p.dsn("postgres"))
	mustExec(t, ctx, check, "SET shardproxy.target_role = 'primary'", pgx.QueryExecModeSimpleProtocol)
	var likes, sumLikes int64
	if err := check.QueryRow(ctx, `SELECT count(*) FROM likes`).Scan(&likes); err != nil {
		t.Fatal(err)
	}
	if err := check.QueryRow(ctx, `SELECT sum(like_count) FROM posts`).Scan(&sumLikes); err != nil {
		t.Fatal(err)
	}
	if likes != sumLikes {
		t.Errorf("%d likes rows but the posts' like counters sum to %d", likes, sumLikes)
	}
	for _, table := range []string{"users", "follows", "posts", "comments", "likes", "emails"} {
		var viaProxy, onShards, onNew int64
		if err := check.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&viaProxy); err != nil {
			t.Fatal(err)
		}
		for i, sh := range c.Shards {
			conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
			var n int64
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatalf("%s on %s: %v", table, sh.Name, err)
			}
			onShards += n
			if i == 4 {
				onNew = n
			}
		}
		t.Logf("%s: %d rows through the proxy, %d on the shards, %d on the new shard", table, viaProxy, onShards, onNew)
		if viaProxy != onShards {
			t.Errorf("%s: the shards hold %d rows, the proxy counts %d (rows held twice or lost)", table, onShards, viaProxy)
		}
		if table == "users" && onNew == 0 {
			t.Errorf("the new shard holds no users after the rebalance")
		}
	}
	var sums []string
	for _, sh := range c.Shards {
		conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		var s string
		if err := conn.QueryRow(ctx, `SELECT count(*) || '/' || coalesce(sum(hashtextextended(x::text, 0)), 0) FROM countries x`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, s)
	}
	for _, s := range sums[1:] {
		if s != sums[0] {
			t.Errorf("the reference table countries differs between shards: %s", strings.Join(sums, " | "))
			break
		}
	}
}
