package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
)

// Failover with real streaming replicas: a primary is killed under write
// load through the proxy, a replica is promoted (through the admin API, or
// by the proxy's automatic failover), writes resume through the proxy, and
// the acknowledged writes are counted on the new primary.

// failoverAPI serves the admin API over the proxy's own topology store, as
// shardproxy does, and returns it with a client for it.
func failoverAPI(t *testing.T, p *runningProxy) (*admin.Server, *admin.Client) {
	t.Helper()
	api, err := admin.New(admin.Options{
		Store: p.srv.Topology(),
		ShardConn: func(ctx context.Context, addr, database string) (*pgx.Conn, error) {
			return pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", addr, database))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return api, &admin.Client{BaseURL: hs.URL}
}

// writeLoad inserts rows through the proxy from several clients and
// remembers every id whose INSERT was acknowledged.
type writeLoad struct {
	mu    sync.Mutex
	acked map[int64]bool
	// afterSwitch are the ids acknowledged once switched was set (the new
	// primary was in the topology).
	afterSwitch map[int64]bool
	switched    atomic.Bool
	failed      atomic.Int64
	stop        chan struct{}
	wg          sync.WaitGroup
}

func startWriteLoad(t *testing.T, dsn string, clients int) *writeLoad {
	t.Helper()
	l := &writeLoad{acked: make(map[int64]bool), afterSwitch: make(map[int64]bool), stop: make(chan struct{})}
	for w := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			ctx := context.Background()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					conn.Close(ctx)
				}
			}()
			for i := int64(1); ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if conn == nil || conn.IsClosed() {
					c, err := pgx.Connect(ctx, dsn)
					if err != nil {
						l.failed.Add(1)
						if wait.Pause(l.stop, 20*time.Millisecond) { // the primary is down: do not spin
							return
						}
						continue
					}
					conn = c
				}
				id := int64(w)*1_000_000 + i
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := conn.Exec(qctx, "INSERT INTO acked (id) VALUES ($1)", id)
				cancel()
				if err != nil {
					l.failed.Add(1)
					if wait.Pause(l.stop, 20*time.Millisecond) { // the primary is down: do not spin
						return
					}
					continue
				}
				after := l.switched.Load()
				l.mu.Lock()
				l.acked[id] = true
				if after {
					l.afterSwitch[id] = true
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *writeLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *writeLoad) finish() map[int64]bool {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

// failoverCluster starts one shard with two replicas (settings added), the
// table, and a proxy with fast health checks.
func failoverCluster(t *testing.T, ctx context.Context, settings map[string]string, mutate func(*config.Replicas)) (*pgcluster.Cluster, *runningProxy) {
	t.Helper()
	return failoverClusterWith(t, ctx, pgcluster.Options{Replicas: 2, Settings: settings}, mutate)
}

// failoverClusterWith is failoverCluster with every cluster option.
func failoverClusterWith(t *testing.T, ctx context.Context, opts pgcluster.Options, mutate func(*config.Replicas)) (*pgcluster.Cluster, *runningProxy) {
	t.Helper()
	cl := pgcluster.StartT(t, opts)
	execOn(t, ctx, cl.Shards[0].Primary, `CREATE TABLE acked (id bigint PRIMARY KEY)`)
	if err := cl.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	return cl, startProxy(t, cl, replicaConfig(mutate))
}

// lostWrites returns the acknowledged ids missing on the server at addr.
func lostWrites(t *testing.T, ctx context.Context, addr string, acked map[int64]bool) (lost []int64, present int) {
	t.Helper()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT id FROM acked")
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	return lost, len(have)
}

// writesResume waits until n more writes than now were acknowledged.
func writesResume(t *testing.T, l *writeLoad, n int) {
	t.Helper()
	target := l.count() + n
	waitFor(t, 30*time.Second, fmt.Sprintf("%d acknowledged writes through the proxy after the failover", n), func() bool { return l.count() >= target })
}

// primaryPortThroughProxy is the port of the server that takes the
// proxy's writes.
func primaryPortThroughProxy(t *testing.T, ctx context.Context, p *runningProxy) int {
	t.Helper()
	c := connectPgx(t, ctx, p.dsn("postgres"))
	if _, err := c.Exec(ctx, "SET shardproxy.target_role = primary"); err != nil {
		t.Fatal(err)
	}
	var port int
	if err := c.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
		t.Fatal(err)
	}
	return port
}

// waitRowCount waits until the server at addr has n rows in acked.
func waitRowCount(t *testing.T, ctx context.Context, in *pgcluster.Instance, n int) {
	t.Helper()
	c := connectPgx(t, ctx, in.DSN("postgres"))
	var got int
	waitFor(t, 30*time.Second, fmt.Sprintf("%s to have %d rows", in.Name, n), func() bool {
		return c.QueryRow(ctx, "SELECT count(*) FROM acked").Scan(&got) == nil && got == n
	})
}

// With synchronous replication (synchronous_commit = on and ANY 1 of the
// replicas synchronous) a failover after a crash loses no acknowledged
// write.
func TestFailoverSynchronousKeepsAcknowledgedWrites(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl, p := failoverCluster(t, ctx, map[string]string{
		"synchronous_commit":        "on",
		"synchronous_standby_names": "ANY 1 (*)",
	}, nil)
	sh := cl.Shards[0]
	_, api := failoverAPI(t, p)

	load := startWriteLoad(t, p.dsn("postgres"), 4)
	waitFor(t, 30*time.Second, "200 acknowledged writes", func() bool { return load.count() >= 200 })
	if err := sh.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	var res admin.FailoverResult
	if err := api.Do(ctx, "POST", "/v1/shards/"+sh.Name+"/failover", nil, &res); err != nil {
		t.Fatalf("failover: %v", err)
	}
	t.Logf("failover: %s; fence %s; promoted at %s; replicas %+v; warnings %q", res.Message, res.Fence, res.PromotedAtLSN, res.Replicas, res.Warnings)
	if res.Fence != "unreachable" || res.OldPrimary != sh.Primary.Addr() {
		t.Errorf("old primary %s: fence %q (%s), want unreachable", res.OldPrimary, res.Fence, res.FenceDetail)
	}
	var promoted, other *pgcluster.Instance
	for i, r := range sh.Replicas {
		if r.Addr() == res.NewPrimary {
			promoted, other = r, sh.Replicas[1-i]
		}
	}
	if promoted == nil {
		t.Fatalf("new primary %q is not one of the replicas", res.NewPrimary)
	}
	if len(res.Replicas) != 1 || res.Replicas[0].Addr != other.Addr() || res.Replicas[0].State != admin.RepointStreaming {
		t.Fatalf("other replica after failover: %+v, want %s streaming", res.Replicas, other.Addr())
	}
	if got, ok := p.srv.Topology().Current().Shard(sh.Name); !ok || got.Primary != promoted.Addr() || len(got.Replicas) != 1 || got.Replicas[0] != other.Addr() {
		t.Fatalf("topology after failover: %+v", got)
	}
	writesResume(t, load, 200)
	acked := load.finish()
	if port := primaryPortThroughProxy(t, ctx, p); port != promoted.Port {
		t.Errorf("writes go to port %d, want the new primary %d", port, promoted.Port)
	}
	lost, present := lostWrites(t, ctx, promoted.Addr(), acked)
	t.Logf("synchronous replication: %d writes acknowledged, %d rows on the new primary, %d acknowledged writes lost, %d failed attempts during the outage",
		len(acked), present, len(lost), load.failed.Load())
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost with synchronous replication, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	// The repointed replica follows the new primary.
	waitRowCount(t, ctx, other, present)
}

// With asynchronous replication the proxy fails over by itself after
// failover_timeout; the test reports how many acknowledged writes the
// failover lost (transactions committed on the old primary that had not
// reached the promoted replica).
func TestAutomaticFailoverAsynchronousReportsLostWrites(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	cl, p := failoverCluster(t, ctx, map[string]string{"synchronous_commit": "on"}, func(r *config.Replicas) {
		r.FailoverTimeout = config.Duration(time.Second)
	})
	sh := cl.Shards[0]
	api, _ := failoverAPI(t, p)
	p.srv.SetFailoverFunc(api.AutoFailover)

	load := startWriteLoad(t, p.dsn("postgres"), 4)
	waitFor(t, 30*time.Second, "200 acknowledged writes", func() bool { return load.count() >= 200 })
	old := sh.Primary.Addr()
	if err := sh.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var promoted *pgcluster.Instance
	waitFor(t, 60*time.Second, "the automatic failover to record a new primary", func() bool {
		got, _ := p.srv.Topology().Current().Shard(sh.Name)
		for _, r := range sh.Replicas {
			if got.Primary == r.Addr() {
				promoted = r
			}
		}
		return got.Primary != old
	})
	if promoted == nil {
		t.Fatalf("new primary is not one of the replicas: %+v", p.srv.Topology().Current().Shards())
	}
	t.Logf("automatic failover recorded %s as primary %s after the kill", promoted.Name, time.Since(killed).Round(10*time.Millisecond))
	load.switched.Store(true)
	before := load.count()
	writesResume(t, load, 200)
	acked := load.finish()
	if port := primaryPortThroughProxy(t, ctx, p); port != promoted.Port {
		t.Errorf("writes go to port %d, want the new primary %d", port, promoted.Port)
	}
	lost, present := lostWrites(t, ctx, promoted.Addr(), acked)
	t.Logf("asynchronous replication: %d writes acknowledged (%d before the failover was recorded), %d rows on the new primary, %d acknowledged writes LOST by the failover",
		len(acked), before, present, len(lost))
	// Only writes the old primary acknowledged can be lost: every write
	// sent once the new primary was in the topology is there.
	if lostAfter, _ := lostWrites(t, ctx, promoted.Addr(), load.afterSwitch); len(lostAfter) > 0 || len(load.afterSwitch) == 0 {
		t.Errorf("%d of %d writes acknowledged after the switch are missing on the new primary", len(lostAfter), len(load.afterSwitch))
	}
	if present > len(acked)+4 || present < len(acked)-len(lost) {
		t.Errorf("counts do not add up: acked %d, present %d, lost %d", len(acked), present, len(lost))
	}
	// The other replica was repointed and follows.
	for _, r := range sh.Replicas {
		if r != promoted {
			waitRowCount(t, ctx, r, present)
		}
	}
}
