package rebalance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/topology"
)

// Options configure a Controller. Store and Connect are required.
type Options struct {
	// Store is the topology; moves are recorded and advanced through it.
	Store topology.Store
	// Connect opens a connection to database on the PostgreSQL server at
	// addr ("host:port") with rights to create publications, subscriptions
	// and tables (a superuser, in practice).
	Connect func(ctx context.Context, addr, database string) (*pgx.Conn, error)
	// Conninfo is the libpq connection string a target server uses to reach
	// the source at addr (its subscription's CONNECTION).
	Conninfo func(addr, database string) string
	// Databases to move; empty = every database that accepts connections
	// on the source and holds a table of the distribution.
	Databases []string
	// HoldTimeout bounds the write hold of a cutover (default 2s); a move
	// may carry its own.
	HoldTimeout time.Duration
	// LagThreshold is the replication lag (bytes) under which a cutover
	// starts (default 1 MiB).
	LagThreshold int64
	// DeleteBatch rows are deleted from the source per statement after a
	// move, with DeletePause between statements (defaults 2000, 5ms).
	DeleteBatch int
	DeletePause time.Duration
	// MaxConcurrent moves run at once (default 1); moves in cutover,
	// cleanup or cancelling always run.
	MaxConcurrent int
	// MaxCutoverAttempts failed cutovers cancel a move (default 5).
	MaxCutoverAttempts int
	// AwaitObserved, if set, returns once every proxy routes with topology
	// version ≥ version (so all of them hold the writes of a cutover).
	// Nil: only this process's store is waited for, which is enough when
	// it is the only proxy.
	AwaitObserved func(ctx context.Context, version uint64) error
	// Poll is how often progress is checked (default 50ms).
	Poll       time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Conninfo is a libpq keyword/value connection string for a shard server
// at addr (host:port; a host that is an absolute path is the directory of
// the server's Unix-domain socket, as in libpq), database, user and
// password (omitted when empty), every value quoted.
func Conninfo(addr, database, user, password string) string {
	host, port := addr, "5432"
	if h, p, err := splitHostPort(addr); err == nil {
		host, port = h, p
	}
	s := "host=" + conninfoValue(host) + " port=" + conninfoValue(port) + " dbname=" + conninfoValue(database) + " user=" + conninfoValue(user)
	if password != "" {
		s += " password=" + conninfoValue(password)
	}
	return s
}

// Login returns Connect and Conninfo functions for user and password
// (password may be empty for trust authentication).
func Login(user, password string, connectTimeout time.Duration) (func(ctx context.Context, addr, database string) (*pgx.Conn, error), func(addr, database string) string) {
	if connectTimeout <= 0 {
		connectTimeout = 5 * time.Second
	}
	connect := func(ctx context.Context, addr, database string) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(Conninfo(addr, database, user, password) + " sslmode=prefer application_name=shardproxy-rebalance")
		if err != nil {
			return nil, err
		}
		cfg.ConnectTimeout = connectTimeout
		return pgx.ConnectConfig(ctx, cfg)
	}
	conninfo := func(addr, database string) string {
		return Conninfo(addr, database, user, password) + " application_name=shardproxy_move"
	}
	return connect, conninfo
}

// Controller runs the moves recorded in the topology. Run it on the Raft
// leader only (RunWhileLeader does that); its API methods (Plan, Start,
// Move, Cancel, Status) may be called from any goroutine.
type Controller struct {
	opts Options
	log  *slog.Logger
	met  *metrics

	// ending is held (write) while a move's EndMove is applied and its
	// progress marked finished, so Status never sees a move that has left
	// the topology but is not finished yet.
	ending   sync.RWMutex
	mu       sync.Mutex
	progress map[string]*Progress      // by move id: running and recently finished
	refs     map[string]*ReferenceSync // by shard: reference syncs running and finished
	running  map[string]bool           // move ids and refSyncKey(shard) of running workers
	wake     chan struct{}
}

// New checks opts and makes a Controller.
func New(opts Options) (*Controller, error) {
	if opts.Store == nil || opts.Connect == nil || opts.Conninfo == nil {
		return nil, errors.New("rebalance: Options.Store, Connect and Conninfo are required")
	}
	if opts.HoldTimeout <= 0 {
		opts.HoldTimeout = 2 * time.Second
	}
	if opts.LagThreshold <= 0 {
		opts.LagThreshold = 1 << 20
	}
	if opts.DeleteBatch <= 0 {
		opts.DeleteBatch = 2000
	}
	if opts.DeletePause <= 0 {
		opts.DeletePause = 5 * time.Millisecond
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 1
	}
	if opts.MaxCutoverAttempts <= 0 {
		opts.MaxCutoverAttempts = 5
	}
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{opts: opts, log: log, progress: map[string]*Progress{}, refs: map[string]*ReferenceSync{}, running: map[string]bool{}, wake: make(chan struct{}, 1)}
	m, err := newMetrics(opts.Registerer, c)
	if err != nil {
		return nil, err
	}
	c.met = m
	return c, nil
}

