package pool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Key identifies a pool: the server login and the backend ("host:port").
type Key struct{ User, Database, Backend string }

// String returns "user@database/backend".
func (k Key) String() string { return k.User + "@" + k.Database + "/" + k.Backend }

// Options configure one pool. Zero durations switch the matching feature
// off (no wait limit, no idle timeout, no lifetime, no health check).
type Options struct {
	Addr           string // host:port of the PostgreSQL server
	User, Database string // what to log in as on the server
	Password       string // "" for trust
	// Size is the most server connections the pool holds (open or being
	// dialed); < 1 means 1.
	Size int
	// MinIdle idle connections are kept open by the maintenance loop.
	MinIdle     int
	WaitTimeout time.Duration
	// IdleTimeout closes connections idle longer than this (keeping MinIdle).
	IdleTimeout time.Duration
	// Lifetime closes connections older than this when released or idle.
	Lifetime       time.Duration
	ConnectTimeout time.Duration
	// ConnectRetries is how many more attempts a failed connect gets
	// (network errors and "starting up" only, never auth errors).
	ConnectRetries int
	// HealthCheckInterval: an idle connection unused for longer is checked
	// with an empty query before it is handed out.
	HealthCheckInterval time.Duration
	// CheckTimeout bounds the health check and the reset query; 0 means 5s.
	CheckTimeout time.Duration
	// ResetQuery runs in Release when the caller asks for a reset
	// (session mode: "DISCARD ALL").
	ResetQuery string
	// RuntimeParams are startup parameters sent to the server.
	RuntimeParams map[string]string
	// MaxPrepared bounds ServerConn.Prepared; 0 means 1000.
	MaxPrepared int
	// Logger receives connection events; nil discards them. Only the
	// logger given to New is used (Reconfigure does not replace it).
	Logger *slog.Logger
}

func (o *Options) maxPrepared() int {
	if o.MaxPrepared > 0 {
		return o.MaxPrepared
	}
	return 1000
}

func (o *Options) checkTimeout() time.Duration {
	if o.CheckTimeout > 0 {
		return o.CheckTimeout
	}
	return 5 * time.Second
}

func normalize(o Options) Options {
	if o.Size < 1 {
		o.Size = 1
	}
	if o.MinIdle < 0 {
		o.MinIdle = 0
	}
	if o.MinIdle > o.Size {
		o.MinIdle = o.Size
	}
	if o.ConnectRetries < 0 {
		o.ConnectRetries = 0
	}
	if o.RuntimeParams != nil {
		rp := make(map[string]string, len(o.RuntimeParams))
		for k, v := range o.RuntimeParams {
			rp[k] = v
		}
		o.RuntimeParams = rp
	}
	return o
}

// Stats is a snapshot of a pool. Counters are cumulative since New.
type Stats struct {
	Active  int // held by callers (including connections being dialed for them)
	Idle    int // open and waiting in the pool
	Waiting int // callers queued for a connection
	Total   int // Active + Idle (+ slots the maintenance loop is dialing)
	// MaxWait is how long the oldest queued caller has been waiting.
	MaxWait time.Duration

	Acquires            uint64
	Waits               uint64        // acquires that had to queue
	WaitTime            time.Duration // total time queued callers waited until served
	WaitTimeouts        uint64
	Dials               uint64 // connection attempts
	DialErrors          uint64
	Closed              uint64 // connections closed by the pool
	HealthCheckFailures uint64 // idle connections found dead before use
}

// grant is what a queued caller receives: a connection, the right to dial
// one (a slot), or an error.
type grant struct {
	sc   *ServerConn
	slot bool
	err  error
}

type waiter struct {
	ch         chan grant // buffered(1); exactly one grant per enqueue at most
	prev, next *waiter
	queued     bool
	since      time.Time
	timer      *time.Timer // reused across waits; stopped when the waiter is pooled
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan grant, 1)} }}

