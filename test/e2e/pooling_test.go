package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// createRole makes a login role on the server so its backends can be
// counted apart from the test's own monitoring connection.
func createRole(t *testing.T, ctx context.Context, direct *pgx.Conn, name string) {
	t.Helper()
	if _, err := direct.Exec(ctx, fmt.Sprintf(`DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN SUPERUSER`, name, name)); err != nil {
		t.Fatal(err)
	}
}

func countBackends(ctx context.Context, direct *pgx.Conn, user string) (int, error) {
	var n int
	err := direct.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'`, user).Scan(&n)
	return n, err
}

// TestManyClientsMultiplexedOntoSmallPool: 500 concurrent clients share a
// pool of 20 server connections; every client gets its own answers and the
// server never sees more than 20 backends for that user.
func TestManyClientsMultiplexedOntoSmallPool(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx := testCtx(t, 3*time.Minute)
	direct := connectPgx(t, ctx, c.Shards[0].Primary.DSN("postgres"))
	createRole(t, ctx, direct, "many")
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.Pool.Size = 20
		cfg.Pool.WaitTimeout = config.Duration(60 * time.Second)
	})
	dsn := strings.Replace(p.dsn("postgres"), "postgres@", "many@", 1)

	const clients = 500
	conns := make([]*pgx.Conn, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sem := make(chan struct{}, 50) // connect 50 at a time: the proxy is tested, not the kernel's accept queue
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs <- fmt.Errorf("client %d connect: %w", i, err)
				return
			}
			conns[i] = cn
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close(context.Background())
			}
		}
	}()

	// Watch the server while all 500 clients run queries at once.
	var maxBackends atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			if n, err := countBackends(ctx, direct, "many"); err == nil && int64(n) > maxBackends.Load() {
				maxBackends.Store(int64(n))
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := make(chan struct{})
	qerrs := make(chan error, clients)
	for i, cn := range conns {
		wg.Add(1)
		go func(i int, cn *pgx.Conn) {
			defer wg.Done()
			<-start
			for j := 0; j < 5; j++ {
				var got int
				var sleep string
				if err := cn.QueryRow(ctx, "SELECT $1::int, pg_sleep(0.002)::text", i*10+j).Scan(&got, &sleep); err != nil {
					qerrs <- fmt.Errorf("client %d query %d: %w", i, j, err)
					return
				}
				if got != i*10+j {
					qerrs <- fmt.Errorf("client %d got %d, want %d (answer meant for another client)", i, got, i*10+j)
					return
				}
			}
		}(i, cn)
	}
	close(start)
	wg.Wait()
	close(stopWatch)
	<-watchDone
	close(qerrs)
	for err := range qerrs {
		t.Error(err)
	}
	if m := maxBackends.Load(); m > 20 || m < 2 {
		t.Errorf("server saw at most %d backends for 500 clients; want between 2 and the pool size 20", m)
	} else {
		t.Logf("500 clients served by at most %d server backends", m)
	}
}

