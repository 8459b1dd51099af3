package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy/pool"
)

// metrics of the client side. All fields are usable when no Registerer was
// given (they are then simply not exported).
type metrics struct {
	clientsActive  prometheus.Gauge
	clientsWaiting prometheus.Gauge
	pinned         prometheus.Gauge
	pinsTotal      prometheus.Counter
	queries        prometheus.Counter
	queryDuration  prometheus.Histogram
	errors         *prometheus.CounterVec
}

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
		queryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shardproxy_query_duration_seconds", Help: "Time from a client request to its ReadyForQuery.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardproxy_errors_total", Help: "ErrorResponses sent to clients, by SQLSTATE."}, []string{"sqlstate"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.clientsActive, m.clientsWaiting, m.pinned, m.pinsTotal,
		m.queries, m.queryDuration, m.errors, &poolCollector{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(start time.Time) {
	m.queries.Inc()
	m.queryDuration.Observe(time.Since(start).Seconds())
}

// poolCollector exports pool.Stats of every pool at scrape time.
type poolCollector struct{ s *Server }

var (
	poolStatDesc = prometheus.NewDesc("shardproxy_pool_connections",
		"Server connections per pool by state.", []string{"user", "database", "backend", "state"}, nil)
	poolWaitDesc = prometheus.NewDesc("shardproxy_pool_waiting_clients",
		"Clients queued for a server connection.", []string{"user", "database", "backend"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolStatDesc
	ch <- poolWaitDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.pools.Each(func(k pool.Key, p *pool.Pool) {
		st := p.Stats()
		ch <- prometheus.MustNewConstMetric(poolStatDesc, prometheus.GaugeValue, float64(st.Idle), k.User, k.Database, k.Backend, "idle")
		ch <- prometheus.MustNewConstMetric(poolStatDesc, prometheus.GaugeValue, float64(st.Active), k.User, k.Database, k.Backend, "active")
		ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.GaugeValue, float64(st.Waiting), k.User, k.Database, k.Backend)
	})
}
