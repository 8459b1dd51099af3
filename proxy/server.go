package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/topology"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Deps are the collaborators of a Server. Registerer may be nil (no metrics
// are registered then); the global registry is never used.
//
// Topology is where routing reads the shard layout (one atomic load per
// statement). nil means a topology.StaticStore built from the config's
// shards and sharding section; cmd/shardproxy passes a Raft-replicated
// store (topology/raftstore) instead.
//
// ReloadConfig re-reads the configuration file for the admin console's
// RELOAD (nil: RELOAD answers that there is no file to read); Version is
// what SHOW VERSION reports.
type Deps struct {
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	Topology     topology.Store
	ReloadConfig func() (config.Config, error)
	Version      string
}

// Server accepts client connections and runs one session per client.
// All methods are safe for concurrent use.
type Server struct {
	log     *slog.Logger
	metrics *metrics
	cfg     atomic.Pointer[config.Config]
	tlsConf atomic.Pointer[tls.Config]
	pools   *pool.Set
	intern  *stmtIntern
	// autoShapes: simple-query shapes for pool.auto_prepare (autoprepare.go).
	autoShapes *autoShapes
	topo       topology.Store
	static     *topology.StaticStore // the store built from the config (nil when Deps.Topology is set)
	planner    *planner.Planner
	catalog    catalog
	// collations caches each shard database's collation for merges.
	collations sync.Map
	ids        idAllocator

	twoPhase *twoPhase
	health   *healthMonitor // replica and primary health checks (health.go)

	console consoleState // admin console: PAUSE gate, RELOAD, SHOW STATS (console.go)

	mu       sync.Mutex
	ln       net.Listener
	unixLn   net.Listener // unix_socket_dir's socket; nil when not configured
	lnReady  chan struct{}
	sessions map[uint32]*session // by ProcessID handed to the client
	workers  sessionWorkers      // goroutines that run sessions (accept.go)
	closing  atomic.Bool
	nclients atomic.Int64
	counter  atomic.Uint32
	wg       sync.WaitGroup
	done     chan struct{} // closed when Shutdown starts

	forceCtx    context.Context // cancelled when Shutdown's deadline passes (ends pool waits)
	forceCancel context.CancelFunc

	params   sync.Map // pool.Key → map[string]string: server params of the pool's first connection
	checked  sync.Map // settingsSignature → true: startup settings the server accepted
	nchecked atomic.Int64

	pwMu      sync.Mutex
	passwords map[string]string // passthrough-verified plain passwords by user
}