// RunWhileLeader runs the controller whenever leader reports true and stops
// it when it reports false, until ctx is done. leader is typically
// raftstore.Store.LeadershipChanges.
func (c *Controller) RunWhileLeader(ctx context.Context, leader <-chan bool) {
	var cancel context.CancelFunc
	done := make(chan struct{})
	close(done)
	for {
		select {
		case <-ctx.Done():
			if cancel != nil {
				cancel()
			}
			<-done
			return
		case l, ok := <-leader:
			if !ok {
				if cancel != nil {
					cancel()
				}
				<-done
				return
			}
			if l && cancel == nil {
				var runCtx context.Context
				runCtx, cancel = context.WithCancel(ctx)
				<-done
				done = make(chan struct{})
				go func(d chan struct{}) { defer close(d); c.Run(runCtx) }(done)
			} else if !l && cancel != nil {
				cancel()
				cancel = nil
			}
		}
	}
}

// Run drives every recorded move until ctx is done: it starts a worker per
// move (pending moves at most MaxConcurrent at a time) whenever the
// topology changes or a worker ends. Call it on the leader only.
func (c *Controller) Run(ctx context.Context) {
	watch := c.opts.Store.Watch(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Whatever an earlier leader's reference syncs left behind.
	wg.Add(1)
	go func() { defer wg.Done(); c.sweepReferenceReplication(ctx) }()
	for {
		c.startWorkers(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-watch:
			if !ok {
				return
			}
		case <-c.wake:
		case <-tick.C:
		}
	}
}

func (c *Controller) startWorkers(ctx context.Context, wg *sync.WaitGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	snap := c.opts.Store.Current()
	launch := func(key string, run func()) {
		c.running[key] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
			c.mu.Lock()
			delete(c.running, key)
			c.mu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}()
	}
	c.startReferenceSyncs(ctx, snap, launch)
	active := 0
	for key := range c.running {
		if !strings.HasPrefix(key, refSyncKey("")) {
			active++
		}
	}
	for _, m := range snap.Moves() {
		if c.running[m.ID] {
			continue
		}
		must := m.State == topology.MoveCutover || m.State == topology.MoveCleanup || m.State == topology.MoveCancelling
		if !must && active >= c.opts.MaxConcurrent {
			continue
		}
		active++
		if c.progress[m.ID] == nil {
			c.progress[m.ID] = &Progress{Move: m, Started: time.Now()}
		}
		w := &worker{c: c, id: m.ID}
		launch(m.ID, func() { w.run(ctx) })
	}
}

