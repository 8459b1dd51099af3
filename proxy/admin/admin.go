package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/topology"
	"github.com/shardproxy/shardproxy/topology/raftstore"
)

// Cluster is what the admin API needs from a Raft-replicated store
// (*raftstore.Store implements it). Nil in static mode.
type Cluster interface {
	NodeID() string
	Addr() string
	Status() raftstore.Status
	Leader() (id, addr string)
	IsLeader() bool
	Servers() ([]raftstore.Server, error)
	Join(ctx context.Context, id, addr string) (string, error)
	RemoveServer(ctx context.Context, id string) error
	// ReadIndex: the topology after a Raft barrier (leader only).
	ReadIndex(ctx context.Context) (*topology.Snapshot, error)
}

// ShardConnFunc opens a connection to the PostgreSQL server at addr
// ("host:port") and database, as the proxy's server user. The admin API
// uses it for range statistics and the recovery state in health probes.
type ShardConnFunc func(ctx context.Context, addr, database string) (*pgx.Conn, error)

// Options configure a Server. Store is required.
type Options struct {
	// Store is the topology this node routes by.
	Store topology.Store
	// Cluster is the Raft view of Store; nil in static mode.
	Cluster Cluster
	// AdvertiseURL is this node's admin API base URL as other nodes reach
	// it ("http://10.0.0.5:9930").
	AdvertiseURL string
	// Token is the bearer token /v1 requires; "" = loopback clients only.
	Token string
	// PeersFile keeps the node → admin URL directory across restarts
	// ("" = memory only).
	PeersFile string
	// Ready reports whether the proxy accepts clients (nil: always).
	Ready func() error
	// ShardConn, if set, lets the admin API log in to shards (range
	// statistics, pg_is_in_recovery in health probes).
	ShardConn ShardConnFunc
	// ProbeTimeout bounds one health probe (default 1s).
	ProbeTimeout time.Duration
	// StatsTimeout bounds the range statistics queries (default 30s).
	StatsTimeout time.Duration
	// ForwardTimeout bounds a write forwarded to the leader (default 15s).
	ForwardTimeout time.Duration
	// LeaderWait is how long a write waits for an election to finish
	// before it fails with no_quorum (default 5s).
	LeaderWait time.Duration
	// SyncInterval is how often Run refreshes the admin directory
	// (default 2s).
	SyncInterval time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	// HTTPClient is used for forwarding and peer sync (default: a client
	// with ForwardTimeout).
	HTTPClient *http.Client
}

// Server serves the admin API. Make it with New and mount it with
// Register; run Run in a goroutine for the peer sync.
type Server struct {
	opts    Options
	store   topology.Store
	cluster Cluster
	log     *slog.Logger
	peers   *peerDir
	client  *http.Client
	met     *metrics
	syncNow chan struct{}
	// failoverMu runs one failover at a time (failover.go).
	failoverMu sync.Mutex
}

// New checks opts and builds a Server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("admin: Options.Store is required")
	}
	if opts.Cluster != nil && opts.AdvertiseURL == "" {
		return nil, errors.New("admin: Options.AdvertiseURL is required with a Raft cluster")
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = time.Second
	}
	if opts.StatsTimeout <= 0 {
		opts.StatsTimeout = 30 * time.Second
	}
	if opts.ForwardTimeout <= 0 {
		opts.ForwardTimeout = 15 * time.Second
	}
	if opts.LeaderWait <= 0 {
		opts.LeaderWait = 5 * time.Second
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		store:   opts.Store,
		cluster: opts.Cluster,
		log:     log,
		client:  opts.HTTPClient,
		syncNow: make(chan struct{}, 1),
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: opts.ForwardTimeout}
	}
	self := ""
	if s.cluster != nil {
		self = s.cluster.NodeID()
	}
	s.peers = newPeerDir(self, strings.TrimRight(opts.AdvertiseURL, "/"), opts.PeersFile, log)
	m, err := newMetrics(opts.Registerer, s)
	if err != nil {
		return nil, err
	}
	s.met = m
	return s, nil
}

// Register mounts the API on mux: /v1/..., /healthz and /readyz.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)

	v1 := func(pattern string, h apiHandler) {
		mux.Handle(pattern, s.instrument(pattern, s.auth(h)))
	}
	write := func(pattern string, h apiHandler) { v1(pattern, s.leaderOnly(h)) }

	v1("GET /v1/status", s.getStatus)
	v1("GET /v1/topology", s.getTopology)
	v1("GET /v1/shards", s.getShards)
	write("POST /v1/shards", s.postShard)
	write("DELETE /v1/shards/{name}", s.deleteShard)
	write("POST /v1/shards/{name}/failover", s.postFailover)
	write("POST /v1/shards/{name}/replicas", s.postReplica)
	write("DELETE /v1/shards/{name}/replicas/{addr}", s.deleteReplica)
	v1("GET /v1/tables", s.getTables)
	write("POST /v1/tables/distribute", s.postDistribute)
	write("POST /v1/tables/reference", s.postReference)
	v1("GET /v1/ranges", s.getRanges)
	v1("GET /v1/key", s.getKey)
	v1("GET /v1/directory", s.getDirectory)
	write("PUT /v1/directory", s.putDirectory)
	write("DELETE /v1/directory", s.deleteDirectory)
	v1("GET /v1/nodes", s.getNodes)
	write("DELETE /v1/nodes/{id}", s.deleteNode)
	write("POST /v1/nodes/join", s.postJoin)
	v1("GET /v1/internal/peers", s.getPeers)
	v1("GET /v1/internal/read-index", s.leaderOnly(s.getReadIndex))
	mux.Handle("/v1/", s.auth(func(w http.ResponseWriter, r *http.Request) error {
		return &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg:  fmt.Sprintf("no admin endpoint %s %s", r.Method, r.URL.Path),
			Hint: "see docs/admin.md for the endpoints, or use shardctl"}
	}))
}

