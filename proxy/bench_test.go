package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// Benchmarks of the per-transaction path through a real proxy in front of
// real PostgreSQL, one client, one statement per transaction. The client
// is a raw protocol writer/reader that does not allocate, so allocs/op is
// what the proxy allocates per transaction (plus noise from background
// goroutines). ns/op on a shared machine is noisy; compare allocs/op, or
// ns/op only between builds run side by side.
//
//	go test -run '^$' -bench PerTxn -benchmem ./proxy/

// benchClient speaks just enough protocol to send prepared bytes and wait
// for ReadyForQuery.
type benchClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialBench(tb testing.TB, addr string) *benchClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	rc := &benchClient{c: c, br: bufio.NewReaderSize(c, 8192)}
	var sm []byte
	sm = append(sm, 0, 0, 0, 0, 0, 3, 0, 0)
	sm = append(sm, "user\x00postgres\x00database\x00postgres\x00\x00"...)
	binary.BigEndian.PutUint32(sm, uint32(len(sm)))
	if _, err := c.Write(sm); err != nil {
		tb.Fatal(err)
	}
	if err := rc.untilReady(); err != nil {
		tb.Fatal(err)
	}
	return rc
}

// untilReady reads messages up to ReadyForQuery; an ErrorResponse fails.
func (rc *benchClient) untilReady() error {
	var failed error
	for {
		hdr, err := rc.br.Peek(5)
		if err != nil {
			return err
		}
		typ := hdr[0]
		n := int(binary.BigEndian.Uint32(hdr[1:])) + 1
		if typ == msgErrorResponse {
			body := make([]byte, n)
			io.ReadFull(rc.br, body)
			failed = fmt.Errorf("server error: %q", body[5:])
			continue
		}
		if _, err := rc.br.Discard(n); err != nil {
			return err
		}
		if typ == msgReadyForQuery {
			return failed
		}
	}
}

func (rc *benchClient) roundTrip(tb testing.TB, msgs []byte) {
	if _, err := rc.c.Write(msgs); err != nil {
		tb.Fatal(err)
	}
	if err := rc.untilReady(); err != nil {
		tb.Fatal(err)
	}
}

// appendBindExecSync appends Bind(unnamed portal, stmt, one text value),
// Describe portal, Execute, Sync: what pgbench -M prepared sends.
func appendBindExecSync(dst []byte, stmt, value string) []byte {
	var b []byte
	b = append(b, 0)
	b = append(b, stmt...)
	b = append(b, 0, 0, 0, 0, 1, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(value)))
	b = append(b, value...)
	b = append(b, 0, 0)
	dst = appendMsg(dst, msgBind, b)
	dst = appendMsg(dst, msgDescribe, []byte{'P', 0})
	dst = appendMsg(dst, msgExecute, []byte{0, 0, 0, 0, 0})
	return appendEmpty(dst, msgSync)
}

func appendParse(dst []byte, name, sql string) []byte {
	b := append([]byte(name), 0)
	b = append(b, sql...)
	b = append(b, 0, 0, 0)
	return appendEmpty(appendMsg(dst, msgParse, b), msgSync)
}

func proxyAddr(tb testing.TB, tp *testProxy) string {
	cfg, err := pgconn.ParseConfig(tp.dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// BenchmarkPerTxnOneShard: the pooler path (one shard, transaction mode).
func BenchmarkPerTxnOneShard(b *testing.B) {
	tp := startProxy(b, nil)
	addr := proxyAddr(b, tp)
	b.Run("simple", func(b *testing.B) {
		rc := dialBench(b, addr)
		q := appendQuery(nil, "SELECT 1")
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			rc.roundTrip(b, q)
		}
	})
	b.Run("prepared", func(b *testing.B) {
		rc := dialBench(b, addr)
		rc.roundTrip(b, appendParse(nil, "s1", "SELECT $1::int"))
		msgs := appendBindExecSync(nil, "s1", "42")
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			rc.roundTrip(b, msgs)
		}
	})
}

// BenchmarkPerTxnSharded: a point select by key, -M prepared style, over
// two shards (every Bind is planned and routed).
func BenchmarkPerTxnSharded(b *testing.B) {
	tp := startShardedBench(b, 2, "bench_kv")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, tp.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "CREATE TABLE bench_kv (id int PRIMARY KEY, v int)").ReadAll(); err != nil {
		b.Fatal(err)
	}
	addr := proxyAddr(b, tp)
	rc := dialBench(b, addr)
	rc.roundTrip(b, appendParse(nil, "s1", "SELECT v FROM bench_kv WHERE id = $1"))
	const keys = 64
	var msgs [keys][]byte
	for i := range msgs {
		msgs[i] = appendBindExecSync(nil, "s1", strconv.Itoa(i+1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rc.roundTrip(b, msgs[i%keys])
	}
}

// startShardedBench starts n shards and an in-process proxy in front of
// them that hash-distributes table by its int column id.
func startShardedBench(b *testing.B, n int, table string) *testProxy {
	c := pgcluster.StartT(b, pgcluster.Options{Shards: n})
	return startProxy(b, func(cfg *config.Config) {
		cfg.Shards = nil
		for _, sh := range c.Shards {
			cfg.Shards = append(cfg.Shards, config.Shard{Name: sh.Name, Primary: config.Endpoint{Host: sh.Primary.Host, Port: sh.Primary.Port}})
		}
		cfg.Sharding = topology.Spec{
			Distributions: []topology.DistributionSpec{{Name: "kv", Scheme: topology.Hash, KeyType: topology.Int}},
			Tables:        []topology.TableSpec{{Name: table, Key: "id", Distribution: "kv"}},
		}
	})
}