// Progress is what the controller knows about one move.
type Progress struct {
	Move        topology.Move `json:"move"`
	Phase       string        `json:"phase"` // the move's state, or done / cancelled when finished
	RowsTotal   int64         `json:"rows_total"`
	RowsCopied  int64         `json:"rows_copied"`
	RowsDeleted int64         `json:"rows_deleted"`
	LagBytes    int64         `json:"lag_bytes"`
	HoldMS      float64       `json:"hold_ms,omitempty"`
	Started     time.Time     `json:"started"`
	Finished    *time.Time    `json:"finished,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
	Warnings    []string      `json:"warnings,omitempty"`
}

func (c *Controller) update(id string, f func(p *Progress)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress[id]
	if p == nil {
		p = &Progress{Started: time.Now()}
		c.progress[id] = p
	}
	f(p)
}

func (c *Controller) setPhase(id string, m topology.Move) {
	c.update(id, func(p *Progress) { p.Move, p.Phase = m, string(m.State) })
}

func (c *Controller) noteError(id string, err error) {
	c.update(id, func(p *Progress) { p.LastError = err.Error() })
}

func (c *Controller) setTotal(id string, parts []dbPart) {
	var n int64
	for _, p := range parts {
		for _, v := range p.Total {
			n += v
		}
	}
	c.update(id, func(p *Progress) { p.RowsTotal = n })
}

func (c *Controller) setCopied(id string, n int64) {
	c.update(id, func(p *Progress) {
		n = min(n, p.RowsTotal)
		if n > p.RowsCopied {
			c.met.rowsCopied.Add(float64(n - p.RowsCopied))
			p.RowsCopied = n
		}
	})
}

func (c *Controller) setLag(id string, lag int64) {
	c.update(id, func(p *Progress) {
		p.LagBytes = lag
		if p.RowsCopied < p.RowsTotal {
			c.met.rowsCopied.Add(float64(p.RowsTotal - p.RowsCopied))
			p.RowsCopied = p.RowsTotal
		}
	})
}

func (c *Controller) setHold(id string, d time.Duration) {
	c.update(id, func(p *Progress) { p.HoldMS = float64(d.Microseconds()) / 1000 })
}

func (c *Controller) addDeleted(id string, n int64) {
	c.update(id, func(p *Progress) { p.RowsDeleted += n })
}

func (c *Controller) finish(id string, m topology.Move, outcome string) {
	c.met.finished.WithLabelValues(outcome).Inc()
	c.update(id, func(p *Progress) {
		now := time.Now()
		p.Move, p.Phase, p.Finished = m, outcome, &now
		p.LagBytes = 0
	})
	c.log.Info("move finished", "move", id, "outcome", outcome)
	// Keep the 50 most recent finished moves.
	c.mu.Lock()
	defer c.mu.Unlock()
	var done []string
	for k, p := range c.progress {
		if p.Finished != nil {
			done = append(done, k)
		}
	}
	if len(done) > 50 {
		sort.Slice(done, func(i, j int) bool { return c.progress[done[i]].Finished.Before(*c.progress[done[j]].Finished) })
		for _, k := range done[:len(done)-50] {
			delete(c.progress, k)
		}
	}
}

// Report is the admin API's answer about moves (GET
// /v1/rebalance/status): Status at a topology version.
type Report struct {
	Version uint64     `json:"version"`
	Time    time.Time  `json:"time"`
	Moves   []Progress `json:"moves"`
	// References are the reference syncs of shards added after the
	// reference tables existed, running and finished.
	References []ReferenceSync `json:"references,omitempty"`
}

// Report returns Status with the topology version and time it was taken.
func (c *Controller) Report() Report {
	r := Report{Version: c.opts.Store.Current().Version(), Time: time.Now().UTC(), Moves: c.Status(), References: c.ReferenceSyncs()}
	if r.Moves == nil {
		r.Moves = []Progress{}
	}
	return r
}

// Status lists the recorded moves with their progress, and recently
// finished ones, sorted by start.
func (c *Controller) Status() []Progress {
	c.ending.RLock()
	defer c.ending.RUnlock()
	snap := c.opts.Store.Current()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var out []Progress
	for _, m := range snap.Moves() {
		seen[m.ID] = true
		p := Progress{Move: m, Phase: string(m.State)}
		if q := c.progress[m.ID]; q != nil {
			p = *q
			p.Move, p.Phase = m, string(m.State)
		}
		out = append(out, p)
	}
	for id, p := range c.progress {
		if !seen[id] && p.Finished != nil {
			out = append(out, *p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].Move.ID < out[j].Move.ID
	})
	return out
}

// Cancel asks move id (or every move not yet flipped, when id is "") to
// roll back. A move that already flipped finishes its cleanup instead.
func (c *Controller) Cancel(ctx context.Context, id string) ([]string, error) {
	var cancelled []string
	for _, m := range c.opts.Store.Current().Moves() {
		if id != "" && m.ID != id {
			continue
		}
		switch m.State {
		case topology.MoveCleanup:
			if id != "" {
				return nil, &topology.Error{Kind: topology.ErrInvalid, Msg: fmt.Sprintf("move %s already flipped its ranges to %s; it is finishing its cleanup and cannot be cancelled", m.ID, m.To)}
			}
			continue
		case topology.MoveCancelling:
			cancelled = append(cancelled, m.ID)
			continue
		}
		if _, err := c.opts.Store.Apply(ctx, topology.SetMoveState{ID: m.ID, From: m.State, To: topology.MoveCancelling, Error: "cancelled by the operator"}); err != nil {
			return cancelled, err
		}
		cancelled = append(cancelled, m.ID)
	}
	if id != "" && len(cancelled) == 0 {
		return nil, &topology.Error{Kind: topology.ErrNotFound, Msg: fmt.Sprintf("move %q does not exist", id)}
	}
	return cancelled, nil
}