// Handler returns a mux with only the admin API (for tests and embedding).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// apiHandler returns an error to be written as an APIError.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

const (
	hdrForwarded = "X-Shardproxy-Forwarded-By"
	hdrServedBy  = "X-Shardproxy-Served-By"
)

// auth checks the bearer token (or, without one, that the client is on
// loopback) and writes handler errors.
func (s *Server) auth(h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkAuth(r); err != nil {
			s.writeError(w, err)
			return
		}
		if s.cluster != nil {
			w.Header().Set(hdrServedBy, s.cluster.NodeID())
		}
		if err := h(w, r); err != nil {
			s.writeError(w, err)
		}
	})
}

func (s *Server) checkAuth(r *http.Request) error {
	if s.opts.Token == "" {
		if isLoopback(r.RemoteAddr) {
			return nil
		}
		return &APIError{Status: http.StatusForbidden, Code: CodeForbidden,
			Msg:  "the admin API answers only loopback clients because admin_token is not set",
			Hint: "set admin_token (the same on every proxy) and pass it with --token or SHARDCTL_TOKEN, or run shardctl on the proxy's host"}
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.opts.Token)) != 1 {
		msg := "missing admin token"
		if ok {
			msg = "wrong admin token"
		}
		return &APIError{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: msg,
			Hint: "pass the proxies' admin_token with --token or SHARDCTL_TOKEN"}
	}
	return nil
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError writes err as an APIError: the one place errors become HTTP.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	ae := s.toAPIError(err)
	if ae.Status >= 500 {
		s.log.Warn("admin API error", "code", ae.Code, "err", ae.Msg)
	}
	writeJSON(w, ae.Status, ae)
}

// toAPIError classifies err.
func (s *Server) toAPIError(err error) *APIError {
	version := s.store.Current().Version()
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Version == 0 {
			ae.Version = version
		}
		return ae
	}
	e := &APIError{Msg: err.Error(), Version: version}
	var vm *topology.VersionMismatchError
	var nl *raftstore.NotLeaderError
	var nq *raftstore.NoQuorumError
	switch {
	case errors.As(err, &vm):
		e.Status, e.Code = http.StatusConflict, CodeVersionMismatch
		e.Hint = fmt.Sprintf("the topology changed meanwhile (now version %d); look at it again (shardctl status) and retry with the new version", vm.Actual)
	case errors.Is(err, topology.ErrNotFound):
		e.Status, e.Code = http.StatusNotFound, CodeNotFound
		e.Hint = "list what exists with shardctl shards list / tables list / directory list"
	case errors.Is(err, topology.ErrInvalid):
		e.Status, e.Code = http.StatusUnprocessableEntity, CodeInvalid
		e.Hint = "the change was refused and nothing changed; fix what the message names and retry"
	case errors.As(err, &nl):
		e.Status, e.Code, e.Retryable = http.StatusServiceUnavailable, CodeNotLeader, true
		e.Msg = fmt.Sprintf("this node is not the Raft leader (the leader is %s)", nl.LeaderID)
		e.Hint = "leadership moved while the request was in flight; nothing was changed, retry"
	case errors.As(err, &nq):
		e.Status, e.Code = http.StatusServiceUnavailable, CodeNoQuorum
		e.Hint = fmt.Sprintf("topology is read-only until a majority of the voters can reach each other; routing continues with version %d. Check the nodes with shardctl nodes list and bring the missing ones back", nq.Version)
		if nq.Uncertain {
			e.Hint += "; the change may still commit, so check shardctl status before retrying"
		}
	case errors.Is(err, raftstore.ErrClosed):
		e.Status, e.Code = http.StatusServiceUnavailable, CodeUnavailable
		e.Hint = "this proxy is shutting down; use another one"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e.Status, e.Code = http.StatusGatewayTimeout, CodeUnavailable
		e.Hint = "the request timed out; check shardctl status and retry"
	default:
		e.Status, e.Code = http.StatusInternalServerError, CodeInternal
		e.Hint = "see the proxy's log for details"
	}
	return e
}

func badRequest(format string, args ...any) error {
	return &APIError{Status: http.StatusBadRequest, Code: CodeBadRequest, Msg: fmt.Sprintf(format, args...)}
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// readBody reads the (bounded) request body once; forwarding and decoding
// both use it.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badRequest("reading the request body: %v", err)
	}
	if len(b) > maxBody {
		return nil, badRequest("request body larger than %d bytes", maxBody)
	}
	return b, nil
}

// decode parses a JSON body into v, refusing unknown fields.
func decode(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return badRequest("the request needs a JSON body")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("bad JSON body: %v", err)
	}
	return nil
}

// mode is "raft" or "static".
func (s *Server) mode() string {
	if s.cluster != nil {
		return "raft"
	}
	return "static"
}

// apply runs cmd through the store and answers with the new version.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, cmd topology.Command, message string) error {
	snap, err := s.store.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	res := WriteResult{Version: snap.Version(), Message: message}
	if s.cluster == nil {
		res.Warning = "static topology (no raft.dir): the change lives only in this proxy's memory until it restarts"
	}
	s.log.Info("topology changed through the admin API", "command", cmd.Type(), "version", snap.Version(), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
	return nil
}
