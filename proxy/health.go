package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/topology"
)

// Health checks of every primary and replica in the topology.
//
// The healthMonitor runs one goroutine per server address (a checker). A
// checker keeps one connection of the proxy's own (adminConnect) and every
// check_interval asks the server whether it is in recovery, its WAL
// position (pg_current_wal_lsn on a primary, the replay and receive
// positions on a replica) and the age of the last replayed transaction. A
// failed check marks the server down at once and the checker backs off
// (doubling up to replicas.max_backoff); the first successful check puts
// it back. The data path reads the results lock-free (backendHealth
// atomics) and may mark a server down itself when connecting to it fails.
//
// The monitor follows topology changes: checkers start for new addresses
// and stop for addresses no longer in the topology. It never writes to
// any server.

// backendHealth is what the last checks found about one server. Written by
// its checker (and markDown); read by sessions.
type backendHealth struct {
	addr       string
	up         atomic.Bool
	inRecovery atomic.Bool
	lsn        atomic.Uint64 // primary: pg_current_wal_insert_lsn (covers asynchronous commits); replica: pg_last_wal_replay_lsn
	receiveLSN atomic.Uint64 // replica: pg_last_wal_receive_lsn
	replayAge  atomic.Int64  // replica: nanoseconds since the last replayed commit (0 if unknown)
	sample     atomic.Pointer[lsnSample]
	downSince  atomic.Int64 // UnixNano of the first failed check of the current outage; 0 when up
	reads      atomic.Uint64
	lastError  atomic.Pointer[string]

	wake   chan struct{} // ask the checker for a check now
	cancel context.CancelFunc
}

// lsnSample is a primary's WAL position and when the query that read it
// was sent: every transaction that committed before start is at or below
// lsn.
type lsnSample struct {
	start time.Time
	lsn   uint64
}

// healthMonitor owns the checkers.
type healthMonitor struct {
	s  *Server
	mu sync.Mutex
	by map[string]*backendHealth // address → health (only while in the topology)
	// snap is the topology the checkers were last aligned with.
	snap *topology.Snapshot
	// rr is the round-robin counter per shard.
	rr sync.Map // shard → *atomic.Uint64
	// sessions numbers the sessions that made a read decision under
	// balance: sticky.
	sessions atomic.Uint64
	// failover is the automatic failover watcher.
	failover failoverState
}

func newHealthMonitor(s *Server) *healthMonitor {
	return &healthMonitor{s: s, by: make(map[string]*backendHealth)}
}

// get returns the health record of addr, nil when it is not monitored.
func (m *healthMonitor) get(addr string) *backendHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.by[addr]
}

// run aligns the checkers with the topology until ctx ends.
func (m *healthMonitor) run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		m.align(ctx)
		m.failover.check(ctx, m)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for addr, b := range m.by {
				b.cancel()
				delete(m.by, addr)
			}
			m.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// align starts checkers for new addresses and stops those for addresses
