package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

var testCluster *pgcluster.Cluster

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"max_connections": "200"}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL:", err)
		os.Exit(1)
	}
	testCluster = c
	pool.SetVerifyPrepared(true) // every released connection's statement cache is checked against its server
	code := m.Run()
	c.Stop()
	if n := pool.PreparedDrift(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cached prepared statements were missing on their server (see the log)\n", n)
		code = 1
	}
	os.Exit(code)
}

// testProxy is a running proxy in front of the test cluster.
type testProxy struct {
	srv  *Server
	dsn  string
	port int // the TCP port clients connect to
}

func startProxy(t testing.TB, mutate func(*config.Config)) *testProxy {
	t.Helper()
	p := testCluster.Shards[0].Primary
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.TrustLoopback = true
	cfg.Pool.Size = 5
	cfg.Pool.WaitTimeout = config.Duration(20 * time.Second)
	cfg.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: p.Host, Port: p.Port}}}
	if mutate != nil {
		mutate(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("PROXY_DEBUG") != "" {
		level = slog.LevelDebug
	}
	srv, err := NewServer(cfg, Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return &testProxy{srv: srv, dsn: fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", ln.Addr()),
		port: ln.Addr().(*net.TCPAddr).Port}
}

func connect(t *testing.T, dsn string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPgxAllExecModes(t *testing.T) {
	tp := startProxy(t, nil)
	modes := map[string]pgx.QueryExecMode{
		"CacheStatement": pgx.QueryExecModeCacheStatement,
		"CacheDescribe":  pgx.QueryExecModeCacheDescribe,
		"DescribeExec":   pgx.QueryExecModeDescribeExec,
		"Exec":           pgx.QueryExecModeExec,
		"SimpleProtocol": pgx.QueryExecModeSimpleProtocol,
	}
	for name, mode := range modes {
		t.Run(name, func(t *testing.T) {
			ctx := ctx10(t)
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for g := 0; g < 50; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := connect(t, tp.dsn, mode)
					for i := 0; i < 20; i++ {
						var n int
						var s string
						if err := c.QueryRow(ctx, "SELECT $1::int + 1, $2::text || 'x'", g*100+i, fmt.Sprint(g)).Scan(&n, &s); err != nil {
							errs <- fmt.Errorf("goroutine %d query %d: %w", g, i, err)
							return
						}
						if n != g*100+i+1 || s != fmt.Sprint(g)+"x" {
							errs <- fmt.Errorf("goroutine %d: got %d %q", g, n, s)
							return
						}
						rows, err := c.Query(ctx, "SELECT generate_series(1, $1::int)", i+1)
						if err != nil {
							errs <- err
							return
						}
						cnt := 0
						for rows.Next() {
							cnt++
						}
						if rows.Err() != nil || cnt != i+1 {
							errs <- fmt.Errorf("series: %v, %d rows", rows.Err(), cnt)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestSimpleMultiStatementAndErrors(t *testing.T) {
	tp := startProxy(t, nil)
	c := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol)
	ctx := ctx10(t)
	res, err := c.PgConn().Exec(ctx, "SELECT 1; SELECT 2, 3; CREATE TEMP TABLE IF NOT EXISTS x(a int); DROP TABLE x").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || string(res[1].Rows[0][1]) != "3" {
		t.Fatalf("results: %+v", res)
	}
	_, err = c.Exec(ctx, "SELECT 1/0")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22012" {
		t.Fatalf("want 22012, got %v", err)
	}
	// Extended protocol error then recovery.
	c2 := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	if _, err := c2.Exec(ctx, "SELECT $1::int / 0", 1); !errors.As(err, &pe) || pe.Code != "22012" {
		t.Fatalf("want 22012, got %v", err)
	}
	if _, err := c2.Exec(ctx, "SELEC $1::int", 1); !errors.As(err, &pe) || pe.Code != "42601" {
		t.Fatalf("want 42601, got %v", err)
	}
	var n int
	if err := c2.QueryRow(ctx, "SELECT $1::int", 7).Scan(&n); err != nil || n != 7 {
		t.Fatalf("after errors: %v %d", err, n)
	}
	// Transactions keep their server connection.
	tx, err := c2.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid1, pid2 int
	tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1)
	tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2)
	if pid1 != pid2 || pid1 == 0 {
		t.Fatalf("transaction moved between servers: %d %d", pid1, pid2)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSetIsolation(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx := ctx10(t)
	a := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	b := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	defB := showSetting(t, ctx, b, "search_path")
	if _, err := a.Exec(ctx, "SET search_path = pg_catalog, public"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "SET statement_timeout = '123s'"); err != nil {
		t.Fatal(err)
	}
	if v := showSetting(t, ctx, b, "search_path"); v != defB {
		t.Fatalf("B sees A's search_path: %q", v)
	}
	if v := showSetting(t, ctx, b, "statement_timeout"); v != "0" {
		t.Fatalf("B sees A's statement_timeout: %q", v)
	}
	if v := showSetting(t, ctx, a, "search_path"); v != "pg_catalog, public" {
		t.Fatalf("A lost its search_path: %q", v)
	}
	if v := showSetting(t, ctx, a, "statement_timeout"); v != "123s" {
		t.Fatalf("A lost its statement_timeout: %q", v)
	}
	// Rolled-back SET is undone.
	tx, _ := a.Begin(ctx)
	tx.Exec(ctx, "SET statement_timeout = '5s'")
	tx.Rollback(ctx)
	showSetting(t, ctx, b, "statement_timeout")
	if v := showSetting(t, ctx, a, "statement_timeout"); v != "123s" {
		t.Fatalf("rolled-back SET survived: %q", v)
	}
	if _, err := a.Exec(ctx, "RESET statement_timeout"); err != nil {
		t.Fatal(err)
	}
	showSetting(t, ctx, b, "statement_timeout")
	if v := showSetting(t, ctx, a, "statement_timeout"); v != "0" {
		t.Fatalf("RESET lost: %q", v)
	}
}

// showSetting returns SHOW name on c.
func showSetting(t *testing.T, ctx context.Context, c *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := c.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSetIsolationSameStartup is TestSetIsolation for clients that start
// with the same settings (one application's connection string): a server
// connection whose last holder had the same settings is handed over
// without comparing them, so a SET (and a RESET) of one client must still
// not reach the other.
func TestSetIsolationSameStartup(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx := ctx10(t)
	dsn := tp.dsn + "&application_name=sameapp"
	a := connect(t, dsn, pgx.QueryExecModeSimpleProtocol)
	b := connect(t, dsn, pgx.QueryExecModeSimpleProtocol)
	for _, c := range []*pgx.Conn{a, b, a, b} { // both have held the one server connection
		if v := showSetting(t, ctx, c, "application_name"); v != "sameapp" {
			t.Fatalf("application_name = %q", v)
		}
	}
	if _, err := a.Exec(ctx, "SET statement_timeout = '123s'"); err != nil {
		t.Fatal(err)
	}
	if v := showSetting(t, ctx, b, "statement_timeout"); v != "0" {
		t.Fatalf("B sees A's statement_timeout: %q", v)
	}
	if v := showSetting(t, ctx, a, "statement_timeout"); v != "123s" {
		t.Fatalf("A lost its statement_timeout: %q", v)
	}
	if _, err := b.Exec(ctx, "SET application_name = 'other'"); err != nil {
		t.Fatal(err)
	}
	if v := showSetting(t, ctx, a, "application_name"); v != "sameapp" {
		t.Fatalf("A sees B's application_name: %q", v)
	}
	if _, err := b.Exec(ctx, "RESET application_name"); err != nil {
		t.Fatal(err)
	}
	if v := showSetting(t, ctx, b, "application_name"); v != "sameapp" {
		t.Fatalf("B's RESET: application_name = %q", v)
	}
	if _, err := a.Exec(ctx, "RESET statement_timeout"); err != nil {
		t.Fatal(err)
	}
	showSetting(t, ctx, b, "statement_timeout")
	if v := showSetting(t, ctx, a, "statement_timeout"); v != "0" {
		t.Fatalf("A's RESET lost: %q", v)
	}
}

func TestPreparedInterleaved(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 2; c.Pool.MaxPreparedStatements = 3 })
	ctx := ctx10(t)
	var conns []*pgconn.PgConn
	for i := 0; i < 4; i++ {
		conns = append(conns, connect(t, tp.dsn, pgx.QueryExecModeCacheStatement).PgConn())
	}
	for round := 0; round < 5; round++ {
		for i, c := range conns {
			// Same name, different text per client.
			if round == 0 {
				if _, err := c.Prepare(ctx, "s", fmt.Sprintf("SELECT %d + $1::int", i*1000), nil); err != nil {
					t.Fatal(err)
				}
				for k := 0; k < 3; k++ { // churn the per-server LRU
					if _, err := c.Prepare(ctx, fmt.Sprintf("extra%d", k), fmt.Sprintf("SELECT %d, %d", i, k), nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			r := c.ExecPrepared(ctx, "s", [][]byte{[]byte(fmt.Sprint(round))}, nil, nil).Read()
			if r.Err != nil {
				t.Fatalf("client %d round %d: %v", i, round, r.Err)
			}
			if got, want := string(r.Rows[0][0]), fmt.Sprint(i*1000+round); got != want {
				t.Fatalf("client %d round %d: got %s want %s", i, round, got, want)
			}
		}
	}
	// Duplicate name → 42P05; unknown → 26000; after Close it is gone.
	c := conns[0]
	_, err := c.Prepare(ctx, "s", "SELECT 1", nil)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42P05" {
		t.Fatalf("want 42P05, got %v", err)
	}
	if err := c.Deallocate(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	r := c.ExecPrepared(ctx, "s", nil, nil, nil).Read()
	if !errors.As(r.Err, &pe) || pe.Code != "26000" {
		t.Fatalf("want 26000, got %v", r.Err)
	}
	// SQL-level PREPARE/EXECUTE/DEALLOCATE.
	for i, c := range conns[:2] {
		if _, err := c.Exec(ctx, fmt.Sprintf("PREPARE q(int) AS SELECT %d + $1", i)).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 3; round++ {
		for i, c := range conns[:2] {
			res, err := c.Exec(ctx, "EXECUTE q(10)").ReadAll()
			if err != nil {
				t.Fatalf("EXECUTE: %v", err)
			}
			if got := string(res[0].Rows[0][0]); got != fmt.Sprint(10+i) {
				t.Fatalf("EXECUTE client %d got %s", i, got)
			}
		}
	}
	if _, err := conns[0].Exec(ctx, "DEALLOCATE q").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := conns[0].Exec(ctx, "EXECUTE q(1)").ReadAll(); !errors.As(err, &pe) || pe.Code != "26000" {
		t.Fatalf("want 26000 after DEALLOCATE, got %v", err)
	}
	// A duplicate PREPARE inside a transaction block aborts it, as on
	// PostgreSQL (the proxy answered 42P05 itself and the server's
	// transaction went on to commit).
	tx := conns[1]
	if _, err := tx.Exec(ctx, "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "PREPARE q(int) AS SELECT $1").ReadAll(); !errors.As(err, &pe) || pe.Code != "42P05" {
		t.Fatalf("duplicate PREPARE in a transaction: want 42P05, got %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1").ReadAll(); !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Errorf("statement after the error: want 25P02, got %v", err)
	}
	if res, err := tx.Exec(ctx, "COMMIT").ReadAll(); err != nil || res[0].CommandTag.String() != "ROLLBACK" {
		t.Errorf("COMMIT of the failed transaction: %v %v, want ROLLBACK", res, err)
	}
}

func TestStartupErrors(t *testing.T) {
	tp := startProxy(t, nil)
	ctx := ctx10(t)
	_, err := pgx.Connect(ctx, strings.Replace(tp.dsn, "/postgres?", "/nosuchdb?", 1))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "3D000" {
		t.Fatalf("want 3D000, got %v", err)
	}
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
