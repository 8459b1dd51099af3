package raftstore

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/topology"
)

// metrics exports Raft and topology state. Gauges are read from Raft at
// scrape time; nothing here is on the routing path.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	applies    *prometheus.CounterVec
	applyDur   prometheus.Histogram
}

// Metric names (all prefixed shardproxy_raft_):
//
//	state{state}            1 for this node's Raft state (follower, candidate, leader, shutdown)
//	leader                  1 while this node is leader
//	term                    current term
//	last_log_index          index of the last log entry
//	commit_index            commit index
//	applied_index           last index applied to the FSM
//	last_contact_seconds    seconds since the leader was last heard (0 on the leader)
//	topology_version        version of the topology this node serves
//	applies_total{result}   writes by outcome (ok, rejected, not_leader, no_quorum, error)
//	apply_duration_seconds  write latency until commit
func newMetrics(s *Store, reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardproxy_raft_applies_total",
			Help: "Topology writes submitted on this node, by result (ok, rejected, not_leader, no_quorum, error).",
		}, []string{"result"}),
		applyDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shardproxy_raft_apply_duration_seconds",
			Help:    "Time from a topology write's submission until it is committed and applied (or fails).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	for _, r := range []string{"ok", "rejected", "not_leader", "no_quorum", "error"} {
		m.applies.WithLabelValues(r)
	}
	m.collectors = []prometheus.Collector{m.applies, m.applyDur, &raftCollector{s: s}}
	if reg != nil {
		for _, c := range m.collectors {
			if err := reg.Register(c); err != nil {
				s.log.Warn("raftstore: metrics not registered", "err", err)
			}
		}
	}
	return m
}

func (m *metrics) observeApply(start time.Time, err error) {
	m.applyDur.Observe(time.Since(start).Seconds())
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrNotLeader):
		result = "not_leader"
	case errors.Is(err, ErrNoQuorum):
		result = "no_quorum"
	case errors.Is(err, topology.ErrVersionMismatch), errors.Is(err, topology.ErrInvalid),
		errors.Is(err, topology.ErrNotFound), errors.Is(err, ErrAlreadyInitialized):
		result = "rejected"
	default:
		result = "error"
	}
	m.applies.WithLabelValues(result).Inc()
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

var (
	descState       = prometheus.NewDesc("shardproxy_raft_state", "1 for this node's current Raft state.", []string{"state"}, nil)
	descLeader      = prometheus.NewDesc("shardproxy_raft_leader", "1 while this node is the Raft leader.", nil, nil)
	descTerm        = prometheus.NewDesc("shardproxy_raft_term", "Current Raft term.", nil, nil)
	descLastIndex   = prometheus.NewDesc("shardproxy_raft_last_log_index", "Index of the last Raft log entry.", nil, nil)
	descCommitIndex = prometheus.NewDesc("shardproxy_raft_commit_index", "Raft commit index.", nil, nil)
	descApplied     = prometheus.NewDesc("shardproxy_raft_applied_index", "Last Raft index applied to the topology FSM.", nil, nil)
	descContact     = prometheus.NewDesc("shardproxy_raft_last_contact_seconds", "Seconds since this node last heard from the leader (0 on the leader).", nil, nil)
	descVersion     = prometheus.NewDesc("shardproxy_raft_topology_version", "Version of the topology this node serves.", nil, nil)
)

// raftCollector reads Raft's getters at scrape time.
type raftCollector struct{ s *Store }

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descLeader, descTerm, descLastIndex, descCommitIndex, descApplied, descContact, descVersion} {
		ch <- d
	}
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.s.raft
	st := r.State()
	for _, x := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if x == st {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, stateLabel(x))
	}
	leader, contact := 0.0, 0.0
	if st == raft.Leader {
		leader = 1
	} else if lc := r.LastContact(); !lc.IsZero() {
		contact = time.Since(lc).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(descLastIndex, prometheus.GaugeValue, float64(r.LastIndex()))
	ch <- prometheus.MustNewConstMetric(descCommitIndex, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(r.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(descContact, prometheus.GaugeValue, contact)
	ch <- prometheus.MustNewConstMetric(descVersion, prometheus.GaugeValue, float64(c.s.Current().Version()))
}

func stateLabel(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	default:
		return "shutdown"
	}
}
