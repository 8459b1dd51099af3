package proxy

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/topology"
)

// Metrics of the data path. Every label has a bounded set of values:
// shard names and endpoint roles come from the topology, route kinds and
// states are fixed words, SQLSTATE classes are two characters. No SQL
// text, user, database or client address is ever a label.
//
//	shardproxy_clients_active                    gauge      client connections open
//	shardproxy_clients_waiting                   gauge      clients waiting for a server connection
//	shardproxy_pinned_sessions                   gauge      clients pinned to a server connection
//	shardproxy_pins_total                        counter
//	shardproxy_queries_total                     counter    requests answered (simple queries, syncs)
//	shardproxy_query_duration_seconds{kind,shard} histogram request → ReadyForQuery; kind single|multi|broadcast|session, shard "*" unless single
//	shardproxy_errors_total{class}               counter    ErrorResponses sent, by SQLSTATE class ("42", "23", "08", …)
//	shardproxy_server_connections{shard,role,state} gauge   server connections (state active|idle|connecting)
//	shardproxy_pool_waiting_clients{shard,role}  gauge      callers queued in pools
//	shardproxy_pool_wait_seconds{shard,role}     histogram  time to get a server connection from a pool
//	shardproxy_pool_wait_timeouts_total{shard,role} counter pool waits that ended in 53300
//	shardproxy_parse_cache_hits_total            counter    planner analyses served from the cache
//	shardproxy_parse_cache_misses_total          counter    planner analyses that parsed
//	shardproxy_parse_cache_entries               gauge
//	shardproxy_replica_up{shard,replica}         gauge      1 while the health monitor finds the replica reachable
//	shardproxy_replica_lag_seconds{shard,replica} gauge     age of the last transaction the replica replayed (health.go)
//	shardproxy_replica_lag_bytes{shard,replica}  gauge      primary WAL position minus the replica's replay position
//	shardproxy_paused                            gauge      1 while the admin console's PAUSE holds queries
//
// Role is primary, replica or "unknown" (an address no longer in the
// topology). All fields are usable when no Registerer was given (they are
// then simply not exported).
type metrics struct {
	clientsActive  prometheus.Gauge
	clientsWaiting prometheus.Gauge
	pinned         prometheus.Gauge
	pinsTotal      prometheus.Counter
	queries        prometheus.Counter
	queryDuration  *prometheus.HistogramVec
	errors         *prometheus.CounterVec
	poolWait       *prometheus.HistogramVec

	// lastRoute and lastPoolWait are the observers the last session to
	// miss its own cache looked up. A client that connects for each
	// request misses every time, and nearly always for the same database,
	// route and backend as the one before: then it costs no label hashing.
	lastRoute    atomic.Pointer[sharedRouteObserver]
	lastPoolWait atomic.Pointer[poolWaitObserver]
}

