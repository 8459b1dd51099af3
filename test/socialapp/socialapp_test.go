package socialapp_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
	"github.com/shardproxy/shardproxy/test/socialapp/apptest"
)

// TestSuite runs the whole HTTP suite on one PostgreSQL server, twice on
// the same database, and checks the two transcripts are equal: the suite
// resets the data, and its normalisation hides ids and times.
func TestSuite(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	dsn := c.Shards[0].Primary.DSN("postgres")
	first := apptest.RunSuite(t, dsn)
	if t.Failed() {
		return
	}
	if len(first.Exchanges) < 100 {
		t.Errorf("transcript has only %d exchanges", len(first.Exchanges))
	}
	second := apptest.RunSuite(t, dsn)
	if d := first.Diff(second); d != "" {
		t.Errorf("two runs differ: %s", d)
	}
	// The normalisation leaves no raw ids of created objects behind.
	if s := first.String(); !strings.Contains(s, `"author_id":"user:bob"`) || !strings.Contains(s, "{user:alice}") {
		t.Errorf("transcript not normalised:\n%s", s)
	}
}

// TestSeedAndLoad seeds a small data set and runs the load generator for a
// moment against the store and against the HTTP API.
func TestSeedAndLoad(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := socialapp.Open(ctx, c.Shards[0].Primary.DSN("postgres")+"&pool_max_conns=8")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	stages := map[string]int{}
	res, err := store.Seed(ctx, socialapp.SeedOptions{Users: 300, Posts: 3000, BatchRows: 200, Seed: 42,
		Progress: func(stage string, done, total int) {
			if done > total {
				t.Errorf("progress %s: %d of %d", stage, done, total)
			}
			stages[stage] = done
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %+v", res)
	if res.AnalyzeErr != nil {
		t.Errorf("ANALYZE after seeding: %v", res.AnalyzeErr)
	}
	for _, st := range []string{"users", "follows", "posts", "comments"} {
		if stages[st] == 0 {
			t.Errorf("no progress reported for %s: %v", st, stages)
		}
	}
	var users, posts, likes, sumLikes, follows, comments, emails int64
	if err := store.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts),
(SELECT count(*) FROM likes), (SELECT sum(like_count) FROM posts), (SELECT count(*) FROM follows),
(SELECT count(*) FROM comments), (SELECT count(*) FROM emails)`).Scan(&users, &posts, &likes, &sumLikes, &follows, &comments, &emails); err != nil {
		t.Fatal(err)
	}
	if users != 300 || emails != 300 || posts != 3000 || likes != sumLikes || likes != int64(res.Likes) || likes < 3000 ||
		follows != int64(res.Follows) || follows < 300*9 || comments != 600 {
		t.Errorf("after seeding: users %d emails %d posts %d likes %d (sum of like_count %d, reported %d) follows %d (reported %d) comments %d",
			users, emails, posts, likes, sumLikes, res.Likes, follows, res.Follows, comments)
	}
	// A second seed adds to the first without colliding.
	if _, err := store.Seed(ctx, socialapp.SeedOptions{Users: 20, Posts: 20, Seed: 43}); err != nil {
		t.Fatalf("second seed: %v", err)
	}

	rep, err := socialapp.Load(ctx, socialapp.StoreClient{S: store}, socialapp.LoadOptions{Users: 4, Duration: 700 * time.Millisecond, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store load:\n%s", rep)
	checkReport(t, rep, false)

	srv := httptest.NewServer(socialapp.NewAPI(store, nil))
	defer srv.Close()
	rep, err = socialapp.Load(ctx, &socialapp.HTTPClient{BaseURL: srv.URL}, socialapp.LoadOptions{Users: 4, Duration: time.Second, Rate: 200, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HTTP load at 200/s:\n%s", rep)
	checkReport(t, rep, true)
	if rep.Requests > 260 || rep.Requests < 100 {
		t.Errorf("rate 200/s for 1s made %d requests", rep.Requests)
	}

	// The load kept the like counters exact.
	if err := store.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM likes), (SELECT sum(like_count) FROM posts)`).Scan(&likes, &sumLikes); err != nil {
		t.Fatal(err)
	}
	if likes != sumLikes {
		t.Errorf("after load: %d likes rows but like_count sums to %d", likes, sumLikes)
	}
}

func checkReport(t *testing.T, rep socialapp.LoadReport, limited bool) {
	t.Helper()
	if rep.Requests < 20 || rep.Errors != 0 || rep.Throughput <= 0 {
		t.Errorf("load report: %d requests, %d errors, %.1f/s", rep.Requests, rep.Errors, rep.Throughput)
	}
	if rep.P50 <= 0 || rep.P50 > rep.P95 || rep.P95 > rep.P99 || rep.P99 > rep.Max {
		t.Errorf("percentiles out of order: %s %s %s %s", rep.P50, rep.P95, rep.P99, rep.Max)
	}
	for _, op := range []socialapp.Op{socialapp.OpTimeline, socialapp.OpProfile, socialapp.OpLike, socialapp.OpPost} {
		if rep.ByOp[op].Count == 0 {
			t.Errorf("no %s requests in %v", op, rep.ByOp)
		}
	}
	if !limited && rep.Missed != 0 {
		t.Errorf("missed %d without a rate", rep.Missed)
	}
}
