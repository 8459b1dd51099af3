package proxy

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	_ "github.com/lib/pq"

	"github.com/shardproxy/shardproxy/proxy/config"
)

func TestCopyBothWays(t *testing.T) {
	tp := startProxy(t, nil)
	ctx := ctx10(t)
	c := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t(id int, name text)"); err != nil {
		t.Fatal(err)
	}
	rows := make([][]any, 5000)
	for i := range rows {
		rows[i] = []any{i, fmt.Sprintf("name-%d", i)}
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"copy_t"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
	if err != nil || n != 5000 {
		t.Fatalf("CopyFrom: %d %v", n, err)
	}
	var buf bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &buf, "COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT")
	if err != nil || tag.RowsAffected() != 5000 {
		t.Fatalf("CopyTo: %v %v", tag, err)
	}
	if !strings.HasPrefix(buf.String(), "0\tname-0\n1\tname-1\n") {
		t.Fatalf("CopyTo output starts %q", buf.String()[:30])
	}
	// A failing COPY FROM reports the error and the session goes on.
	_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("1\tx\nnot-a-number\ty\n"), "COPY copy_t FROM STDIN")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22P02" {
		t.Fatalf("want 22P02, got %v", err)
	}
	var cnt int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM copy_t").Scan(&cnt); err != nil || cnt != 5000 {
		t.Fatalf("count after failed copy: %d %v", cnt, err)
	}
}

func TestCancelPgSleep(t *testing.T) {
	tp := startProxy(t, nil)
	c := connectCancelling(t, tp.dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Fatalf("cancel took %v", took)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("want 57014, got %v", err)
	}
}

// connectCancelling connects a client that sends a CancelRequest as soon
// as a query's context is done.
func connectCancelling(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 5 * time.Second}
	}
	c, err := pgx.ConnectConfig(ctx10(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestListenNotifyPinned(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 2 })
	ctx := ctx10(t)
	l := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	if _, err := l.Exec(ctx, "LISTEN chan1"); err != nil {
		t.Fatal(err)
	}
	other := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	for i := 0; i < 3; i++ { // the other client keeps working on the remaining server conn
		if _, err := other.Exec(ctx, "SELECT pg_notify('chan1', $1)", fmt.Sprint("hello", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := l.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if n.Channel != "chan1" || n.Payload != fmt.Sprint("hello", i) {
			t.Fatalf("notification %+v", n)
		}
	}
	var pinned int
	if err := l.QueryRow(ctx, "SELECT count(*) FROM pg_listening_channels()").Scan(&pinned); err != nil || pinned != 1 {
		t.Fatalf("listening channels: %d %v", pinned, err)
	}
}

// rawClient speaks the wire protocol by hand for bad-input tests.
func rawClient(t *testing.T, tp *testProxy) net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(tp.dsn, "postgres://postgres@")
	addr = addr[:strings.Index(addr, "/")]
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func startupMsg(version uint32, params ...string) []byte {
	b := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], version)
	for _, p := range params {
		b = append(append(b, p...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// readErrorCode reads messages until an ErrorResponse and returns its code.
func readErrorCode(t *testing.T, c net.Conn) string {
	t.Helper()
	r := msgReader{br: bufioReader(c), maxLen: 1 << 20}
	for {
		typ, body, err := r.next()
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		if typ == 'E' {
			return errorCode(body)
		}
	}
}

func TestBadInput(t *testing.T) {
	tp := startProxy(t, nil)
	ctx := ctx10(t)
	good := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	check := func() {
		t.Helper()
		var n int
		if err := good.QueryRow(ctx, "SELECT $1::int", 42).Scan(&n); err != nil || n != 42 {
			t.Fatalf("good client broken: %v", err)
		}
	}
	t.Run("protocol 4.0", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write(startupMsg(4<<16, "user", "postgres"))
		if code := readErrorCode(t, c); code != "0A000" {
			t.Fatalf("code %s", code)
		}
	})
	t.Run("protocol 2.0", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write(startupMsg(2<<16, "user", "postgres"))
		if code := readErrorCode(t, c); code != "0A000" {
			t.Fatalf("code %s", code)
		}
	})
	t.Run("protocol 3.2 negotiates", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write(startupMsg(3<<16|2, "user", "postgres", "database", "postgres"))
		r := msgReader{br: bufioReader(c), maxLen: 1 << 20}
		typ, body, err := r.next()
		if err != nil || typ != 'v' || binary.BigEndian.Uint32(body) != 0 {
			t.Fatalf("want NegotiateProtocolVersion, got %c %v", typ, err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		io.Copy(io.Discard, c) // the proxy closes
	})
	t.Run("2GB length", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write(startupMsg(3<<16, "user", "postgres", "database", "postgres"))
		r := msgReader{br: bufioReader(c), maxLen: 1 << 20}
		for {
			typ, _, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if typ == 'Z' {
				break
			}
		}
		c.Write([]byte{'Q', 0x7f, 0xff, 0xff, 0xff, 'x'})
		if code := readErrorCode(t, c); code != "08P01" {
			t.Fatalf("code %s", code)
		}
	})
	t.Run("unknown message type", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write(startupMsg(3<<16, "user", "postgres", "database", "postgres"))
		c.Write([]byte{'!', 0, 0, 0, 4})
		if code := readErrorCode(t, c); code != "08P01" {
			t.Fatalf("code %s", code)
		}
	})
	t.Run("no user", func(t *testing.T) {
		c := rawClient(t, tp)
		c.Write(startupMsg(3<<16, "database", "postgres"))
		if code := readErrorCode(t, c); code != "28000" {
			t.Fatalf("code %s", code)
		}
	})
	check()
}

func TestWrongPassword(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) {
		c.Auth.TrustLoopback = false
		c.Users = []config.User{{Name: "postgres", Password: "secret"}}
	})
	ctx := ctx10(t)
	_, err := pgx.Connect(ctx, strings.Replace(tp.dsn, "postgres@", "postgres:wrong@", 1))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("want 28P01, got %v", err)
	}
	_, err = pgx.Connect(ctx, strings.Replace(tp.dsn, "postgres@", "nobody:wrong@", 1))
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("unknown user: want 28P01, got %v", err)
	}
	c, err := pgx.Connect(ctx, strings.Replace(tp.dsn, "postgres@", "postgres:secret@", 1))
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
}

