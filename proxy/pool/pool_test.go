package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestAcquireReleaseReuse(t *testing.T) {
	p := newTestPool(t, testOptions(t, 2))
	sc := mustAcquire(t, p)
	rows, err := query(sc, "SELECT current_user")
	if err != nil || len(rows) != 1 || rows[0] != appUser {
		t.Fatalf("SELECT current_user = %v, %v", rows, err)
	}
	if sc.PID == 0 || sc.SecretKey == 0 || sc.Params["server_version"] == "" || sc.Addr != addr() {
		t.Fatalf("conn metadata incomplete: pid=%d key=%d params=%v addr=%s", sc.PID, sc.SecretKey, sc.Params, sc.Addr)
	}
	pid := sc.PID
	p.Release(sc, false)
	sc2 := mustAcquire(t, p)
	if sc2.PID != pid {
		t.Fatalf("idle conn not reused: pid %d then %d", pid, sc2.PID)
	}
	p.Release(sc2, false)
	st := p.Stats()
	if st.Idle != 1 || st.Active != 0 || st.Total != 1 || st.Dials != 1 || st.Acquires != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWaitersServedFIFO(t *testing.T) {
	p := newTestPool(t, testOptions(t, 2))
	a, b := mustAcquire(t, p), mustAcquire(t, p)
	order := make(chan int, 3)
	got := make(chan *ServerConn, 3)
	for i := 1; i <= 3; i++ {
		go func() {
			sc, err := p.Acquire(context.Background())
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				got <- nil
				return
			}
			order <- i
			got <- sc
		}()
		// Queue the waiters one after another so their order is known.
		eventually(t, 5*time.Second, fmt.Sprintf("waiter %d queued", i), func() bool { return p.Stats().Waiting == i })
	}
	if st := p.Stats(); st.MaxWait <= 0 || st.Total != 2 {
		t.Fatalf("stats with waiters = %+v", st)
	}
	p.Release(a, false)
	first := <-got
	p.Release(b, false)
	second := <-got
	p.Release(first, false)
	third := <-got
	p.Release(second, false)
	p.Release(third, false)
	for want := 1; want <= 3; want++ {
		if g := <-order; g != want {
			t.Fatalf("waiter %d served in position %d", g, want)
		}
	}
	if st := p.Stats(); st.Total != 2 || st.Idle != 2 || st.Waiting != 0 || st.Waits != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWaitTimeoutSaysPoolExhausted(t *testing.T) {
	opts := testOptions(t, 1)
	opts.WaitTimeout = 200 * time.Millisecond
	p := newTestPool(t, opts)
	sc := mustAcquire(t, p)
	defer p.Release(sc, false)
	start := time.Now()
	_, err := p.Acquire(context.Background())
	el := time.Since(start)
	pe := poolError(t, err)
	if pe.Code != "53300" || !strings.Contains(pe.Message, "pool exhausted") ||
		!strings.Contains(pe.Message, "pool.size=1") || !strings.Contains(pe.Message, "user="+appUser) {
		t.Fatalf("error = %+v", pe)
	}
	for _, bad := range []string{"down", "cannot connect"} {
		if strings.Contains(strings.ToLower(pe.Message), bad) {
			t.Fatalf("timeout message suggests servers are down: %q", pe.Message)
		}
	}
	if el < 150*time.Millisecond || el > 3*time.Second {
		t.Fatalf("timed out after %s, want ~200ms", el)
	}
	if st := p.Stats(); st.WaitTimeouts != 1 || st.Waiting != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWaiterContextCanceled(t *testing.T) {
	p := newTestPool(t, testOptions(t, 1))
	sc := mustAcquire(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Acquire(ctx)
	if pe := poolError(t, err); pe.Code != "57014" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %+v", pe)
	}
	p.Release(sc, false)
	if st := p.Stats(); st.Waiting != 0 || st.Idle != 1 || st.Active != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestCanceledWaitersNeverLeak races short waiter deadlines against
// releases: every connection must end up back in the pool.
func TestCanceledWaitersNeverLeak(t *testing.T) {
	p := newTestPool(t, testOptions(t, 3))
	// Open all connections first: the short deadlines would cut dials.
	var held []*ServerConn
	for i := 0; i < 3; i++ {
		held = append(held, mustAcquire(t, p))
	}
	for _, sc := range held {
		p.Release(sc, false)
	}
	var wg sync.WaitGroup
	var served, canceled atomic.Int64
	for g := 0; g < 30; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(300))*time.Microsecond)
				sc, err := p.Acquire(ctx)
				cancel()
				if err != nil {
					if pe := poolError(t, err); pe.Code != "57014" {
						t.Errorf("unexpected error: %v", err)
					}
					canceled.Add(1)
					continue
				}
				served.Add(1)
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				p.Release(sc, false)
			}
		}()
	}
	wg.Wait()
	st := p.Stats()
	if st.Active != 0 || st.Waiting != 0 || st.Total != st.Idle || st.Total > 3 {
		t.Fatalf("after the race: %+v (served %d, canceled %d)", st, served.Load(), canceled.Load())
	}
	if canceled.Load() == 0 || served.Load() == 0 {
		t.Fatalf("race not exercised: served %d, canceled %d", served.Load(), canceled.Load())
	}
	// All connections are usable.
	held = held[:0]
	for i := 0; i < 3; i++ {
		sc := mustAcquire(t, p)
		if _, err := query(sc, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		held = append(held, sc)
	}
	for _, sc := range held {
		p.Release(sc, false)
	}
}

