package admin

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// Against real servers: range statistics count every row on its owner
// (keys pinned by the directory left out, rows on the wrong shard reported
// as stray), and health probes see primaries and replicas as they are.
func TestRangeStatsAndHealthOnPostgres(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 2, Replicas: 1})
	conn := func(ctx context.Context, addr, db string) (*pgx.Conn, error) {
		return pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, db))
	}
	var shards []topology.ShardSpec
	for _, s := range c.Shards {
		shards = append(shards, topology.ShardSpec{Name: s.Name, Primary: s.Primary.Addr(), Replicas: []string{s.Replicas[0].Addr()}})
	}
	snap, err := topology.Build(shards, topology.Spec{
		Distributions: []topology.DistributionSpec{{Name: "users", VNodes: 8, Overrides: map[string]string{"5000": "shard1"}}},
		Tables: []topology.TableSpec{
			{Name: "users", Key: "id", Distribution: "users"},
			{Name: "posts", Key: "author_id", Distribution: "users"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := router.For(snap)
	d, _ := snap.Distribution("users")
	wantRows := make([]int64, len(d.Ranges))
	dbs := map[string]*pgx.Conn{}
	for _, s := range c.Shards {
		db, err := conn(ctx, s.Primary.Addr(), "postgres")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close(ctx)
		dbs[s.Name] = db
		if _, err := db.Exec(ctx, "CREATE TABLE users (id int8 PRIMARY KEY, name text); CREATE TABLE posts (author_id int8, body text)"); err != nil {
			t.Fatal(err)
		}
	}
	for id := int64(1); id <= 300; id++ {
		owner, err := rt.ShardForKey("users", router.IntKey(id))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dbs[owner].Exec(ctx, "INSERT INTO users VALUES ($1, 'u')", id); err != nil {
			t.Fatal(err)
		}
		if _, err := dbs[owner].Exec(ctx, "INSERT INTO posts VALUES ($1, 'p1'), ($1, 'p2')", id); err != nil {
			t.Fatal(err)
		}
		wantRows[topology.FindRange(d.Ranges, router.HashInt8(id))] += 3
	}
	// Pinned key on its pinned shard: not counted. Three strays.
	if _, err := dbs["shard1"].Exec(ctx, "INSERT INTO users VALUES (5000, 'pinned')"); err != nil {
		t.Fatal(err)
	}
	for id := int64(1001); id <= 1003; id++ {
		owner, _ := rt.ShardForHash("users", router.HashInt8(id))
		wrong := "shard0"
		if owner == "shard0" {
			wrong = "shard1"
		}
		if _, err := dbs[wrong].Exec(ctx, "INSERT INTO users VALUES ($1, 'stray')", id); err != nil {
			t.Fatal(err)
		}
	}

	api, err := New(Options{Store: topology.NewStaticStore(snap), ShardConn: conn})
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, api)
	cl := &Client{BaseURL: srv}
	var rg Ranges
	if err := cl.Get(ctx, "/v1/ranges", url.Values{"stats": {"1"}, "table": {"posts"}}, &rg); err != nil {
		t.Fatal(err)
	}
	if len(rg.Distributions) != 1 {
		t.Fatalf("ranges: %+v", rg)
	}
	dr := rg.Distributions[0]
	if len(dr.StatsError) > 0 {
		t.Fatalf("stats errors: %v", dr.StatsError)
	}
	var total int64
	for i, r := range dr.Ranges {
		if r.Rows == nil {
			t.Fatalf("range %d has no row count", i)
		}
		if *r.Rows != wantRows[i] {
			t.Errorf("range %d [%d, %d] on %s: %d rows, want %d", i, r.Lo, r.Hi, r.Shard, *r.Rows, wantRows[i])
		}
		if *r.Rows > 0 && (*r.Bytes <= 0 || *r.RelationBytes <= 0) {
			t.Errorf("range %d: bytes %d, relation bytes %d", i, *r.Bytes, *r.RelationBytes)
		}
		total += *r.Rows
	}
	if total != 900 {
		t.Errorf("rows over all ranges: %d, want 900", total)
	}
	var stray int64
	for _, s := range dr.Stray {
		stray += s.Rows
		if s.Table != "public.users" || s.Shard == s.Owner {
			t.Errorf("stray entry %+v", s)
		}
	}
	if stray != 3 {
		t.Errorf("stray rows: %d (%+v), want 3", stray, dr.Stray)
	}

	var st Status
	if err := cl.Get(ctx, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	for _, sh := range st.Shards {
		if len(sh.Health) != 2 {
			t.Fatalf("shard %s health: %+v", sh.Name, sh.Health)
		}
		for _, h := range sh.Health {
			if !h.Up || h.InRecovery == nil || *h.InRecovery != (h.Role == "replica") || h.MaxPreparedTransactions == nil || *h.MaxPreparedTransactions == 0 {
				t.Errorf("shard %s %s %s: %+v", sh.Name, h.Role, h.Addr, h)
			}
		}
	}
	if len(st.Warnings) != 0 {
		t.Errorf("warnings for a healthy cluster: %v", st.Warnings)
	}
	// A stopped replica shows as down with a warning.
	if err := c.Shards[1].Replicas[0].Stop(); err != nil {
		t.Fatal(err)
	}
	st = Status{}
	if err := cl.Get(ctx, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if h := st.Shards[1].Health[1]; h.Up || h.InRecovery != nil || len(st.Warnings) != 1 {
		t.Errorf("stopped replica: %+v, warnings %v", h, st.Warnings)
	}
	// A primary without prepared transactions is reported: two-phase
	// commit cannot work there.
	direct, err := pgx.Connect(ctx, c.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "ALTER SYSTEM SET max_prepared_transactions = 0"); err != nil {
		t.Fatal(err)
	}
	direct.Close(ctx)
	if err := c.Shards[0].Primary.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	st = Status{}
	if err := cl.Get(ctx, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "max_prepared_transactions = 0") {
		t.Errorf("no warning for a primary with max_prepared_transactions = 0: %v", st.Warnings)
	}
}