// NewServer validates cfg and builds a Server. It opens no sockets.
func NewServer(cfg config.Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:        log,
		pools:      pool.NewSet(log),
		intern:     newStmtIntern(),
		autoShapes: newAutoShapes(),
		lnReady:    make(chan struct{}),
		sessions:   make(map[uint32]*session),
		done:       make(chan struct{}),
		passwords:  make(map[string]string),
	}
	s.forceCtx, s.forceCancel = context.WithCancel(context.Background())
	s.cfg.Store(&cfg)
	s.topo = deps.Topology
	if s.topo == nil {
		snap, err := cfg.Topology()
		if err != nil {
			return nil, err
		}
		s.static = topology.NewStaticStore(snap)
		s.topo = s.static
	}
	s.planner = planner.New(s.catalog.plannerOptions())
	s.console.init(deps)
	s.twoPhase = newTwoPhase()
	s.health = newHealthMonitor(s)
	if spec := os.Getenv("SHARDPROXY_CRASH_AT"); spec != "" {
		h := crashHook(spec, func(msg string) { log.Error(msg) })
		s.twoPhase.hook.Store(&h)
	}
	if deps.Registerer != nil {
		for _, c := range s.twoPhase.collectors() {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if err := s.loadTLS(&cfg); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

func (s *Server) loadTLS(cfg *config.Config) error {
	if !cfg.TLS.Enabled() {
		s.tlsConf.Store(nil)
		return nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.tlsConf.Store(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	return nil
}

// config returns the configuration in effect; callers must not modify it.
func (s *Server) config() *config.Config { return s.cfg.Load() }

// ListenAndServe listens on cfg.Listen (see Listen) and calls Serve.
func (s *Server) ListenAndServe() error {
	ln, err := Listen(s.config().Listen)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Addr returns the address Serve listens on, or nil before Serve started.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// UnixAddr returns the Unix-domain socket Serve listens on (unix_socket_dir),
// or nil when there is none or Serve has not opened it yet.
func (s *Server) UnixAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unixLn == nil {
		return nil
	}
	return s.unixLn.Addr()
}

// Ready is closed once Serve has opened its listeners and accepts clients
// (never, if Serve failed).
func (s *Server) Ready() <-chan struct{} { return s.lnReady }

// Serve accepts connections on ln until Shutdown; it then returns
// ErrServerClosed. Temporary accept errors are retried with backoff. With
// unix_socket_dir configured it also accepts on the Unix-domain socket
// named after ln's port (ListenUnix); when that socket cannot be opened,
// Serve closes ln and returns the error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("proxy: Serve called twice")
	}
	unixLn, err := s.listenUnix(ln.Addr())
	if err != nil {
		s.mu.Unlock()
		ln.Close()
		return err
	}
	s.ln, s.unixLn = ln, unixLn
	close(s.lnReady)
	recoverCtx, stopRecovery := context.WithCancel(context.Background())
	go func() {
		<-s.done
		stopRecovery()
	}()
	go s.recoverLoop(recoverCtx)
	go s.health.run(recoverCtx)
	s.workers.init()
	s.mu.Unlock()
	go s.watchdog()

	if unixLn != nil {
		go func() {
			if err := s.acceptLoop(unixLn); !errors.Is(err, ErrServerClosed) {
				s.log.Error("the Unix-domain socket stopped accepting clients", "path", unixLn.Addr().String(), "err", err)
			}
		}()
	}
	return s.acceptLoop(ln)
}

// listenUnix opens unix_socket_dir's socket for a proxy listening on addr;
// nil when unix_socket_dir is not set.
func (s *Server) listenUnix(addr net.Addr) (net.Listener, error) {
	cfg := s.config()
	if cfg.UnixSocketDir == "" {
		return nil, nil
	}
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return nil, fmt.Errorf("unix_socket_dir: no port in the listen address %s", addr)
	}
	n, _ := strconv.Atoi(port)
	mode, err := cfg.UnixSocketFileMode()
	if err != nil {
		return nil, err
	}
	path := cfg.UnixSocketPath(n)
	ln, err := ListenUnix(path, mode)
	if err != nil {
		return nil, fmt.Errorf("unix_socket_dir: %w", err)
	}
	return ln, nil
}

// acceptLoop hands ln's connections to sessions until ln fails or
// Shutdown closes it (ErrServerClosed).
func (s *Server) acceptLoop(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff *= 2; backoff > time.Second {
					backoff = time.Second
				}
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.startSession(c) // accept.go
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// serveConn runs one client connection to the end. The connection keeps
// the socket options the listener gave it (Listen's and net.Listen's have
// TCP_NODELAY and TCP keepalive on): setting them again would only cost
// system calls per connection.
//
// A panic in a session (a bug) ends that session only: its deferred
// cleanup has given back or discarded its server connections, the client
// connection is closed, the stack is logged, and every other session goes
// on.
func (s *Server) serveConn(c net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("client session ended by an internal error (a bug: please report it with this stack)",
				"remote", c.RemoteAddr(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			c.Close()
		}
	}()
	// Checked first: the arguments of a disabled Debug call are still
	// allocated, and the remote address is only built when asked for.
	logDebug := s.log.Enabled(context.Background(), slog.LevelDebug)
	if logDebug {
		s.log.Debug("client connected", "remote", c.RemoteAddr())
	}
	sess := newSession(s, c)
	sess.run()
	if logDebug {
		s.log.Debug("client closed", "remote", c.RemoteAddr())
	}
}

// register assigns the session its BackendKeyData and makes it findable
// for CancelRequests. ProcessID = NodeID<<20 | counter: the top 12 bits name
// the proxy node that issued the key, so a cancel arriving at another proxy
// can be recognized (and later forwarded).
func (s *Server) register(sess *session) {
	node := uint32(s.config().NodeID) & 0xFFF
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		pid := node<<20 | (s.counter.Add(1) & 0xFFFFF)
		if _, taken := s.sessions[pid]; taken || pid&0xFFFFF == 0 {
			continue
		}
		sess.pid = pid
		s.sessions[pid] = sess
		return
	}
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	if s.sessions[sess.pid] == sess {
		delete(s.sessions, sess.pid)
	}
	s.mu.Unlock()
}

// cancel handles a CancelRequest for (pid, secret).
func (s *Server) cancel(pid, secret uint32) {
	if pid>>20 != uint32(s.config().NodeID)&0xFFF {
		s.log.Info("cancel request for another proxy node dropped", "node", pid>>20)
		return
	}
	s.mu.Lock()
	sess := s.sessions[pid]
	s.mu.Unlock()
	if sess == nil || sess.secret != secret {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess.cancelScatter(ctx) // the other shards of a running cross-shard read
	sc := sess.current.Load()
	if sc == nil {
		return
	}
	if err := sc.CancelWhile(ctx, func() bool { return sess.current.Load() == sc }); err != nil {
		s.log.Warn("forwarding cancel failed", "err", err)
	}
}

// Shutdown stops accepting, closes idle clients, lets clients inside a
// transaction finish it (they are then closed with 57P01), and when ctx
// expires closes everyone left with 57P01. Finally the pools are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closing.Swap(true)
	if first {
		close(s.done)
	}
	ln, unixLn := s.ln, s.unixLn
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	if unixLn != nil {
		unixLn.Close() // removes the socket file
	}
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	forced := false
	for done := false; !done; {
		s.kickSessions(forced)
		select {
		case <-finished:
			done = true
		case <-tick.C:
		case <-ctx.Done():
			if !forced {
				forced = true
				err = ctx.Err()
				s.forceCancel()
				continue
			}
			// Give forced sessions a moment to write their goodbye.
			select {
			case <-finished:
			case <-time.After(time.Second):
			}
			done = true
		}
	}
	s.forceCancel()
	s.pools.Close()
	return err
}

func (s *Server) kickSessions(force bool) {
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	for _, sess := range list {
		sess.kick(force)
	}
}

// Reload applies a new configuration: users, authentication, TLS and pool
// settings take effect for new connections and pool operations at once.
// Changes of listen address, node id or shards need a restart; they are
// logged and otherwise ignored. Clients are never dropped.
func (s *Server) Reload(cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := s.config()
	if cfg.Listen != old.Listen {
		s.log.Warn("reload: listen address change needs a restart", "old", old.Listen, "new", cfg.Listen)
		cfg.Listen = old.Listen
	}
	if cfg.UnixSocketDir != old.UnixSocketDir || cfg.UnixSocketMode != old.UnixSocketMode {
		s.log.Warn("reload: unix_socket_dir and unix_socket_mode changes need a restart", "old", old.UnixSocketDir, "new", cfg.UnixSocketDir)
		cfg.UnixSocketDir, cfg.UnixSocketMode = old.UnixSocketDir, old.UnixSocketMode
	}
	if cfg.NodeID != old.NodeID {
		s.log.Warn("reload: node_id change needs a restart")
		cfg.NodeID = old.NodeID
	}
	if !sameShards(old.Shards, cfg.Shards) {
		s.log.Warn("reload: shard changes need a restart")
		cfg.Shards = old.Shards
	}
	if !reflect.DeepEqual(old.Sharding, cfg.Sharding) {
		s.log.Warn("reload: sharding changes need a restart (with Raft, change the topology with shardctl)")
		cfg.Sharding = old.Sharding
	}
	if err := s.loadTLS(&cfg); err != nil {
		return err
	}
	s.cfg.Store(&cfg)
	s.pools.Each(func(key pool.Key, p *pool.Pool) {
		p.Reconfigure(s.poolOptions(&cfg, key))
	})
	s.log.Info("configuration reloaded")
	return nil
}

func sameShards(a, b []config.Shard) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Primary != b[i].Primary || len(a[i].Replicas) != len(b[i].Replicas) {
			return false
		}
		for j := range a[i].Replicas {
			if a[i].Replicas[j] != b[i].Replicas[j] {
				return false
			}
		}
	}
	return true
}