func TestManyClientsBoundedBackends(t *testing.T) {
	p := newTestPool(t, testOptions(t, 5))
	stop := make(chan struct{})
	var maxSeen atomic.Int64
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(backends(t)); n > maxSeen.Load() {
				maxSeen.Store(n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	var queries atomic.Int64
	for g := 0; g < 200; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				sc, err := p.Acquire(context.Background())
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				rows, err := query(sc, "SELECT pg_backend_pid()")
				if err != nil || len(rows) != 1 {
					t.Errorf("query: %v %v", rows, err)
					p.Discard(sc)
					return
				}
				queries.Add(1)
				p.Release(sc, false)
			}
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	if queries.Load() != 200*50 {
		t.Fatalf("ran %d queries, want %d", queries.Load(), 200*50)
	}
	if n := backends(t); n > 5 || maxSeen.Load() > 5 || maxSeen.Load() == 0 {
		t.Fatalf("backends now %d, max seen %d; want 1..5", n, maxSeen.Load())
	}
	st := p.Stats()
	if st.Total > 5 || st.Active != 0 || st.Dials > 5 {
		t.Fatalf("stats = %+v", st)
	}
	t.Logf("max backends seen %d, stats %+v", maxSeen.Load(), st)
}

func TestIdleTimeoutKeepsMinIdle(t *testing.T) {
	opts := testOptions(t, 4)
	opts.IdleTimeout = 200 * time.Millisecond
	p := newTestPool(t, opts)
	var held []*ServerConn
	for i := 0; i < 3; i++ {
		held = append(held, mustAcquire(t, p))
	}
	for _, sc := range held {
		p.Release(sc, false)
	}
	if n := backends(t); n != 3 {
		t.Fatalf("backends = %d, want 3", n)
	}
	opts.MinIdle = 1
	p.Reconfigure(opts)
	eventually(t, 5*time.Second, "idle conns closed down to min_idle", func() bool {
		return p.Stats().Idle == 1 && backends(t) == 1
	})
	// MinIdle also opens connections: close the last one and see it come back.
	p.Reconfigure(func() Options { o := opts; o.MinIdle = 2; return o }())
	eventually(t, 5*time.Second, "min_idle=2 reached", func() bool {
		return p.Stats().Idle == 2 && backends(t) == 2
	})
}

func TestLifetime(t *testing.T) {
	opts := testOptions(t, 2)
	opts.Lifetime = 300 * time.Millisecond
	p := newTestPool(t, opts)
	sc := mustAcquire(t, p)
	first := sc.PID
	p.Release(sc, false) // young: kept
	if st := p.Stats(); st.Idle != 1 {
		t.Fatalf("young conn not kept: %+v", st)
	}
	sc = mustAcquire(t, p)
	eventually(t, 5*time.Second, "conn older than lifetime", func() bool { return time.Since(sc.Created) > opts.Lifetime })
	p.Release(sc, false) // old: closed
	if st := p.Stats(); st.Idle != 0 || st.Total != 0 || st.Closed != 1 {
		t.Fatalf("old conn not closed on release: %+v", st)
	}
	sc = mustAcquire(t, p)
	if sc.PID == first {
		t.Fatal("got the expired connection again")
	}
	p.Release(sc, false)
	// Idle connections past their lifetime are closed by maintenance.
	eventually(t, 5*time.Second, "idle conn past lifetime closed", func() bool {
		return p.Stats().Total == 0 && backends(t) == 0
	})
}

func TestServerRestartDetectsDeadIdleConns(t *testing.T) {
	opts := testOptions(t, 3)
	opts.HealthCheckInterval = time.Hour // only the cheap liveness check
	p := newTestPool(t, opts)
	var held []*ServerConn
	for i := 0; i < 3; i++ {
		held = append(held, mustAcquire(t, p))
	}
	for _, sc := range held {
		p.Release(sc, false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.Shards[0].Primary.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	for i := 0; i < 3; i++ {
		sc, err := p.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire after restart: %v", err)
		}
		if rows, err := query(sc, "SELECT 1"); err != nil || rows[0] != "1" {
			t.Fatalf("query after restart: %v %v", rows, err)
		}
		held[i] = sc
	}
	for _, sc := range held {
		p.Release(sc, false)
	}
	if st := p.Stats(); st.HealthCheckFailures+st.Closed < 3 || st.Total != 3 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestHealthCheck(t *testing.T) {
	opts := testOptions(t, 1)
	opts.HealthCheckInterval = time.Millisecond
	p := newTestPool(t, opts)
	sc := mustAcquire(t, p)
	pid := sc.PID
	p.Release(sc, false)
	eventually(t, 5*time.Second, "health check interval passes", func() bool { return time.Since(sc.LastUsed) > 10*time.Millisecond })
	sc = mustAcquire(t, p) // healthy: checked with an empty query and reused
	if sc.PID != pid {
		t.Fatalf("healthy conn replaced")
	}
	p.Release(sc, false)
	// Kill the backend: the check must notice and dial a new one.
	superQuery(t, fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid))
	sc = mustAcquire(t, p)
	if sc.PID == pid {
		t.Fatalf("terminated conn handed out")
	}
	if _, err := query(sc, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	p.Release(sc, false)
	if st := p.Stats(); st.HealthCheckFailures != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestLoginErrorsKeepServerSQLSTATE(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(*Options)
		code    string
		message string
	}{
		{"bad password", func(o *Options) { o.Password = "wrong" }, "28P01", "password authentication failed"},
		{"bad database", func(o *Options) { o.Database = "nosuchdb" }, "3D000", "nosuchdb"},
		{"no server", func(o *Options) { o.Addr = "127.0.0.1:1"; o.ConnectRetries = 1 }, "08001", "cannot connect to server 127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := testOptions(t, 2)
			c.mod(&opts)
			p := newTestPool(t, opts)
			_, err := p.Acquire(context.Background())
			pe := poolError(t, err)
			if pe.Code != c.code || !strings.Contains(pe.Message, c.message) {
				t.Fatalf("error = %+v, want %s containing %q", pe, c.code, c.message)
			}
			st := p.Stats()
			if st.Total != 0 || st.Active != 0 {
				t.Fatalf("failed dial kept its slot: %+v", st)
			}
			wantDials := uint64(1)
			if c.code == "08001" {
				wantDials = 2 // network errors are retried
			}
			if st.Dials != wantDials {
				t.Fatalf("dials = %d, want %d", st.Dials, wantDials)
			}
		})
	}
}

func TestReconfigureGrowsAndShrinks(t *testing.T) {
	opts := testOptions(t, 1)
	p := newTestPool(t, opts)
	a := mustAcquire(t, p)
	got := make(chan *ServerConn, 1)
	go func() {
		sc, err := p.Acquire(context.Background())
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		got <- sc
	}()
	eventually(t, 5*time.Second, "waiter queued", func() bool { return p.Stats().Waiting == 1 })
	opts.Size = 3
	p.Reconfigure(opts)
	var b *ServerConn
	select {
	case b = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("growing the pool did not serve the waiter")
	}
	if b == nil || b.PID == a.PID {
		t.Fatal("waiter got no new connection")
	}
	c := mustAcquire(t, p)
	if st := p.Stats(); st.Total != 3 || st.Active != 3 {
		t.Fatalf("stats = %+v", st)
	}
	opts.Size = 1
	p.Reconfigure(opts)
	p.Release(a, false)
	p.Release(b, false)
	p.Release(c, false)
	if st := p.Stats(); st.Total != 1 || st.Idle != 1 {
		t.Fatalf("after shrink: %+v", st)
	}
	eventually(t, 5*time.Second, "server backends shrink to 1", func() bool { return backends(t) == 1 })
}

func TestCancelStopsQuery(t *testing.T) {
	p := newTestPool(t, testOptions(t, 1))
	sc := mustAcquire(t, p)
	sc.Frontend.SendQuery(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
	if err := sc.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pg_sleep running", func() bool {
		r := superQuery(t, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND query LIKE 'SELECT pg_sleep%%' AND state = 'active'", sc.PID))
		return r[0] == "1"
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sc.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	_ = sc.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var code string
	for {
		msg, err := sc.Frontend.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			code = e.Code
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	_ = sc.Conn.SetReadDeadline(time.Time{})
	if el := time.Since(start); code != "57014" || el > time.Second {
		t.Fatalf("cancel: code %q after %s, want 57014 within 1s", code, el)
	}
	p.Release(sc, false)
}

func TestResetOnRelease(t *testing.T) {
	opts := testOptions(t, 1)
	opts.ResetQuery = "DISCARD ALL"
	p := newTestPool(t, opts)
	sc := mustAcquire(t, p)
	if _, err := query(sc, "SET work_mem = '7MB'; PREPARE s1 AS SELECT 1"); err != nil {
		t.Fatal(err)
	}
	sc.Prepared.Add("s1")
	sc.Applied = map[string]string{"work_mem": "SET work_mem = '7MB'"}
	p.Release(sc, false) // no reset: state stays
	sc = mustAcquire(t, p)
	if rows, _ := query(sc, "SHOW work_mem"); rows[0] != "7MB" || sc.Prepared.Len() != 1 {
		t.Fatalf("state lost without reset: %v", rows)
	}
	p.Release(sc, true)
	sc = mustAcquire(t, p)
	defer p.Release(sc, false)
	if rows, _ := query(sc, "SHOW work_mem"); rows[0] == "7MB" {
		t.Fatalf("work_mem survived DISCARD ALL")
	}
	if rows, _ := query(sc, "SELECT count(*) FROM pg_prepared_statements"); rows[0] != "0" {
		t.Fatalf("prepared statements survived DISCARD ALL: %v", rows)
	}
	if sc.Prepared.Len() != 0 || len(sc.Applied) != 0 {
		t.Fatalf("Prepared/Applied not cleared: %d %v", sc.Prepared.Len(), sc.Applied)
	}
}

func TestBrokenAndDiscard(t *testing.T) {
	p := newTestPool(t, testOptions(t, 1))
	sc := mustAcquire(t, p)
	sc.MarkBroken()
	p.Release(sc, false)
	if st := p.Stats(); st.Total != 0 || st.Closed != 1 {
		t.Fatalf("broken conn kept: %+v", st)
	}
	sc = mustAcquire(t, p)
	p.Discard(sc)
	if st := p.Stats(); st.Total != 0 || st.Closed != 2 {
		t.Fatalf("discarded conn kept: %+v", st)
	}
	eventually(t, 5*time.Second, "server backends gone", func() bool { return backends(t) == 0 })
}

func TestCloseFailsWaitersAndLaterAcquires(t *testing.T) {
	opts := testOptions(t, 1)
	p := New(Key{User: opts.User, Database: opts.Database, Backend: opts.Addr}, opts)
	sc := mustAcquire(t, p)
	errc := make(chan error, 1)
	go func() {
		_, err := p.Acquire(context.Background())
		errc <- err
	}()
	eventually(t, 5*time.Second, "waiter queued", func() bool { return p.Stats().Waiting == 1 })
	p.Close()
	if pe := poolError(t, <-errc); pe.Code != "57P01" {
		t.Fatalf("waiter error = %+v", pe)
	}
	_, err := p.Acquire(context.Background())
	if pe := poolError(t, err); pe.Code != "57P01" {
		t.Fatalf("acquire after close = %+v", pe)
	}
	p.Release(sc, false) // closed, not pooled
	if st := p.Stats(); st.Total != 0 {
		t.Fatalf("stats = %+v", st)
	}
	eventually(t, 5*time.Second, "server backends gone", func() bool { return backends(t) == 0 })
}

func TestSet(t *testing.T) {
	s := NewSet(nil)
	defer s.Close()
	opts := testOptions(t, 2)
	k := Key{User: appUser, Database: "postgres", Backend: addr()}
	calls := 0
	mk := func() Options { calls++; return opts }
	p1, p2 := s.Get(k, mk), s.Get(k, mk)
	if p1 != p2 || calls != 1 {
		t.Fatalf("Get created %d pools", calls)
	}
	s.Get(Key{User: "other", Database: "postgres", Backend: addr()}, mk)
	n := 0
	s.Each(func(Key, *Pool) { n++ })
	if n != 2 {
		t.Fatalf("Each saw %d pools", n)
	}
	sc := mustAcquire(t, p1)
	p1.Release(sc, false)
	s.Close()
	if _, err := p1.Acquire(context.Background()); poolError(t, err).Code != "57P01" {
		t.Fatalf("pool usable after Set.Close: %v", err)
	}
}

// BenchmarkAcquireRelease measures the pool's own cost on idle
// connections: no queries, only the bookkeeping and the liveness check.
func BenchmarkAcquireRelease(b *testing.B) {
	opts := testOptions(b, 8)
	p := newTestPool(b, opts)
	var held []*ServerConn
	for i := 0; i < 8; i++ {
		held = append(held, mustAcquire(b, p))
	}
	for _, sc := range held {
		p.Release(sc, false)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sc, err := p.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release(sc, false)
		}
	})
}

// BenchmarkAcquireReleaseContended has more goroutines than connections,
// so most acquires queue and are handed a released connection.
func BenchmarkAcquireReleaseContended(b *testing.B) {
	opts := testOptions(b, 2)
	p := newTestPool(b, opts)
	a, c := mustAcquire(b, p), mustAcquire(b, p)
	p.Release(a, false)
	p.Release(c, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sc, err := p.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release(sc, false)
		}
	})
	b.StopTimer()
	st := p.Stats()
	b.ReportMetric(float64(st.Waits)/float64(st.Acquires), "waits/op")
}

// TestReleaseDuringCancelCloses: a connection released while a Cancel to
// it is still on its way is closed, not handed to the next caller, whose
// query the late signal could cancel. The cancel goes to a listener that
// accepts and holds the request (a postmaster slow to act on it: a timing
// a real server does not produce on demand).
func TestReleaseDuringCancelCloses(t *testing.T) {
	p := newTestPool(t, testOptions(t, 2))
	sc := mustAcquire(t, p)
	pid := sc.PID
	slow, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := slow.Accept(); err == nil {
			accepted <- c
		}
	}()
	sc.Addr = slow.Addr().String() // the connection is closed on Release: its address is not used again
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Cancel(ctx) }()
	held := <-accepted // the cancel is in flight until this closes
	p.Release(sc, false)
	sc2 := mustAcquire(t, p)
	if sc2.PID == pid {
		t.Fatalf("connection %d reused while a cancel to it was in flight", pid)
	}
	p.Release(sc2, false)
	held.Close()
	cancel()
	<-done
	// Without a cancel in flight the connection is reused as usual.
	sc3 := mustAcquire(t, p)
	pid3 := sc3.PID
	p.Release(sc3, false)
	if sc4 := mustAcquire(t, p); sc4.PID != pid3 {
		t.Fatalf("idle connection %d not reused (got %d)", pid3, sc4.PID)
	} else {
		p.Release(sc4, false)
	}
}

// TestCancelWhileClientLetGo: a client's cancel finds its server
// connection, and before the cancel is registered the client's query ends
// and the connection goes back to the pool (the race between a session's
// release and server.cancel). CancelWhile's check then sees that the
// client no longer holds it and sends nothing, and the released
// connection is not handed to the next caller while the cancel is
// registered. The release is made inside the check, the one point a real
// race can hit, which a real server cannot be made to time.
func TestCancelWhileClientLetGo(t *testing.T) {
	p := newTestPool(t, testOptions(t, 2))
	sc := mustAcquire(t, p)
	pid := sc.PID
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sc.Addr = ln.Addr().String()
	holding := true
	err = sc.CancelWhile(context.Background(), func() bool {
		p.Release(sc, false) // the client's transaction ended just now
		holding = false
		sc2 := mustAcquire(t, p) // the next client
		if sc2.PID == pid {
			t.Errorf("connection %d handed on while a cancel to it was registered", pid)
		}
		p.Release(sc2, false)
		return holding
	})
	if err != nil {
		t.Fatalf("CancelWhile: %v", err)
	}
	_ = ln.(*net.TCPListener).SetDeadline(time.Now())
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("a cancel was sent for a connection its client had let go")
	}
}
