package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

const (
	superPassword = "supersecret"
	appUser       = "poolapp"
	appPassword   = "apppw"
)

// cluster is one PostgreSQL server shared by the package's tests (they run
// sequentially; TestServerRestart restarts it).
var cluster *pgcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Password: superPassword})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL:", err)
		return 1
	}
	defer c.Stop()
	cluster = c
	pc, err := pgconn.Connect(ctx, c.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 1
	}
	_, err = pc.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", appUser, appPassword)).ReadAll()
	pc.Close(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "create role:", err)
		return 1
	}
	return m.Run()
}

func addr() string { return cluster.Shards[0].Primary.Addr() }

// testOptions returns options for appUser with a unique application_name
// so pg_stat_activity can count this test's connections.
func testOptions(t testing.TB, size int) Options {
	return Options{
		Addr:           addr(),
		User:           appUser,
		Database:       "postgres",
		Password:       appPassword,
		Size:           size,
		WaitTimeout:    10 * time.Second,
		ConnectTimeout: 5 * time.Second,
		ConnectRetries: 2,
		RuntimeParams:  map[string]string{"application_name": appName(t)},
	}
}

func appName(t testing.TB) string {
	n := "pooltest_" + t.Name()
	if len(n) > 60 {
		n = n[:60]
	}
	return n
}

func newTestPool(t testing.TB, opts Options) *Pool {
	t.Helper()
	p := New(Key{User: opts.User, Database: opts.Database, Backend: opts.Addr}, opts)
	t.Cleanup(p.Close)
	return p
}

// query runs sql on sc with the simple protocol, like a session would, and
// returns the first column of every row. A server error is returned as
// *pgconn.PgError; the connection is left idle either way unless the error
// is an I/O error.
func query(sc *ServerConn, sql string) ([]string, error) {
	sc.Frontend.SendQuery(&pgproto3.Query{String: sql})
	if err := sc.Frontend.Flush(); err != nil {
		return nil, err
	}
	var rows []string
	var qerr error
	for {
		msg, err := sc.Frontend.Receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				rows = append(rows, string(m.Values[0]))
			}
		case *pgproto3.ErrorResponse:
			qerr = &pgconn.PgError{Severity: m.Severity, Code: m.Code, Message: m.Message}
		case *pgproto3.ParameterStatus:
			sc.Params[m.Name] = m.Value
		case *pgproto3.ReadyForQuery:
			return rows, qerr
		}
	}
}

// superQuery runs sql as the superuser on a fresh connection.
func superQuery(t testing.TB, sql string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, cluster.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatalf("connect as superuser: %v", err)
	}
	defer pc.Close(ctx)
	res := pc.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatalf("%s: %v", sql, res.Err)
	}
	var out []string
	for _, r := range res.Rows {
		out = append(out, string(r[0]))
	}
	return out
}

// backends counts server backends with this test's application_name.
func backends(t testing.TB) int {
	t.Helper()
	r := superQuery(t, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'", appName(t)))
	var n int
	fmt.Sscan(r[0], &n)
	return n
}

// eventually polls cond every 20ms until it is true or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustAcquire(t testing.TB, p *Pool) *ServerConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sc, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return sc
}

func poolError(t testing.TB, err error) *Error {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("want *pool.Error, got %T: %v", err, err)
	}
	return pe
}
