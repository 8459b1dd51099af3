package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// TestPassthroughAuth checks unknown users' passwords against a server
// that requires SCRAM, and uses the verified password for the pool.
func TestPassthroughAuth(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{Password: "srvpw"})
	p := c.Shards[0].Primary
	cfg := config.Default()
	cfg.Auth.Passthrough = true
	cfg.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: p.Host, Port: p.Port}}}
	srv, err := NewServer(cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	ctx := ctx10(t)
	dsn := func(pw string) string {
		return fmt.Sprintf("postgres://postgres:%s@%s/postgres?sslmode=disable", pw, ln.Addr())
	}
	_, err = pgx.Connect(ctx, dsn("wrong"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("want 28P01, got %v", err)
	}
	conn := connect(t, dsn("srvpw"), pgx.QueryExecModeCacheStatement)
	var n int
	if err := conn.QueryRow(ctx, "SELECT $1::int", 9).Scan(&n); err != nil || n != 9 {
		t.Fatalf("query through passthrough: %v", err)
	}
}

func TestMaxClientConn(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.MaxClientConn = 2 })
	ctx := ctx10(t)
	connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	_, err := pgx.Connect(ctx, tp.dsn)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Fatalf("want 53300, got %v", err)
	}
}

// TestExtendedSetAndPinning covers SET through Parse/Bind/Execute and the
// pin/unpin cycle of session advisory locks and DISCARD ALL.
func TestExtendedSetAndPinning(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx := ctx10(t)
	a := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement).PgConn()
	b := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	if _, err := a.Prepare(ctx, "st", "SET statement_timeout = '7s'", nil); err != nil {
		t.Fatal(err)
	}
	if r := a.ExecPrepared(ctx, "st", nil, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
	var v string
	b.QueryRow(ctx, "SHOW statement_timeout").Scan(&v)
	if v != "0" {
		t.Fatalf("B sees %q", v)
	}
	res, err := a.Exec(ctx, "SHOW statement_timeout").ReadAll()
	if err != nil || string(res[0].Rows[0][0]) != "7s" {
		t.Fatalf("A lost its extended-protocol SET: %v %v", err, res)
	}
	// A session advisory lock pins A: with a pool of one, B waits until
	// A's DISCARD ALL releases the connection.
	if _, err := a.Exec(ctx, "SELECT pg_advisory_lock(42)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = b.Exec(bctx, "SELECT 1")
	cancel()
	if err == nil {
		t.Fatal("B got the server connection while A was pinned")
	}
	for _, q := range []string{"SELECT pg_advisory_unlock_all()", "DISCARD ALL"} {
		if _, err := a.Exec(ctx, q).ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	b2 := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	if _, err := b2.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after DISCARD ALL: %v", err)
	}
	res, err = a.Exec(ctx, "SHOW statement_timeout").ReadAll()
	if err != nil || string(res[0].Rows[0][0]) != "0" {
		t.Fatalf("DISCARD ALL did not reset A: %v %v", err, res)
	}
}
