package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
)

// The shardproxy binary wires automatic failover: with
// replicas.failover_timeout set and the admin API on, killing the primary
// makes the proxy promote the replica, and writes through the proxy work
// again.
func TestAutomaticFailoverWired(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{Replicas: 1})
	port, adminPort := freePort(t), freePort(t)
	primary, replica := c.Shards[0].Primary, c.Shards[0].Replicas[0]
	path := writeFile(t, "shardproxy.yaml", fmt.Sprintf(`listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
auth:
  trust_loopback: true
replicas:
  check_interval: 100ms
  max_backoff: 500ms
  failover_timeout: 1s
shards:
  - name: s0
    primary: {host: %s, port: %d}
    replicas:
      - {host: %s, port: %d}
`, port, adminPort, primary.Host, primary.Port, replica.Host, replica.Port))
	p := startBinary(t, "--config", path)
	conn := connect(t, p, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE f (n int); INSERT INTO f VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.Kill(); err != nil {
		t.Fatal(err)
	}
	api := &admin.Client{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
	start := time.Now()
	var out struct{ Shards []struct{ Primary string } }
	var err error
	if !wait.For(60*time.Second, func() bool {
		out.Shards = nil
		err = api.Get(ctx, "/v1/shards", nil, &out)
		return err == nil && len(out.Shards) == 1 && out.Shards[0].Primary == replica.Addr()
	}) {
		t.Fatalf("no failover to %s within 60s (last answer %+v, %v)\n%s", replica.Addr(), out, err, p.out.String())
	}
	if !wait.For(60*time.Second-time.Since(start), func() bool {
		_, err = conn.Exec(ctx, "INSERT INTO f VALUES (2)")
		return err == nil
	}) {
		t.Fatalf("writes through the proxy did not resume: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM f").Scan(&n); err != nil || n != 2 {
		t.Errorf("after the failover: %d rows, %v; want 2", n, err)
	}
	p.waitOutput(t, "automatic failover done", 5*time.Second)
}