// that left the topology.
func (m *healthMonitor) align(ctx context.Context) {
	snap := m.s.topo.Current()
	m.mu.Lock()
	defer m.mu.Unlock()
	if snap == m.snap {
		return
	}
	m.snap = snap
	want := map[string]bool{}
	for _, sh := range snap.Shards() {
		want[sh.Primary] = true
		for _, r := range sh.Replicas {
			want[r] = true
		}
	}
	for addr, b := range m.by {
		if !want[addr] {
			b.cancel()
			delete(m.by, addr)
			go m.closePools(addr) // not under m.mu: closing may wait for the network
		}
	}
	for addr := range want {
		if _, ok := m.by[addr]; ok {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		b := &backendHealth{addr: addr, wake: make(chan struct{}, 1), cancel: cancel}
		m.by[addr] = b
		go m.check(cctx, b)
	}
}

// closePools closes the proxy's pools to a server that left the topology
// (a failed-over primary, a removed replica): no new work goes there, and
// busy connections close when their sessions release them.
func (m *healthMonitor) closePools(addr string) {
	m.s.pools.Each(func(k pool.Key, p *pool.Pool) {
		if k.Backend == addr {
			m.s.pools.Remove(k)
		}
	})
	m.s.log.Info("server left the topology; closed its pools", "server", addr)
}

// check is the checker goroutine of one server.
func (m *healthMonitor) check(ctx context.Context, b *backendHealth) {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	failures := 0
	for {
		cfg := m.s.config().Replicas
		err := m.checkOnce(ctx, b, &conn, cfg.CheckTimeout.D())
		if ctx.Err() != nil {
			return
		}
		wait := cfg.CheckInterval.D()
		if err != nil {
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			failures++
			msg := err.Error()
			b.lastError.Store(&msg)
			if b.up.Swap(false) || b.downSince.Load() == 0 {
				b.downSince.CompareAndSwap(0, time.Now().UnixNano())
				m.s.log.Warn("server failed its health check; no traffic until it recovers", "server", b.addr, "err", err)
			}
			for i := 1; i < failures && wait < cfg.MaxBackoff.D(); i++ {
				wait *= 2
			}
			wait = min(wait, cfg.MaxBackoff.D())
		} else {
			if failures > 0 {
				m.s.log.Info("server passed its health check again", "server", b.addr)
			}
			failures = 0
			b.downSince.Store(0)
			b.up.Store(true)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-b.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

const healthQuery = `SELECT pg_is_in_recovery(),
	CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END::text,
	COALESCE(pg_last_wal_receive_lsn()::text, ''),
	COALESCE((EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000000)::bigint, 0)`

// checkOnce runs one health check on *conn (connecting first if needed).
func (m *healthMonitor) checkOnce(ctx context.Context, b *backendHealth, conn **pgconn.PgConn, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if *conn == nil {
		c, err := m.s.adminConnect(cctx, b.addr, "postgres")
		if err != nil {
			return err
		}
		*conn = c
	}
	start := time.Now()
	res, err := (*conn).Exec(cctx, healthQuery).ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 4 {
		return fmt.Errorf("unexpected health check answer")
	}
	row := res[0].Rows[0]
	rec := string(row[0]) == "t"
	lsn, err := parseLSN(string(row[1]))
	if err != nil {
		return err
	}
	b.inRecovery.Store(rec)
	b.lsn.Store(lsn)
	if rec {
		recv, _ := parseLSN(string(row[2]))
		b.receiveLSN.Store(recv)
		us, _ := strconv.ParseInt(string(row[3]), 10, 64)
		b.replayAge.Store(us * 1000)
	} else {
		b.receiveLSN.Store(lsn)
		b.replayAge.Store(0)
		b.sample.Store(&lsnSample{start: start, lsn: lsn})
	}
	return nil
}

// markDown takes a server out of rotation after the data path failed to
// reach it; its checker puts it back after a successful check.
func (m *healthMonitor) markDown(addr string, err error) {
	b := m.get(addr)
	if b == nil {
		return
	}
	if b.up.Swap(false) {
		b.downSince.CompareAndSwap(0, time.Now().UnixNano())
		m.s.log.Warn("server unreachable; taken out of rotation", "server", addr, "err", err)
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// kick asks addr's checker for a check now (a fresh WAL position sample).
func (m *healthMonitor) kick(addr string) {
	if b := m.get(addr); b != nil {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// parseLSN parses PostgreSQL's "X/Y" WAL position text.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	return h<<32 | l, nil
}

// formatLSN is the inverse of parseLSN.
func formatLSN(v uint64) string { return fmt.Sprintf("%X/%X", v>>32, uint32(v)) }

// FailoverFunc promotes a replica of shard whose primary (the address the
// watcher saw down) is unreachable. cmd wires it to the admin API's
// AutoFailover, which acts only on the Raft leader and only while primary
// is still the shard's primary.
type FailoverFunc func(ctx context.Context, shard, primary string) error

// failoverState runs automatic failover (replicas.failover_timeout > 0):
// when a shard's primary has failed every check for that long, fn is
// called for the shard, at most once per timeout period.
type failoverState struct {
	fn      atomic.Pointer[FailoverFunc]
	running atomic.Bool
	last    sync.Map // shard → time.Time of the last attempt
}

// SetFailoverFunc installs the function automatic failover calls.
func (s *Server) SetFailoverFunc(fn FailoverFunc) { s.health.failover.fn.Store(&fn) }

// Topology returns the store the server routes by (Deps.Topology, or the
// static store built from the config), for wiring an admin API to it.
func (s *Server) Topology() topology.Store { return s.topo }

func (f *failoverState) check(ctx context.Context, m *healthMonitor) {
	timeout := m.s.config().Replicas.FailoverTimeout.D()
	fn := f.fn.Load()
	if timeout <= 0 || fn == nil || f.running.Load() {
		return
	}
	snap := m.s.topo.Current()
	for _, sh := range snap.Shards() {
		b := m.get(sh.Primary)
		if b == nil || len(sh.Replicas) == 0 {
			continue
		}
		since := b.downSince.Load()
		if since == 0 || time.Since(time.Unix(0, since)) < timeout {
			continue
		}
		if last, ok := f.last.Load(sh.Name); ok && time.Since(last.(time.Time)) < timeout {
			continue
		}
		f.last.Store(sh.Name, time.Now())
		f.running.Store(true)
		shard := sh.Name
		go func() {
			defer f.running.Store(false)
			m.s.log.Warn("primary unreachable for failover_timeout; failing over", "shard", shard, "primary", b.addr, "timeout", timeout)
			if err := (*fn)(ctx, shard, b.addr); err != nil {
				m.s.log.Error("automatic failover failed", "shard", shard, "err", err)
			}
		}()
		return
	}
}
