package admin

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the admin API and of the topology this node serves:
//
//	shardproxy_topology_version           version of the topology this node routes by
//	shardproxy_ready                      1 when /readyz says ready
//	shardproxy_admin_requests_total       admin API requests by route pattern and HTTP status
//	shardproxy_admin_forwarded_total      writes forwarded to the Raft leader
type metrics struct {
	requests  *prometheus.CounterVec
	forwarded prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardproxy_admin_requests_total",
			Help: "Admin API requests, by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardproxy_admin_forwarded_total",
			Help: "Admin API writes this node forwarded to the Raft leader.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	version := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shardproxy_topology_version",
		Help: "Version of the topology this proxy routes by (increases by one per change).",
	}, func() float64 { return float64(s.store.Current().Version()) })
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "shardproxy_ready",
		Help: "1 when this proxy is ready (serving clients and holding a topology with shards), as /readyz reports.",
	}, func() float64 {
		if s.readiness().Ready {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.requests, m.forwarded, version, ready} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// instrument counts requests per route pattern (bounded label values).
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.met.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
	})
}
