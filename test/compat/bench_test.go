package compat

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// benchRows is the size of the posts table the merge benchmarks read.
const benchRows = 1_000_000

// benchEnv is one 4-shard cluster behind an in-process proxy holding
// benchRows posts, and a reference database with the same rows on the
// first shard's server.
type benchEnv struct {
	ref, sharded *pgconn.PgConn
	shardDSNs    []string // each shard's database, directly
}

var (
	benchOnce sync.Once
	benchData *benchEnv
	benchErr  error
	benchStop func()
)

// setupBench starts the environment once per test binary (benchmarks
// are called several times while b.N grows).
func setupBench(b *testing.B) *benchEnv {
	benchOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		tb := &onceTB{TB: b}
		c, err := pgcluster.Start(ctx, pgcluster.Options{Shards: 4})
		if err != nil {
			benchErr = err
			return
		}
		benchStop = func() { c.Stop() }
		addr := startProxy(tb, c)
		admin := connect(tb, ctx, c.Shards[0].Primary.DSN("postgres"))
		if _, err := admin.Exec(ctx, "CREATE DATABASE bench_reference").ReadAll(); err != nil {
			benchErr = err
			return
		}
		env := &benchEnv{
			ref:     connect(tb, ctx, c.Shards[0].Primary.DSN("bench_reference")),
			sharded: connect(tb, ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr)),
		}
		for _, sh := range c.Shards {
			env.shardDSNs = append(env.shardDSNs, sh.Primary.DSN("postgres"))
		}
		for _, conn := range []*pgconn.PgConn{env.ref, env.sharded} {
			if benchErr = loadBenchPosts(ctx, conn); benchErr != nil {
				return
			}
		}
		benchData = env
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchData
}

// onceTB keeps the shared environment alive past the first benchmark's
// end: cleanups registered on it run at TestMain's end instead.
type onceTB struct{ testing.TB }

func (o *onceTB) Cleanup(f func()) { benchCleanups = append(benchCleanups, f) }

var benchCleanups []func()

func TestMain(m *testing.M) {
	pool.SetVerifyPrepared(true) // every released connection's statement cache is checked against its server
	code := m.Run()
	if n := pool.PreparedDrift(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d cached prepared statements were missing on their server (see the log)\n", n)
		code = 1
	}
	for i := len(benchCleanups) - 1; i >= 0; i-- {
		benchCleanups[i]()
	}
	if benchStop != nil {
		benchStop()
	}
	os.Exit(code)
}