// TestServerRestartUnderLoad: the server restarts while 20 clients loop on
// queries. Clients see errors only while it is down, with connection-class
// SQLSTATEs, keep their proxy connections, and every client succeeds again
// afterwards without reconnecting.
func TestServerRestartUnderLoad(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx := testCtx(t, 3*time.Minute)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.Pool.Size = 5
		cfg.Pool.WaitTimeout = config.Duration(5 * time.Second)
		cfg.Pool.ConnectTimeout = config.Duration(2 * time.Second)
	})
	const clients = 20
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connectPgx(t, ctx, p.dsn("postgres"))
	}
	var (
		mu         sync.Mutex
		badErrors  []string
		restarted  atomic.Bool
		okAfter    = make([]atomic.Bool, clients)
		gone       = make([]atomic.Bool, clients)
		stop       atomic.Bool
		wg         sync.WaitGroup
		totalOK    atomic.Int64
		totalError atomic.Int64
	)
	for i, cn := range conns {
		wg.Add(1)
		go func(i int, cn *pgx.Conn) {
			defer wg.Done()
			defer gone[i].Store(true)
			for !stop.Load() {
				var got int
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := cn.QueryRow(qctx, "SELECT $1::int", i).Scan(&got)
				cancel()
				switch {
				case err == nil && got == i:
					totalOK.Add(1)
					if restarted.Load() {
						okAfter[i].Store(true)
					}
				case err == nil:
					mu.Lock()
					badErrors = append(badErrors, fmt.Sprintf("client %d got %d", i, got))
					mu.Unlock()
				default:
					totalError.Add(1)
					code := sqlState(err)
					// Connection exception (08), admin shutdown/crash (57P01..57P03), pool wait (53300).
					if !(strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P") || code == "53300") {
						mu.Lock()
						badErrors = append(badErrors, fmt.Sprintf("client %d: unexpected error %q: %v", i, code, err))
						mu.Unlock()
					}
					if cn.IsClosed() {
						mu.Lock()
						badErrors = append(badErrors, fmt.Sprintf("client %d: proxy closed an idle autocommit client: %v", i, err))
						mu.Unlock()
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}(i, cn)
	}
	waitFor(t, 20*time.Second, "load running", func() bool { return totalOK.Load() > 200 })
	if err := c.Shards[0].Primary.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted.Store(true)
	waitFor(t, 30*time.Second, "every client to succeed after the restart", func() bool {
		for i := range okAfter {
			if !okAfter[i].Load() && !gone[i].Load() {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	for i := range okAfter {
		if !okAfter[i].Load() {
			t.Errorf("client %d never succeeded after the restart", i)
		}
	}
	t.Logf("queries ok=%d failed=%d", totalOK.Load(), totalError.Load())
	for _, e := range badErrors {
		t.Error(e)
	}
}

// TestSessionModeResetsBetweenClients: in session mode a client keeps one
// server connection (temp tables live across transactions) and the next
// client on that connection starts clean (DISCARD ALL).
func TestSessionModeResetsBetweenClients(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx := testCtx(t, time.Minute)
	p := startProxy(t, c, func(cfg *config.Config) {
		cfg.Pool.Mode = "session"
		cfg.Pool.Size = 1
	})
	a := connectPgx(t, ctx, p.dsn("postgres"))
	var pidA int
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TEMP TABLE scratch(x int)", "BEGIN", "INSERT INTO scratch VALUES (1)", "COMMIT",
		"SET application_name = 'client-a'", "PREPARE q AS SELECT 42"} {
		if _, err := a.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var n int
	if err := a.QueryRow(ctx, "SELECT count(*) FROM scratch").Scan(&n); err != nil || n != 1 {
		t.Fatalf("temp table across transactions in session mode: n=%d err=%v", n, err)
	}
	a.Close(ctx)

	b := connectPgx(t, ctx, p.dsn("postgres"))
	var pidB int
	if err := b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidB); err != nil {
		t.Fatal(err)
	}
	if pidB != pidA {
		t.Fatalf("pool of 1 should reuse the server connection: pid %d then %d", pidA, pidB)
	}
	var app string
	if err := b.QueryRow(ctx, "SHOW application_name").Scan(&app); err != nil {
		t.Fatal(err)
	}
	if app == "client-a" {
		t.Errorf("client B sees client A's application_name: session state leaked")
	}
	if _, err := b.Exec(ctx, "SELECT * FROM scratch"); sqlState(err) != "42P01" {
		t.Errorf("client B sees client A's temp table: err=%v (want 42P01)", err)
	}
	if _, err := b.Exec(ctx, "EXECUTE q"); sqlState(err) != "26000" {
		t.Errorf("client B sees client A's prepared statement: err=%v (want 26000)", err)
	}
}

// TestGracefulShutdown: on Shutdown the proxy stops accepting, lets an open
// transaction commit, and nothing committed is lost.
func TestGracefulShutdown(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx := testCtx(t, time.Minute)
	direct := connectPgx(t, ctx, c.Shards[0].Primary.DSN("postgres"))
	if _, err := direct.Exec(ctx, "CREATE TABLE shutdown_t(x int)"); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, c, nil)
	inTx := connectPgx(t, ctx, p.dsn("postgres"))
	idle := connectPgx(t, ctx, p.dsn("postgres"))
	if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	tx, err := inTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO shutdown_t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- p.stop(t, 20*time.Second) }()
	// New connections are refused once shutdown has begun.
	waitFor(t, 10*time.Second, "proxy to stop accepting", func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		cn, err := pgx.Connect(cctx, p.dsn("postgres"))
		if err == nil {
			cn.Close(ctx)
			return false
		}
		return true
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit of a transaction open at shutdown: %v", err)
	}
	select {
	case <-shutdownDone:
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not finish after the last transaction ended")
	}
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM shutdown_t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("committed row lost: n=%d err=%v", n, err)
	}
	if _, err := idle.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("idle client still served after shutdown")
	}
}