// Route kinds of shardproxy_query_duration_seconds.
const (
	routeSingle    = "single"    // one shard
	routeMulti     = "multi"     // several shards, results merged or summed (scatter, split insert, COPY split)
	routeBroadcast = "broadcast" // every shard (reference writes, DDL)
	routeSession   = "session"   // transaction control and settings
	routeAnyShard  = "*"         // shard label of requests that are not single-shard
)

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		clientsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardproxy_clients_active", Help: "Client connections currently open."}),
		clientsWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardproxy_clients_waiting", Help: "Clients waiting for a server connection."}),
		pinned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardproxy_pinned_sessions", Help: "Transaction-mode clients pinned to a server connection (LISTEN, advisory locks, temp tables, WITH HOLD cursors)."}),
		pinsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardproxy_pins_total", Help: "Times a client was pinned to its server connection."}),
		queries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardproxy_queries_total", Help: "Client requests (simple queries and extended-protocol syncs) served."}),
		queryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shardproxy_query_duration_seconds", Help: "Time from a client request to its ReadyForQuery, by route kind (single, multi, broadcast, session) and shard (\"*\" unless single).",
			Buckets: latencyBuckets}, []string{"kind", "shard"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardproxy_errors_total", Help: "ErrorResponses sent to clients, by SQLSTATE class (first two characters)."}, []string{"class"}),
		poolWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shardproxy_pool_wait_seconds", Help: "Time a client waited for a server connection (including connecting a new one), by shard and role.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30}}, []string{"shard", "role"}),
	}
	if reg == nil {
		return m, nil
	}
	hits := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "shardproxy_parse_cache_hits_total", Help: "Statement analyses answered from the planner's cache (keyed by SQL text)."},
		func() float64 { h, _ := s.planner.CacheStats(); return float64(h) })
	misses := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "shardproxy_parse_cache_misses_total", Help: "Statement analyses that had to parse the SQL text."},
		func() float64 { _, mi := s.planner.CacheStats(); return float64(mi) })
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shardproxy_parse_cache_entries", Help: "Analyses held in the planner's cache."},
		func() float64 { return float64(s.planner.CacheLen()) })
	paused := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shardproxy_paused", Help: "1 while the admin console's PAUSE holds new queries (also while it waits for transactions to end)."},
		func() float64 {
			if s.console.gate.engaged() {
				return 1
			}
			return 0
		})
	autoRuns := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "shardproxy_auto_prepared_total", Help: "Simple queries run as server-side prepared statements (pool.auto_prepare)."},
		func() float64 { return float64(s.autoShapes.runs.Load()) })
	autoRetries := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "shardproxy_auto_prepare_retries_total", Help: "Auto-prepared simple queries sent again as written after an error before they ran."},
		func() float64 { return float64(s.autoShapes.retries.Load()) })
	autoPrepared := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shardproxy_auto_prepare_shapes", Help: "Distinct simple-query shapes that run as prepared statements."},
		func() float64 { return float64(s.autoShapes.prepared.Load()) })
	for _, c := range []prometheus.Collector{m.clientsActive, m.clientsWaiting, m.pinned, m.pinsTotal,
		m.queries, m.queryDuration, m.errors, m.poolWait, hits, misses, entries, paused, autoRuns, autoRetries, autoPrepared,
		&poolCollector{s: s}, &replicaCollector{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// countError counts one ErrorResponse with SQLSTATE code.
func (m *metrics) countError(code string) {
	m.errors.WithLabelValues(sqlstateClass(code)).Inc()
}

// sqlstateClass returns the class of a SQLSTATE ("42P01" → "42"); anything
// that is not five digits or upper-case letters is "XX".
func sqlstateClass(code string) string {
	if len(code) != 5 {
		return "XX"
	}
	for i := 0; i < 5; i++ {
		if c := code[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return "XX"
		}
	}
	return code[:2]
}

// observePoolWait records how long an Acquire on the pool for backend took.
// cache keeps the histogram children between calls (one cache per
// session, one child per backend the session used lately, so a session
// whose statements go to several shards does not look one up per
// statement): a child is looked up again only when the backend is not in
// the cache or the topology snapshot changed (the backend's shard and role
// come from the snapshot).
func (m *metrics) observePoolWait(s *Server, cache *poolWaitCache, backend string, d time.Duration) {
	snap := s.topo.Current()
	var obs prometheus.Observer
	for i := range cache.entries {
		if e := &cache.entries[i]; e.obs != nil && e.snap == snap && e.backend == backend {
			obs = e.obs
			break
		}
	}
	if obs == nil {
		e := &cache.entries[cache.next%uint8(len(cache.entries))]
		cache.next++
		if last := m.lastPoolWait.Load(); last != nil && last.snap == snap && last.backend == backend {
			*e = *last
		} else {
			ep := endpointsOf(snap).get(backend)
			*e = poolWaitObserver{snap: snap, backend: backend, obs: m.poolWait.WithLabelValues(ep.shard, ep.role)}
			c := *e
			m.lastPoolWait.Store(&c)
		}
		obs = e.obs
	}
	obs.Observe(d.Seconds())
}

// poolWaitCache is a session's pool-wait histogram children, replaced
// round robin.
type poolWaitCache struct {
	entries [8]poolWaitObserver
	next    uint8
}

// poolWaitObserver is the pool-wait histogram child of one backend under
// one topology snapshot.
type poolWaitObserver struct {
	snap    *topology.Snapshot
	backend string
	obs     prometheus.Observer
}

// routeNote is where the statements of the current request went: the kind
// and shard of the first plan, widened as more statements of the same
// request (a query string, a pipelined batch) are planned.
type routeNote struct {
	start time.Time // ss.start of the request the note belongs to
	kind  string
	shard string
}

// noteRoute records a plan of the current request for the query duration
// histogram.
func (ss *session) noteRoute(op plan.Operator) {
	kind, shard := routeKindOf(op)
	if ss.start.IsZero() { // a Bind without Parse: the request starts here
		ss.start = time.Now()
	}
	n := &ss.reqRoute
	if n.kind == "" || !n.start.Equal(ss.start) || n.kind == routeSession {
		*n = routeNote{start: ss.start, kind: kind, shard: shard}
		return
	}
	if kind == routeSession || (kind == n.kind && shard == n.shard) {
		return
	}
	if kind == routeBroadcast || n.kind == routeBroadcast {
		n.kind = routeBroadcast
	} else {
		n.kind = routeMulti
	}
	n.shard = routeAnyShard
}

// routeKindOf classifies a plan for metrics.
func routeKindOf(op plan.Operator) (kind, shard string) {
	switch o := op.(type) {
	case *plan.Route:
		return routeSingle, o.Shard
	case *plan.Broadcast:
		return routeBroadcast, routeAnyShard
	case *plan.Session:
		return routeSession, routeAnyShard
	case *plan.Explain:
		return routeKindOf(o.Inner)
	case *plan.Sequence:
		kind, shard = routeSession, routeAnyShard
		for _, st := range o.Statements {
			k, sh := routeKindOf(st)
			switch {
			case k == routeSession:
			case kind == routeSession:
				kind, shard = k, sh
			case k == kind && sh == shard:
			case k == routeBroadcast || kind == routeBroadcast:
				kind, shard = routeBroadcast, routeAnyShard
			default:
				kind, shard = routeMulti, routeAnyShard
			}
		}
		return kind, shard
	default: // Scatter, SplitInsert, CopySplit, AllocateKeys, merge operators
		return routeMulti, routeAnyShard
	}
}

// observeRequest records a finished request (its ReadyForQuery is queued):
// the query duration histogram by route kind and shard, and the console's
// SHOW STATS totals. A request that was never planned (pooler mode, no
// sharding) counts as single-shard on the session's shard.
func (ss *session) observeRequest() {
	kind, shard := routeSingle, ss.shard
	if n := ss.reqRoute; n.kind != "" && n.start.Equal(ss.start) {
		kind, shard = n.kind, n.shard
	}
	ss.reqRoute = routeNote{}
	d := time.Since(ss.start)
	ss.srv.metrics.queries.Inc()
	o := ss.routeObserver(kind, shard)
	o.hist.Observe(d.Seconds())
	o.totals.add(d)
}

// routeObserver is where a request of one route kind and shard is
// recorded: the query-duration histogram child and the SHOW STATS totals.
// Neither changes once created, so a session keeps the last few it used
// (a request costs no label hashing or map lookup on a hit).
type routeObserver struct {
	kind, shard string
	hist        prometheus.Observer
	totals      *routeTotals
}

func (ss *session) routeObserver(kind, shard string) *routeObserver {
	for i := range ss.observers {
		if o := &ss.observers[i]; o.hist != nil && o.kind == kind && o.shard == shard {
			return o
		}
	}
	o := &ss.observers[ss.nextObserver%uint8(len(ss.observers))]
	ss.nextObserver++
	m := ss.srv.metrics
	if last := m.lastRoute.Load(); last != nil && last.database == ss.database && last.kind == kind && last.shard == shard {
		*o = last.routeObserver
		return o
	}
	*o = routeObserver{kind: kind, shard: shard,
		hist:   m.queryDuration.WithLabelValues(kind, shard),
		totals: ss.srv.console.stats.totals(ss.database, kind, shard)}
	m.lastRoute.Store(&sharedRouteObserver{database: ss.database, routeObserver: *o})
	return o
}

// sharedRouteObserver is a routeObserver with the database its totals
// belong to (metrics.lastRoute).
type sharedRouteObserver struct {
	database string
	routeObserver
}

// endpoint says which shard a server address belongs to and in which role.
type endpoint struct{ shard, role string }

type endpointsKey struct{}

// endpointsOf maps every server address of snap to its shard and role.
// Addresses not in the map (a shard removed since a pool was made) are
// reported as shard "unknown", role "unknown" by lookups on the zero value.
func endpointsOf(snap *topology.Snapshot) endpointMap {
	return snap.Memo(endpointsKey{}, func(s *topology.Snapshot) any {
		out := make(endpointMap)
		for _, sh := range s.Shards() {
			out[sh.Primary] = endpoint{sh.Name, "primary"}
			for _, r := range sh.Replicas {
				out[r] = endpoint{sh.Name, "replica"}
			}
		}
		return out
	}).(endpointMap)
}

type endpointMap map[string]endpoint

func (em endpointMap) get(addr string) endpoint {
	if ep, ok := em[addr]; ok {
		return ep
	}
	return endpoint{"unknown", "unknown"}
}

// poolCollector exports pool.Stats of every pool at scrape time, summed
// per shard and role.
type poolCollector struct{ s *Server }

var (
	serverConnDesc = prometheus.NewDesc("shardproxy_server_connections",
		"Server connections by shard, role (primary, replica) and state (active: held by a client; idle: in the pool; connecting: being opened for the pool).",
		[]string{"shard", "role", "state"}, nil)
	poolWaitingDesc = prometheus.NewDesc("shardproxy_pool_waiting_clients",
		"Callers queued for a server connection, by shard and role.", []string{"shard", "role"}, nil)
	poolTimeoutsDesc = prometheus.NewDesc("shardproxy_pool_wait_timeouts_total",
		"Pool waits that gave up after pool.wait_timeout (53300), by shard and role, over the pools that exist now.", []string{"shard", "role"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- serverConnDesc
	ch <- poolWaitingDesc
	ch <- poolTimeoutsDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	type sums struct{ active, idle, connecting, waiting, timeouts float64 }
	eps := endpointsOf(c.s.topo.Current())
	by := make(map[endpoint]*sums)
	// Every endpoint of the topology is reported, with zeros before the first pool.
	for _, ep := range eps {
		by[ep] = &sums{}
	}
	c.s.pools.Each(func(k pool.Key, p *pool.Pool) {
		ep := eps.get(k.Backend)
		sm := by[ep]
		if sm == nil {
			sm = &sums{}
			by[ep] = sm
		}
		st := p.Stats()
		sm.active += float64(st.Active)
		sm.idle += float64(st.Idle)
		sm.connecting += float64(max(st.Total-st.Active-st.Idle, 0))
		sm.waiting += float64(st.Waiting)
		sm.timeouts += float64(st.WaitTimeouts)
	})
	for ep, sm := range by {
		ch <- prometheus.MustNewConstMetric(serverConnDesc, prometheus.GaugeValue, sm.active, ep.shard, ep.role, "active")
		ch <- prometheus.MustNewConstMetric(serverConnDesc, prometheus.GaugeValue, sm.idle, ep.shard, ep.role, "idle")
		ch <- prometheus.MustNewConstMetric(serverConnDesc, prometheus.GaugeValue, sm.connecting, ep.shard, ep.role, "connecting")
		ch <- prometheus.MustNewConstMetric(poolWaitingDesc, prometheus.GaugeValue, sm.waiting, ep.shard, ep.role)
		ch <- prometheus.MustNewConstMetric(poolTimeoutsDesc, prometheus.CounterValue, sm.timeouts, ep.shard, ep.role)
	}
}

// replicaCollector exports what the health monitor (health.go) last found
// about each replica of the topology, at scrape time.
type replicaCollector struct{ s *Server }

var (
	replicaUpDesc = prometheus.NewDesc("shardproxy_replica_up",
		"1 while the health monitor reaches the replica, else 0.", []string{"shard", "replica"}, nil)
	replicaLagDesc = prometheus.NewDesc("shardproxy_replica_lag_seconds",
		"Age of the last transaction the replica replayed, as the health monitor last measured it.", []string{"shard", "replica"}, nil)
	replicaLagBytesDesc = prometheus.NewDesc("shardproxy_replica_lag_bytes",
		"WAL bytes between the primary's insert position and the replica's replay position (last health checks).", []string{"shard", "replica"}, nil)
)

func (c *replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- replicaUpDesc
	ch <- replicaLagDesc
	ch <- replicaLagBytesDesc
}

func (c *replicaCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.s.health
	if h == nil {
		return
	}
	for _, sh := range c.s.topo.Current().Shards() {
		var primaryLSN uint64
		if pb := h.get(sh.Primary); pb != nil && pb.up.Load() {
			primaryLSN = pb.lsn.Load()
		}
		for _, r := range sh.Replicas {
			b := h.get(r)
			up := b != nil && b.up.Load()
			ch <- prometheus.MustNewConstMetric(replicaUpDesc, prometheus.GaugeValue, map[bool]float64{true: 1}[up], sh.Name, r)
			if !up {
				continue
			}
			ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, time.Duration(b.replayAge.Load()).Seconds(), sh.Name, r)
			if replay := b.lsn.Load(); primaryLSN != 0 && replay != 0 {
				lag := 0.0
				if primaryLSN > replay {
					lag = float64(primaryLSN - replay)
				}
				ch <- prometheus.MustNewConstMetric(replicaLagBytesDesc, prometheus.GaugeValue, lag, sh.Name, r)
			}
		}
	}
}
