package proxy

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkShardedPointCPU measures the proxy's CPU per request on the
// sharded extended path (what issue 3's scale-out benchmark runs): a
// prepared point select and a single-row update by key over 4 shards, from
// 4 clients at once, -M prepared style (Bind, Describe, Execute, Sync).
// Besides ns/op it reports cpu-µs/op: this process's CPU (user + system,
// getrusage) per request, which is the proxy's plus the raw clients' (a
// write and a read each, the same for every build), so two builds compare
// by it far more steadily than by the scale-out runs' CPU on a busy box.
//
//	go test -run '^$' -bench ShardedPointCPU -benchtime 20000x ./proxy/
func BenchmarkShardedPointCPU(b *testing.B) {
	tp := startShardedBench(b, 4, "bench_point")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, tp.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close(context.Background())
	const keys = 256
	if _, err := pc.Exec(ctx, "CREATE TABLE bench_point (id int PRIMARY KEY, v int)").ReadAll(); err != nil {
		b.Fatal(err)
	}
	if _, err := pc.Exec(ctx, fmt.Sprintf("INSERT INTO bench_point SELECT g, 0 FROM generate_series(1, %d) g", keys)).ReadAll(); err != nil {
		// A multi-shard INSERT … SELECT of a set-returning function may
		// be refused; insert row by row then.
		for k := 1; k <= keys; k++ {
			if _, err := pc.Exec(ctx, fmt.Sprintf("INSERT INTO bench_point VALUES (%d, 0)", k)).ReadAll(); err != nil {
				b.Fatal(err)
			}
		}
	}
	addr := proxyAddr(b, tp)
	const clients = 4
	for _, w := range []struct{ name, sql string }{
		{"select", "SELECT v FROM bench_point WHERE id = $1"},
		{"update", "UPDATE bench_point SET v = v + 1 WHERE id = $1"},
	} {
		b.Run(w.name, func(b *testing.B) {
			conns := make([]*benchClient, clients)
			var msgs [keys][]byte
			for i := range msgs {
				msgs[i] = appendBindExecSync(nil, "s1", strconv.Itoa(i+1))
			}
			for i := range conns {
				conns[i] = dialBench(b, addr)
				conns[i].roundTrip(b, appendParse(nil, "s1", w.sql))
				for _, m := range msgs { // every server connection prepares the statement
					conns[i].roundTrip(b, m)
				}
			}
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, rc := range conns {
				n := b.N / clients
				if i < b.N%clients {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range n {
						if _, err := rc.c.Write(msgs[(j*7+i*61)%keys]); err != nil {
							b.Error(err)
							return
						}
						if err := rc.untilReady(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU returns this process's user + system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