// Pool is a bounded set of server connections for one Key. Safe for
// concurrent use.
//
// Invariants (under mu): total = active + len(idle) + slots being dialed by
// the maintenance loop; total <= Size except right after a shrink; a queued
// waiter exists only when no idle connection and no free slot exist.
type Pool struct {
	key    Key
	logger *slog.Logger

	mu     sync.Mutex
	opts   Options
	idle   []*ServerConn // LIFO: the top was used most recently
	wq     waiter        // sentinel of the FIFO wait queue
	nwait  int
	total  int
	active int
	closed bool

	acquires, waits, waitTimeouts, closedConns uint64
	waitTime                                   time.Duration

	dials, dialErrors, hcFailures atomic.Uint64

	live sync.Map // *ServerConn → struct{}: every open connection, for Conns

	ctx    context.Context // cancelled by Close; bounds background dials
	cancel context.CancelFunc
	kick   chan struct{}
	wg     sync.WaitGroup

	minIdleFailing bool // maintenance goroutine only: log dial failures once
}

// New creates a pool and starts its maintenance goroutine (stopped by
// Close). It does not connect until MinIdle or the first Acquire asks.
func New(key Key, opts Options) *Pool {
	opts = normalize(opts)
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		key:    key,
		logger: lg.With("user", key.User, "database", key.Database, "backend", key.Backend),
		opts:   opts,
		kick:   make(chan struct{}, 1),
	}
	p.wq.next, p.wq.prev = &p.wq, &p.wq
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.maintain()
	return p
}

// Key returns the pool's key.
func (p *Pool) Key() Key { return p.key }

// Options returns the current options.
func (p *Pool) Options() Options {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts
}

// Acquire returns a connection for the caller's exclusive use: an idle one
// (most recently used first, after a liveness check and, if it sat unused
// longer than HealthCheckInterval, an empty query), or a new one while the
// pool is below Size, or else the first one released after the callers
// already queued (FIFO). It gives up when ctx ends (57014) or WaitTimeout
// passes (53300 "pool exhausted"). Dial failures are 08001 naming the
// server; server-side login errors keep the server's SQLSTATE (28P01,
// 3D000, ...). All errors are *Error. The caller must Release or Discard
// the connection exactly once.
func (p *Pool) Acquire(ctx context.Context) (*ServerConn, error) {
	p.mu.Lock()
	p.acquires++
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, p.closedError()
		}
		if n := len(p.idle); n > 0 {
			sc := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			sc.inPool = false
			p.active++
			interval, timeout := p.opts.HealthCheckInterval, p.opts.checkTimeout()
			p.mu.Unlock()
			if p.usable(sc, interval, timeout) {
				return sc, nil
			}
			sc.close()
			p.mu.Lock()
			p.active--
			p.total--
			p.closedConns++
			continue
		}
		if p.total < p.opts.Size {
			p.total++
			p.active++
			opts := p.opts
			p.mu.Unlock()
			return p.dialSlot(ctx, &opts)
		}
		return p.wait(ctx) // unlocks
	}
}

// usable checks a connection taken from idle before handing it out.
func (p *Pool) usable(sc *ServerConn, interval, timeout time.Duration) bool {
	if !sc.alive() {
		p.hcFailures.Add(1)
		p.logger.Debug("idle server connection closed by the server", "pid", sc.PID)
		return false
	}
	if interval > 0 && time.Since(sc.LastUsed) > interval {
		if err := sc.simpleQuery(";", timeout); err != nil {
			p.hcFailures.Add(1)
			p.logger.Info("health check of idle server connection failed", "pid", sc.PID, "err", err)
			return false
		}
	}
	return true
}

// dialSlot dials a connection for a slot the caller already holds (counted
// in total and active) and gives the slot back on failure.
func (p *Pool) dialSlot(ctx context.Context, opts *Options) (*ServerConn, error) {
	sc, err := p.dial(ctx, opts)
	if err != nil {
		p.logger.Warn("cannot open server connection", "err", err)
		p.mu.Lock()
		p.active--
		p.freeSlotLocked()
		p.mu.Unlock()
		return nil, err
	}
	return sc, nil
}