// backendFor returns the server address a session's first pool points at:
// the default shard's primary.
func (s *Server) backendFor(cfg *config.Config) string {
	snap := s.topo.Current()
	if addr, ok := infoOf(snap).primary[snap.DefaultShard()]; ok {
		return addr
	}
	return cfg.Shards[0].Primary.Addr()
}

// poolFor returns the pool for key, creating it on first use.
func (s *Server) poolFor(key pool.Key) *pool.Pool {
	return s.pools.Get(key, func() pool.Options { return s.poolOptions(s.config(), key) })
}

// poolOptions derives pool settings for key from cfg.
func (s *Server) poolOptions(cfg *config.Config, key pool.Key) pool.Options {
	user, password := key.User, ""
	if u, ok := cfg.LookupUser(key.User); ok && isPlainPassword(u.Password) {
		password = u.Password
	} else {
		s.pwMu.Lock()
		password = s.passwords[key.User]
		s.pwMu.Unlock()
	}
	if cfg.Server.User != "" {
		user = cfg.Server.User
	}
	if cfg.Server.Password != "" {
		password = cfg.Server.Password
	}
	return pool.Options{
		Addr:                key.Backend,
		User:                user,
		Database:            key.Database,
		Password:            password,
		Size:                cfg.PoolSizeFor(key.User),
		MinIdle:             cfg.Pool.MinIdle,
		WaitTimeout:         cfg.Pool.WaitTimeout.D(),
		IdleTimeout:         cfg.Pool.ServerIdleTimeout.D(),
		Lifetime:            cfg.Pool.ServerLifetime.D(),
		ConnectTimeout:      cfg.Pool.ConnectTimeout.D(),
		ConnectRetries:      cfg.Pool.ConnectRetries,
		HealthCheckInterval: cfg.Pool.HealthCheckInterval.D(),
		ResetQuery:          cfg.Pool.ResetQuery,
		MaxPrepared:         cfg.Pool.MaxPreparedStatements,
		Logger:              s.log,
	}
}

// isPlainPassword reports whether a configured password is usable towards
// the server (not a SCRAM verifier or md5 hash).
func isPlainPassword(p string) bool {
	if p == "" || strings.HasPrefix(p, "SCRAM-SHA-256$") {
		return false
	}
	if len(p) == 35 && strings.HasPrefix(p, "md5") {
		return false
	}
	return true
}

// SetCommitHook installs a function called at the named points of every
// two-phase commit ("prepared-N", "decided", "committed-N"); it may block
// to simulate a coordinator that dies there. For tests only.
func (s *Server) SetCommitHook(hook func(stage string)) { s.twoPhase.hook.Store(&hook) }