func TestClientLeavesMidQuery(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx := ctx10(t)
	c := rawClient(t, tp)
	c.Write(startupMsg(3<<16, "user", "postgres", "database", "postgres", "application_name", "leaver"))
	c.Write(appendQuery(nil, "SELECT pg_sleep(30)"))
	// Wait until the query runs on the server, then vanish.
	direct, err := pgx.Connect(ctx, testCluster.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	waitFor(t, 10*time.Second, func() bool {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").Scan(&n)
		return n == 1
	})
	c.Close()
	start := time.Now()
	// With a pool of one, the next client only gets through once the
	// abandoned query was cancelled and its server connection recovered.
	other := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	var n int
	if err := other.QueryRow(ctx, "SELECT $1::int", 5).Scan(&n); err != nil || n != 5 {
		t.Fatalf("after abandoned query: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("recovery took %v", took)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLibPQ(t *testing.T) {
	tp := startProxy(t, nil)
	db, err := sql.Open("postgres", tp.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(10)
	ctx := ctx10(t)
	for i := 0; i < 20; i++ {
		var s string
		var n int
		if err := db.QueryRowContext(ctx, "SELECT $1::text, $2::int * 2", "x", i).Scan(&s, &n); err != nil || n != 2*i {
			t.Fatalf("lib/pq: %v", err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	stmt, err := tx.PrepareContext(ctx, "SELECT $1::int + 1")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := stmt.QueryRowContext(ctx, 1).Scan(&n); err != nil || n != 2 {
		t.Fatal(err)
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestPsqlScript(t *testing.T) {
	psql := "/usr/bin/psql"
	if _, err := os.Stat(psql); err != nil {
		psql = "/usr/lib/postgresql/15/bin/psql"
	}
	tp := startProxy(t, nil)
	dir := t.TempDir()
	data := dir + "/data.tsv"
	os.WriteFile(data, []byte("1\tone\n2\ttwo\n3\tthree\n"), 0o644)
	script := fmt.Sprintf(`DROP TABLE IF EXISTS psql_t;
CREATE TABLE psql_t(id int, name text);
\copy psql_t FROM '%s'
SELECT count(*) AS n FROM psql_t; SELECT 'multi' AS m;
BEGIN;
INSERT INTO psql_t VALUES (4, 'four');
SELECT name FROM psql_t WHERE id = 4;
COMMIT;
\copy (SELECT id FROM psql_t ORDER BY id) TO '%s/out.txt'
`, data, dir)
	cmd := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", "-At", tp.dsn)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	for _, want := range []string{"COPY 3", "3\nmulti", "four"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("psql output lacks %q:\n%s", want, out)
		}
	}
	got, _ := os.ReadFile(dir + "/out.txt")
	if string(got) != "1\n2\n3\n4\n" {
		t.Fatalf("\\copy out: %q", got)
	}
}

// TestPipelinedBatch sends many statements before one Sync (pgx batch) on
// a pool of one while another client interleaves.
func TestPipelinedBatch(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx := ctx10(t)
	a := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	b := connect(t, tp.dsn, pgx.QueryExecModeCacheDescribe)
	for round := 0; round < 3; round++ {
		for _, c := range []*pgx.Conn{a, b} {
			batch := &pgx.Batch{}
			for i := 0; i < 200; i++ {
				batch.Queue("SELECT $1::int * 2, repeat('x', $2::int)", i, i*10)
			}
			br := c.SendBatch(ctx, batch)
			for i := 0; i < 200; i++ {
				var n int
				var s string
				if err := br.QueryRow().Scan(&n, &s); err != nil || n != 2*i || len(s) != i*10 {
					t.Fatalf("batch item %d: %v %d", i, err, n)
				}
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An error in the middle of a batch fails the rest, like PostgreSQL.
	batch := &pgx.Batch{}
	batch.Queue("SELECT 1")
	batch.Queue("SELECT 1/0")
	batch.Queue("SELECT 3")
	br := a.SendBatch(ctx, batch)
	var n int
	if err := br.QueryRow().Scan(&n); err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if err := br.QueryRow().Scan(&n); !errors.As(err, &pe) || pe.Code != "22012" {
		t.Fatalf("want 22012, got %v", err)
	}
	if err := br.QueryRow().Scan(&n); err == nil {
		t.Fatal("statement after the error ran")
	}
	br.Close()
	if err := a.QueryRow(ctx, "SELECT $1::int", 4).Scan(&n); err != nil || n != 4 {
		t.Fatalf("after failed batch: %v", err)
	}
}