// wait queues the caller. Called with mu held; returns with it released.
func (p *Pool) wait(ctx context.Context) (*ServerConn, error) {
	timeout := p.opts.WaitTimeout
	w := waiterPool.Get().(*waiter)
	w.since = time.Now()
	p.enqueueLocked(w)
	p.waits++
	p.mu.Unlock()

	var tc <-chan time.Time
	if timeout > 0 {
		if w.timer == nil {
			w.timer = time.NewTimer(timeout)
		} else {
			w.timer.Reset(timeout) // Go ≥ 1.23: no stale tick after Stop
		}
		tc = w.timer.C
	}
	var g grant
	timedOut, cancelled := false, false
	select {
	case g = <-w.ch:
	case <-tc:
		timedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	if timedOut || cancelled {
		p.mu.Lock()
		if w.queued {
			p.removeLocked(w)
			var err error
			if timedOut {
				p.waitTimeouts++
				err = p.exhaustedError(timeout)
			} else {
				err = &Error{Code: CodeQueryCanceled,
					Message: "canceled while waiting for a server connection", cause: ctx.Err()}
			}
			p.mu.Unlock()
			waiterPool.Put(w)
			return nil, err
		}
		p.mu.Unlock()
		// A grant was sent concurrently with the timeout; it is (or will
		// be at once) in the buffered channel.
		g = <-w.ch
		if cancelled {
			waiterPool.Put(w)
			switch {
			case g.sc != nil:
				p.Release(g.sc, false)
			case g.slot:
				p.mu.Lock()
				p.active--
				p.freeSlotLocked()
				p.mu.Unlock()
			}
			return nil, &Error{Code: CodeQueryCanceled,
				Message: "canceled while waiting for a server connection", cause: ctx.Err()}
		}
		// Timed out at the moment a connection arrived: use it.
	}
	waiterPool.Put(w)
	switch {
	case g.err != nil:
		return nil, g.err
	case g.sc != nil:
		return g.sc, nil
	default: // slot
		p.mu.Lock()
		opts := p.opts
		p.mu.Unlock()
		return p.dialSlot(ctx, &opts)
	}
}

// Release returns a connection the caller got from Acquire. The connection
// must be idle on the server (last ReadyForQuery 'I') unless MarkBroken was
// called. With resetQuery it first runs Options.ResetQuery and clears
// Prepared and Applied. Broken connections, connections with a Cancel in
// flight, connections older than Lifetime, and any when the pool is closed
// or above Size are closed
// instead; otherwise the connection goes to the first queued caller or
// back to the idle set. Releasing a connection twice panics.
func (p *Pool) Release(sc *ServerConn, resetQuery bool) {
	if sc.broken.Load() || sc.canceling.Load() > 0 {
		p.Discard(sc) // a cancel on its way could hit the next holder's query
		return
	}
	if resetQuery {
		p.mu.Lock()
		q, timeout := p.opts.ResetQuery, p.opts.checkTimeout()
		p.mu.Unlock()
		if q != "" {
			if err := sc.simpleQuery(q, timeout); err != nil {
				p.logger.Info("reset query failed; closing server connection", "query", q, "pid", sc.PID, "err", err)
				p.Discard(sc)
				return
			}
		}
		sc.Prepared.Clear()
		sc.Applied, sc.AppliedKey = nil, ""
	}
	if verifyPrepared.Load() {
		p.verifyStmtCache(sc)
		if sc.broken.Load() {
			p.Discard(sc)
			return
		}
	}
	now := time.Now()
	sc.LastUsed = now
	p.mu.Lock()
	if sc.inPool {
		p.mu.Unlock()
		panic("pool: ServerConn released twice")
	}
	p.active--
	if p.closed || p.total > p.opts.Size || (p.opts.Lifetime > 0 && now.Sub(sc.Created) > p.opts.Lifetime) {
		p.closedConns++
		p.freeSlotLocked()
		p.mu.Unlock()
		sc.close()
		return
	}
	p.putLocked(sc, now)
	p.mu.Unlock()
}

// Discard closes a connection the caller got from Acquire (its protocol
// state is unknown) and frees its slot for the next caller.
func (p *Pool) Discard(sc *ServerConn) {
	sc.close()
	p.mu.Lock()
	if sc.inPool {
		p.mu.Unlock()
		panic("pool: ServerConn discarded after release")
	}
	p.active--
	p.closedConns++
	p.freeSlotLocked()
	p.mu.Unlock()
}

// putLocked hands an open connection (counted in total, not in active) to
// the first waiter or to the idle set.
func (p *Pool) putLocked(sc *ServerConn, now time.Time) {
	if w := p.dequeueLocked(); w != nil {
		p.active++
		p.waitTime += now.Sub(w.since)
		w.ch <- grant{sc: sc}
		return
	}
	sc.inPool = true
	p.idle = append(p.idle, sc)
}

// freeSlotLocked gives up a slot (counted in total, not in active): to the
// first waiter, who will dial, or back to the pool.
func (p *Pool) freeSlotLocked() {
	if !p.closed && p.total <= p.opts.Size {
		if w := p.dequeueLocked(); w != nil {
			p.active++
			p.waitTime += time.Since(w.since)
			w.ch <- grant{slot: true}
			return
		}
	}
	p.total--
}

func (p *Pool) enqueueLocked(w *waiter) {
	w.queued = true
	w.next = &p.wq
	w.prev = p.wq.prev
	p.wq.prev.next = w
	p.wq.prev = w
	p.nwait++
}

func (p *Pool) removeLocked(w *waiter) {
	w.prev.next = w.next
	w.next.prev = w.prev
	w.prev, w.next = nil, nil
	w.queued = false
	p.nwait--
}

func (p *Pool) dequeueLocked() *waiter {
	w := p.wq.next
	if w == &p.wq {
		return nil
	}
	p.removeLocked(w)
	return w
}

// Stats returns a snapshot of the pool.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	s := Stats{
		Active:       p.active,
		Idle:         len(p.idle),
		Waiting:      p.nwait,
		Total:        p.total,
		Acquires:     p.acquires,
		Waits:        p.waits,
		WaitTime:     p.waitTime,
		WaitTimeouts: p.waitTimeouts,
		Closed:       p.closedConns,
	}
	if p.wq.next != &p.wq {
		s.MaxWait = time.Since(p.wq.next.since)
	}
	p.mu.Unlock()
	s.Dials = p.dials.Load()
	s.DialErrors = p.dialErrors.Load()
	s.HealthCheckFailures = p.hcFailures.Load()
	return s
}

