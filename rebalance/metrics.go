package rebalance

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/topology"
)

// metrics are the controller's Prometheus metrics (names under
// shardproxy_rebalance_).
type metrics struct {
	rowsCopied prometheus.Counter
	hold       prometheus.Histogram
	aborts     prometheus.Counter
	finished   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *Controller) (*metrics, error) {
	m := &metrics{
		rowsCopied: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardproxy_rebalance_rows_copied_total",
			Help: "Rows copied to move targets by the initial copy of their subscriptions."}),
		hold: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shardproxy_rebalance_hold_seconds",
			Help:    "How long writes to moving ranges were held at a successful cutover (cutover recorded to owner flipped).",
			Buckets: []float64{.01, .025, .05, .1, .15, .25, .5, 1, 2, 5}}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{Name: "shardproxy_rebalance_cutover_aborts_total",
			Help: "Cutovers given up (hold timeout, catch-up or verification failure); the held writes went to the source."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shardproxy_rebalance_moves_finished_total",
			Help: "Moves ended, by outcome (done, cancelled)."}, []string{"outcome"}),
	}
	byPhase := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shardproxy_rebalance_moves",
		Help: "Moves recorded in the topology (all phases; see shardproxy_rebalance_moves_in_phase)."},
		func() float64 { return float64(len(c.opts.Store.Current().Moves())) })
	phases := &phaseCollector{c: c, desc: prometheus.NewDesc("shardproxy_rebalance_moves_in_phase",
		"Moves recorded in the topology by phase.", []string{"phase"}, nil)}
	lag := &lagCollector{c: c, desc: prometheus.NewDesc("shardproxy_rebalance_lag_bytes",
		"Replication lag of each running move (bytes of source WAL its target has not confirmed).", []string{"move"}, nil)}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.rowsCopied, m.hold, m.aborts, m.finished, byPhase, phases, lag} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type phaseCollector struct {
	c    *Controller
	desc *prometheus.Desc
}

func (p *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[topology.MoveState]int{}
	for _, m := range p.c.opts.Store.Current().Moves() {
		counts[m.State]++
	}
	for _, s := range []topology.MoveState{topology.MovePending, topology.MoveCopying, topology.MoveCatchup,
		topology.MoveCutover, topology.MoveCleanup, topology.MoveCancelling} {
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}

type lagCollector struct {
	c    *Controller
	desc *prometheus.Desc
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range l.c.Status() {
		if p.Finished == nil {
			ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, float64(p.LagBytes), p.Move.ID)
		}
	}
}
