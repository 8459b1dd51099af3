package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// A planned switchover with shardctl on real servers: the live primary is
// fenced (read-only), the named replica promoted, the other repointed; a
// second failover, -o json, promotes the last replica.
func TestFailoverCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := pgcluster.StartT(t, pgcluster.Options{Replicas: 2})
	sh := cl.Shards[0]
	snap, err := topology.Build([]topology.ShardSpec{{Name: "s0", Primary: sh.Primary.Addr(),
		Replicas: []string{sh.Replicas[0].Addr(), sh.Replicas[1].Addr()}}}, topology.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(admin.Options{Store: topology.NewStaticStore(snap),
		ShardConn: func(ctx context.Context, addr, db string) (*pgx.Conn, error) {
			return pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, db))
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	primary, err := pgx.Connect(ctx, sh.Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close(ctx)
	if _, err := primary.Exec(ctx, "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)"); err != nil {
		t.Fatal(err)
	}

	if _, err := run(t, srv.URL, "failover", "s0", "--to", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "is not a replica of shard s0") {
		t.Errorf("--to a stranger: %v", err)
	}
	to := sh.Replicas[1]
	out, err := run(t, srv.URL, "failover", "s0", "--to", to.Addr())
	if err != nil {
		t.Fatalf("failover: %v\n%s", err, out)
	}
	t.Log(out)
	for _, want := range []string{"ROLE", "old primary", "fenced", "new primary", to.Addr(), "promoted", "replica", sh.Replicas[0].Addr(), "streaming"} {
		if !strings.Contains(out, want) {
			t.Errorf("failover output lacks %q:\n%s", want, out)
		}
	}
	// The old primary refuses writes; the new one has every row.
	if _, err := primary.Exec(ctx, "INSERT INTO t VALUES (0)"); err == nil {
		t.Error("the fenced old primary accepted a write")
	}
	old, err := pgx.Connect(ctx, sh.Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	if _, err := old.Exec(ctx, "INSERT INTO t VALUES (0)"); err == nil || !strings.Contains(err.Error(), "25006") {
		t.Errorf("write on the fenced old primary: %v, want 25006", err)
	}
	for _, in := range []*pgcluster.Instance{to, sh.Replicas[0]} {
		c, err := pgx.Connect(ctx, in.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 100 {
			t.Errorf("%s: %d rows, %v; want 100", in.Name, n, err)
		}
		c.Close(ctx)
	}

	// The fenced old primary cannot become a replica as it is. This
	// temporary cluster runs with full_page_writes and wal_log_hints off,
	// so pg_rewind cannot be used: the refusal says to re-clone it.
	out, err = run(t, srv.URL, "shards", "add-replica", "s0", sh.Primary.Addr(), "--data-dir", sh.Primary.DataDir)
	reclone := fmt.Sprintf("pg_basebackup -h %s -p %d -U postgres -D %s -X stream -R", to.Host, to.Port, sh.Primary.DataDir)
	if err == nil || !strings.Contains(err.Error(), "not a standby") || !strings.Contains(err.Error(), "pg_rewind cannot be used") || !strings.Contains(err.Error(), reclone) {
		t.Errorf("add-replica of the fenced old primary: %v\n%s\nwant a refusal saying %q", err, out, reclone)
	}
	if _, err := run(t, srv.URL, "shards", "rejoin", "s0", sh.Replicas[0].Addr()); err == nil || !strings.Contains(err.Error(), "already a replica") {
		t.Errorf("rejoin of a replica: %v", err)
	}

	out, err = run(t, srv.URL, "-o", "json", "failover", "s0")
	if err != nil {
		t.Fatalf("second failover: %v\n%s", err, out)
	}
	var res admin.FailoverResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if res.OldPrimary != to.Addr() || res.NewPrimary != sh.Replicas[0].Addr() || res.Fence != "fenced" || len(res.Replicas) != 0 || res.Version != 3 {
		t.Errorf("second failover: %+v", res)
	}
	if _, err := run(t, srv.URL, "failover", "s0"); err == nil || !strings.Contains(err.Error(), "no replica to promote") {
		t.Errorf("failover without replicas: %v", err)
	}
}