// loadBenchPosts creates posts and copies benchRows rows into it.
func loadBenchPosts(ctx context.Context, conn *pgconn.PgConn) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE posts (author_id bigint NOT NULL, id bigint NOT NULL, body text NOT NULL,
	created_at timestamptz NOT NULL, like_count bigint NOT NULL, score real, PRIMARY KEY (author_id, id))`).ReadAll(); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 1<<20)
		var r rng = 7
		for id := 1; id <= benchRows; id++ {
			fmt.Fprintf(w, "%d\t%d\tpost number %d about %s\t2025-01-01 00:00:00+00\t%d\t%d.5\n",
				1+r.intn(100000), id, id, words[r.intn(len(words))], r.intn(1_000_000), r.intn(1000))
		}
		w.Flush()
		pw.Close()
	}()
	if _, err := conn.CopyFrom(ctx, pr, "COPY posts FROM STDIN"); err != nil {
		return err
	}
	_, err := conn.Exec(ctx, "CREATE INDEX posts_id_idx ON posts (id)").ReadAll()
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "ANALYZE posts").ReadAll()
	return err
}

// drain runs sql and counts the rows without keeping them.
func drain(ctx context.Context, conn *pgconn.PgConn, sql string) (int, error) {
	rr := conn.ExecParams(ctx, sql, nil, nil, nil, nil)
	n := 0
	for rr.NextRow() {
		n++
	}
	_, err := rr.Close()
	return n, err
}

// BenchmarkOrderByLimit: the top 100 of 1,000,000 posts, on one
// PostgreSQL holding all rows ("one-server") and through shardproxy over 4
// shards ("proxy-4-shards"); compare ns/op of the two. "scan" sorts by
// like_count, which has no index (each server scans and keeps a top-N
// heap); "index" sorts by id, which has one (each server reads 100 index
// entries, so the proxy's extra hop and merge dominate).
func BenchmarkOrderByLimit(b *testing.B) {
	env := setupBench(b)
	for _, q := range []struct{ name, sql string }{
		{"scan", "SELECT author_id, id, like_count FROM posts ORDER BY like_count DESC, id LIMIT 100"},
		{"index", "SELECT author_id, id, like_count FROM posts ORDER BY id DESC LIMIT 100"},
	} {
		for _, side := range []struct {
			name string
			conn *pgconn.PgConn
		}{{"one-server", env.ref}, {"proxy-4-shards", env.sharded}} {
			b.Run(q.name+"/"+side.name, func(b *testing.B) {
				ctx := context.Background()
				for i := 0; i < b.N; i++ {
					n, err := drain(ctx, side.conn, q.sql)
					if err != nil || n != 100 {
						b.Fatalf("%d rows, %v", n, err)
					}
				}
			})
		}
	}
}

// BenchmarkScatterFloor is the floor under "index/proxy-4-shards" of
// BenchmarkOrderByLimit on this machine: a minimal client (pre-encoded
// messages on raw connections, rows counted, not decoded) sends the shard
// part to the 4 shards at once, without a proxy, and reads the 4 answers
// (400 rows, no merge). "parse" sends it unnamed each time (parse and plan
// per run on every shard, as the one-server side does); "prepared" binds a
// statement prepared once per shard connection, as the proxy does.
func BenchmarkScatterFloor(b *testing.B) {
	env := setupBench(b)
	ctx := context.Background()
	const q = "SELECT author_id, id, like_count FROM posts ORDER BY id DESC LIMIT 100"
	type rawConn struct {
		c  net.Conn
		br *bufio.Reader
	}
	var conns []rawConn
	for _, dsn := range env.shardDSNs {
		pc := connect(&onceTB{TB: b}, ctx, dsn)
		if _, err := pc.Prepare(ctx, "scatter_floor", q, nil); err != nil {
			b.Fatal(err)
		}
		hj, err := pc.Hijack()
		if err != nil {
			b.Fatal(err)
		}
		benchCleanups = append(benchCleanups, func() { hj.Conn.Close() })
		conns = append(conns, rawConn{c: hj.Conn, br: bufio.NewReaderSize(hj.Conn, 64<<10)})
	}
	encode := func(msgs ...pgproto3.FrontendMessage) []byte {
		var buf []byte
		for _, m := range msgs {
			var err error
			if buf, err = m.Encode(buf); err != nil {
				b.Fatal(err)
			}
		}
		return buf
	}
	run := map[string][]byte{
		"parse": encode(&pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Sync{}),
		"prepared": encode(&pgproto3.Bind{PreparedStatement: "scatter_floor"}, &pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{}, &pgproto3.Sync{}),
	}
	for _, mode := range []string{"parse", "prepared"} {
		b.Run("4-shards-"+mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				for _, c := range conns {
					if _, err := c.c.Write(run[mode]); err != nil {
						b.Fatal(err)
					}
				}
				rows := 0
				for _, c := range conns {
					for {
						hdr, err := c.br.Peek(5)
						if err != nil {
							b.Fatal(err)
						}
						typ := hdr[0]
						if _, err := c.br.Discard(1 + int(binary.BigEndian.Uint32(hdr[1:]))); err != nil {
							b.Fatal(err)
						}
						if typ == 'E' {
							b.Fatal("ErrorResponse from a shard")
						}
						if typ == 'D' {
							rows++
						}
						if typ == 'Z' {
							break
						}
					}
				}
				if rows != 4*100 {
					b.Fatalf("%d rows", rows)
				}
			}
		})
	}
}

// BenchmarkScatterOrderByAll reads all 1,000,000 posts ordered by id
// through the proxy (a k-way merge of 4 shards' sorted streams) and
// reports rows/s and the growth of this process's resident set size
// during the read (the proxy runs in-process; the client keeps no rows).
func BenchmarkScatterOrderByAll(b *testing.B) {
	env := setupBench(b)
	ctx := context.Background()
	const q = "SELECT author_id, id, body, created_at, like_count FROM posts ORDER BY id"
	base := rssBytes()
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r := rssBytes(); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	total := 0
	for i := 0; i < b.N; i++ {
		n, err := drain(ctx, env.sharded, q)
		if err != nil || n != benchRows {
			b.Fatalf("%d rows, %v", n, err)
		}
		total += n
	}
	elapsed := time.Since(start)
	close(stop)
	<-done
	b.ReportMetric(float64(total)/elapsed.Seconds(), "rows/s")
	growth := peak.Load() - base
	if growth < 0 {
		growth = 0
	}
	b.ReportMetric(float64(growth)/(1<<20), "MiB-rss-growth")
}

// rssBytes is this process's resident set size.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
