package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
)

// TestMain checks every server connection a proxy releases: its cached
// prepared statements must exist on its server (pool.SetVerifyPrepared).
func TestMain(m *testing.M) {
	pool.SetVerifyPrepared(true)
	code := m.Run()
	if n := pool.PreparedDrift(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cached prepared statements were missing on their server (see the log)\n", n)
		code = 1
	}
	os.Exit(code)
}

// runningProxy is an in-process shardproxy serving on a loopback port.
type runningProxy struct {
	srv  *proxy.Server
	addr string
	done chan error
}

// dsn is a connection string for user postgres through the proxy.
func (p *runningProxy) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.addr, db)
}

// startProxy runs a proxy in front of every shard of c (trust on loopback),
// adjusted by mutate, and shuts it down when the test ends.
func startProxy(t testing.TB, c *pgcluster.Cluster, mutate func(*config.Config)) *runningProxy {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.TrustLoopback = true
	cfg.Shards = shardConfigs(c.Shards)
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return serveProxy(t, cfg, proxy.Deps{Logger: testLogger()})
}

// shardConfigs is the config entry of each shard: its primary and its
// streaming replicas.
func shardConfigs(shards []*pgcluster.Shard) []config.Shard {
	var out []config.Shard
	for _, sh := range shards {
		s := config.Shard{Name: sh.Name, Primary: config.Endpoint{Host: sh.Primary.Host, Port: sh.Primary.Port}}
		for _, r := range sh.Replicas {
			s.Replicas = append(s.Replicas, config.Endpoint{Host: r.Host, Port: r.Port})
		}
		out = append(out, s)
	}
	return out
}

// testLogger logs warnings and errors to stderr (everything with
// PROXY_DEBUG set).
func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("PROXY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// serveProxy runs a proxy with cfg and deps on a free loopback port and
// shuts it down when the test ends.
func serveProxy(t testing.TB, cfg config.Config, deps proxy.Deps) *runningProxy {
	t.Helper()
	srv, err := proxy.NewServer(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := proxy.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &runningProxy{srv: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(ln) }()
	t.Cleanup(func() { p.stop(t, 10*time.Second) })
	return p
}

// stop shuts the proxy down (idempotent) and checks Serve's result.
func (p *runningProxy) stop(t testing.TB, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	select {
	case serr, ok := <-p.done:
		if ok {
			if !errors.Is(serr, proxy.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", serr)
			}
			close(p.done)
		}
	case <-time.After(timeout):
		t.Errorf("Serve did not return within %s of Shutdown", timeout)
	}
	return err
}

func connectPgx(t testing.TB, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sqlState returns the SQLSTATE of err, or "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// waitFor polls cond until it returns true or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, d, what, cond)
}

// sendBatch sends stmts as one pgx batch (one Sync) and reports the first
// error.
func sendBatch(ctx context.Context, c *pgx.Conn, stmts ...string) error {
	batch := &pgx.Batch{}
	for _, s := range stmts {
		batch.Queue(s)
	}
	return c.SendBatch(ctx, batch).Close()
}