// Reconfigure applies new options (SIGHUP) without dropping connections:
// a larger Size serves queued callers at once; a smaller one closes idle
// connections now and busy ones as they are released. New server address
// or credentials apply to connections dialed from now on.
func (p *Pool) Reconfigure(opts Options) {
	opts = normalize(opts)
	p.mu.Lock()
	p.opts = opts
	for p.total < p.opts.Size && !p.closed {
		w := p.dequeueLocked()
		if w == nil {
			break
		}
		p.total++
		p.active++
		p.waitTime += time.Since(w.since)
		w.ch <- grant{slot: true}
	}
	var toClose []*ServerConn
	for p.total > p.opts.Size && len(p.idle) > 0 {
		toClose = append(toClose, p.popOldestLocked())
	}
	p.mu.Unlock()
	for _, sc := range toClose {
		sc.close()
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// popOldestLocked removes the least recently used idle connection and its
// slot.
func (p *Pool) popOldestLocked() *ServerConn {
	sc := p.idle[0]
	copy(p.idle, p.idle[1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	sc.inPool = false
	p.total--
	p.closedConns++
	return sc
}

// Close closes idle connections now, fails queued callers, stops the
// maintenance goroutine and makes Release close busy connections. Acquire
// on a closed pool fails with 57P01. Close is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.total -= len(idle)
	p.closedConns += uint64(len(idle))
	for w := p.dequeueLocked(); w != nil; w = p.dequeueLocked() {
		w.ch <- grant{err: p.closedError()}
	}
	p.mu.Unlock()
	for _, sc := range idle {
		sc.inPool = false
		sc.close()
	}
	p.cancel()
	p.wg.Wait()
}

func (p *Pool) closedError() *Error {
	return &Error{Code: CodeAdminShutdown, Severity: "FATAL",
		Message: fmt.Sprintf("server pool for user=%s database=%s backend=%s is closed", p.key.User, p.key.Database, p.key.Backend),
		Hint:    "The proxy is shutting down or the pool was removed by a configuration reload; reconnect."}
}

// exhaustedError is the wait-timeout error. Called with mu held.
func (p *Pool) exhaustedError(timeout time.Duration) *Error {
	return &Error{
		Code: CodeTooManyConnections,
		Message: fmt.Sprintf("pool exhausted: no server connection for user=%s database=%s backend=%s became free within %s (pool.size=%d)",
			p.key.User, p.key.Database, p.key.Backend, timeout, p.opts.Size),
		Detail: fmt.Sprintf("%d server connections are in use by other clients and %d more clients are waiting.", p.active, p.nwait),
		Hint:   "The server is reachable but every pooled connection is busy: raise pool.size (or the user's pool_size) or pool.wait_timeout, or make transactions shorter.",
	}
}

// maintain runs until Close: it drops dead, expired and long-idle
// connections and opens connections up to MinIdle.
func (p *Pool) maintain() {
	defer p.wg.Done()
	t := time.NewTimer(p.tickInterval())
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-t.C:
		}
		p.maintainOnce()
		t.Reset(p.tickInterval())
	}
}

func (p *Pool) tickInterval() time.Duration {
	p.mu.Lock()
	d := time.Second
	if it := p.opts.IdleTimeout / 2; it > 0 && it < d {
		d = it
	}
	if lt := p.opts.Lifetime / 2; lt > 0 && lt < d {
		d = lt
	}
	p.mu.Unlock()
	return max(d, 20*time.Millisecond)
}

func (p *Pool) maintainOnce() {
	now := time.Now()
	var toClose []*ServerConn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	o := &p.opts
	keep := p.idle[:0]
	for _, sc := range p.idle {
		if !sc.alive() || (o.Lifetime > 0 && now.Sub(sc.Created) > o.Lifetime) {
			sc.inPool = false
			p.total--
			p.closedConns++
			toClose = append(toClose, sc)
			continue
		}
		keep = append(keep, sc)
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	for len(p.idle) > o.MinIdle && o.IdleTimeout > 0 && now.Sub(p.idle[0].LastUsed) > o.IdleTimeout {
		toClose = append(toClose, p.popOldestLocked())
	}
	for p.total > o.Size && len(p.idle) > 0 {
		toClose = append(toClose, p.popOldestLocked())
	}
	need := min(o.MinIdle-len(p.idle), o.Size-p.total)
	if need < 0 {
		need = 0
	}
	p.total += need
	opts := p.opts
	p.mu.Unlock()

	for _, sc := range toClose {
		sc.close()
	}
	if len(toClose) > 0 {
		p.logger.Debug("closed idle server connections", "count", len(toClose))
	}
	for i := 0; i < need; i++ {
		sc, err := p.dial(p.ctx, &opts)
		p.mu.Lock()
		if err != nil {
			for j := i; j < need; j++ {
				p.freeSlotLocked()
			}
			p.mu.Unlock()
			if p.ctx.Err() == nil && !p.minIdleFailing {
				p.logger.Warn("cannot open min_idle server connections; retrying every tick", "err", err)
			}
			p.minIdleFailing = true
			return
		}
		if p.minIdleFailing {
			p.logger.Info("min_idle server connections open again")
			p.minIdleFailing = false
		}
		if p.closed {
			p.total--
			p.mu.Unlock()
			sc.close()
			continue
		}
		p.putLocked(sc, time.Now())
		p.mu.Unlock()
	}
}
