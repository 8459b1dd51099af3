package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shardproxy/shardproxy/proxy"
	adminapi "github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/topology"
	"github.com/shardproxy/shardproxy/topology/raftstore"
)

// listening reports the bound addresses once the proxy accepts clients.
// admin is nil when the admin listener is off.
type listening func(client, admin net.Addr)

// notifySignals returns the channel runProxy reads signals from. Register
// it before starting anything that a signal should stop.
func notifySignals() chan os.Signal {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	return sigs
}

// runProxy runs the proxy for cfg until SIGTERM/SIGINT arrives on sigs (or
// ctx is done), then shuts it down gracefully within the configured
// shutdown_timeout; a second SIGTERM/SIGINT during shutdown cuts the
// remaining clients off at once. SIGHUP calls reload and applies the result
// with Server.Reload; a reload error is logged and the running
// configuration is kept.
//
// It returns nil after a requested shutdown and an error when the proxy
// cannot start or stops serving on its own.
func runProxy(ctx context.Context, cfg config.Config, log *slog.Logger, sigs <-chan os.Signal, reload func() (config.Config, error), ready listening) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// The topology: Raft-replicated with raft.dir, else built from the
	// config. The admin API and the proxy share the one store.
	var store topology.Store
	var rstore *raftstore.Store
	if cfg.Raft.Enabled() {
		st, err := openRaft(cfg, log, reg)
		if err != nil {
			return err
		}
		rstore, store = st, st
		defer func() {
			if err := st.Shutdown(); err != nil {
				log.Warn("raft shutdown", "err", err)
			}
		}()
	} else {
		snap, err := cfg.Topology()
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		store = topology.NewStaticStore(snap)
	}

	srv, err := proxy.NewServer(cfg, proxy.Deps{Logger: log, Registerer: reg, Topology: store, ReloadConfig: reload, Version: version})
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}

	var serving atomic.Bool // accepting clients and not shutting down: /readyz
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	var admin *http.Server
	var adminAddr net.Addr
	var moveCtrl *rebalance.Controller // built with the admin API, which starts and follows moves
	// leaderVersion: how a restarted node learns the leader's committed
	// topology version (through the admin API of the other nodes).
	var leaderVersion raftstore.LeaderVersionFunc
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("admin_listen: %w", err)
		}
		adminAddr = aln.Addr()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		// Go profiles, for finding what costs CPU under load (see test/bench).
		// The admin listener is meant for operators only (loopback by default).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		opts := adminapi.Options{
			Store:        store,
			AdvertiseURL: cfg.AdvertisedAdminURL(adminAddr.String()),
			Token:        cfg.AdminToken,
			Ready: func() error {
				if !serving.Load() {
					return errors.New("the proxy is not accepting clients (starting or shutting down)")
				}
				return nil
			},
			ShardConn:  shardConn(cfg),
			Logger:     log,
			Registerer: reg,
		}
		if rstore != nil {
			opts.Cluster = rstore
			opts.PeersFile = filepath.Join(cfg.Raft.Dir, "admin-peers.json")
		}
		api, err := adminapi.New(opts)
		if err != nil {
			aln.Close()
			return fmt.Errorf("admin API: %w", err)
		}
		api.Register(mux)
		leaderVersion = func(ctx context.Context) (uint64, string, error) {
			return api.LeaderVersion(ctx, joinTargets(cfg)...)
		}
		ctrl, err := newMoveController(cfg, store, api.AwaitVersion, log, reg)
		if err != nil {
			aln.Close()
			return fmt.Errorf("rebalance: %w", err)
		}
		moveCtrl = ctrl
		api.RegisterMoves(mux, movesAPI{ctrl: ctrl, store: store})
		go api.Run(adminCtx)
		// Automatic failover (replicas.failover_timeout > 0) promotes
		// through the admin API's failover, on the Raft leader only.
		srv.SetFailoverFunc(api.AutoFailover)
		if targets := joinTargets(cfg); rstore != nil && len(targets) > 0 {
			go func() {
				if err := api.JoinCluster(adminCtx, targets); err != nil && adminCtx.Err() == nil {
					log.Error("could not join the Raft cluster", "err", err)
				}
			}()
		}
		admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", "err", err)
			}
		}()
	}

	if moveCtrl == nil {
		// No admin API: moves recorded in the topology still run (and end);
		// this must be the only proxy, as no other can be asked whether it
		// holds the writes of a cutover.
		ctrl, err := newMoveController(cfg, store, nil, log, reg)
		if err != nil {
			closeAdmin(admin)
			return fmt.Errorf("rebalance: %w", err)
		}
		moveCtrl = ctrl
	}
	moveCtx, stopMoves := context.WithCancel(context.Background())
	movesDone := make(chan struct{})
	go func() { defer close(movesDone); runMoveController(moveCtx, moveCtrl, rstore) }()
	defer func() { stopMoves(); <-movesDone }()

	if rstore != nil && rstore.Restarted() && leaderVersion != nil {
		if err := awaitCatchUp(ctx, rstore, leaderVersion, sigs, cfg.Raft.CatchUpTimeout.D(), log); err != nil {
			closeAdmin(admin)
			log.Info("shardproxy stopped before it caught up with the Raft leader", "reason", err.Error())
			return nil
		}
	}
	if rstore != nil {
		if err := awaitFirstTopology(ctx, store, sigs, topologyWait, log); err != nil {
			closeAdmin(admin)
			if errors.Is(err, errStoppedWaiting) {
				log.Info("shardproxy stopped before it had a topology", "reason", err.Error())
				return nil
			}
			return err
		}
	}
	ln, err := proxy.Listen(cfg.Listen)
	if err != nil {
		closeAdmin(admin)
		return fmt.Errorf("listen: %w", err)
	}

	if admin == nil && cfg.Replicas.FailoverTimeout.D() > 0 {
		log.Warn("replicas.failover_timeout is set but admin_listen is not: automatic failover needs the admin API and stays off")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case <-srv.Ready(): // every listener open (unix_socket_dir's too)
	case err := <-serveErr:
		closeAdmin(admin)
		return fmt.Errorf("serve: %w", err)
	}
	serving.Store(true)
	log.Info("shardproxy listening", "addr", ln.Addr().String(), "unix_socket", addrString(srv.UnixAddr()), "admin", addrString(adminAddr),
		"pool_mode", cfg.Pool.Mode, "pool_size", cfg.Pool.Size, "shards", len(store.Current().ShardNames()),
		"topology_version", store.Current().Version(), "raft", cfg.Raft.Enabled(), "version", version)
	if ready != nil {
		ready(ln.Addr(), adminAddr)
	}

	current := cfg
	for {
		select {
		case err := <-serveErr:
			closeAdmin(admin)
			if errors.Is(err, proxy.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			serving.Store(false)
			return shutdown(srv, admin, current, serveErr, sigs, log, "context done")
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				serving.Store(false)
				return shutdown(srv, admin, current, serveErr, sigs, log, sig.String())
			}
			next, err := reload()
			if err != nil {
				log.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			if next.AdminListen != current.AdminListen {
				log.Warn("admin_listen changed; restart to apply", "running", current.AdminListen, "configured", next.AdminListen)
			}
			if err := srv.Reload(next); err != nil {
				log.Error("reload rejected; keeping the running configuration", "err", err)
				continue
			}
			current = next
			log.Info("configuration reloaded")
		}
	}
}

// shutdown stops the proxy gracefully: clients get up to cfg.ShutdownTimeout
// to finish their transactions, or less if another signal arrives.
func shutdown(srv *proxy.Server, admin *http.Server, cfg config.Config, serveErr <-chan error, sigs <-chan os.Signal, log *slog.Logger, why string) error {
	log.Info("shutting down", "reason", why, "timeout", cfg.ShutdownTimeout.D().String())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig != syscall.SIGHUP {
					log.Warn("second signal: closing remaining clients now", "signal", sig.String())
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish cleanly", "err", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, proxy.ErrServerClosed) {
		log.Warn("serve returned during shutdown", "err", err)
	}
	closeAdmin(admin)
	log.Info("shardproxy stopped")
	return nil
}

func closeAdmin(admin *http.Server) {
	if admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = admin.Shutdown(ctx)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// errStoppedWaiting: a shutdown was asked for while awaitFirstTopology waited.
var errStoppedWaiting = errors.New("stopped while waiting for the Raft topology")

// topologyWait bounds how long a Raft node waits for its first topology
// before it gives up starting.
const topologyWait = 2 * time.Minute

// awaitFirstTopology returns once store holds a topology (version ≥ 1): a
// freshly bootstrapped node seeds it after its first election, a joining
// node receives it once it is a member. Until then the proxy does not
// listen for clients: with an empty topology every table would look
// unsharded and, for example, DDL would reach one shard only. It gives up
// after max, on ctx or on SIGTERM/SIGINT.
func awaitFirstTopology(ctx context.Context, store topology.Store, sigs <-chan os.Signal, max time.Duration, log *slog.Logger) error {
	if store.Current().Version() > 0 {
		return nil
	}
	log.Info("waiting for the Raft topology before accepting clients (version 0: not elected or not joined yet)", "max_wait", max.String())
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	watch := store.Watch(wctx)
	remind := time.NewTicker(10 * time.Second)
	defer remind.Stop()
	for {
		select {
		case snap, ok := <-watch:
			if !ok {
				if ctx.Err() != nil {
					return fmt.Errorf("%w (%v)", errStoppedWaiting, ctx.Err())
				}
				return fmt.Errorf("no Raft topology after %s: this node was neither elected nor joined to a cluster with a leader; check raft.join and that a majority of the voters is up", max)
			}
			if snap.Version() > 0 {
				log.Info("Raft topology received", "version", snap.Version(), "waited", time.Since(start).Round(time.Millisecond).String())
				return nil
			}
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				return fmt.Errorf("%w (%s)", errStoppedWaiting, sig)
			}
		case <-remind.C:
			log.Warn("still waiting for the Raft topology; not accepting clients yet", "waited", time.Since(start).Round(time.Second).String())
		}
	}
}

// awaitCatchUp holds a restarted Raft node (its data dir had Raft state)
// back from accepting clients until it has applied the topology version
// the leader has committed (raftstore.Store.CatchUp), so that it never
// routes by the topology it had before it stopped: a change committed
// meanwhile (a move's flip, a failover) would otherwise reach it only when
// the leader retries it, after up to ~10 s of backoff. It waits at most
// max; then (no leader reachable: no quorum) it logs a warning and returns
// nil, and the node starts with its last topology — the policy under
// quorum loss. max < 0 skips the wait. It returns errStoppedWaiting on ctx
// or SIGTERM/SIGINT.
func awaitCatchUp(ctx context.Context, st *raftstore.Store, leaderVersion raftstore.LeaderVersionFunc, sigs <-chan os.Signal, max time.Duration, log *slog.Logger) error {
	if max < 0 {
		log.Warn("raft.catchup_timeout < 0: accepting clients without checking that this restarted node has the leader's topology",
			"topology_version", st.Current().Version())
		return nil
	}
	log.Info("restarted Raft node: catching up with the leader's topology before accepting clients",
		"topology_version", st.Current().Version(), "max_wait", max.String())
	wctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	type result struct {
		res raftstore.CatchUpResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := st.CatchUp(wctx, leaderVersion, 200*time.Millisecond)
		done <- result{res, err}
	}()
	for {
		select {
		case r := <-done:
			switch {
			case r.err == nil:
				log.Info("caught up with the Raft leader", "leader", r.res.LeaderID, "leader_version", r.res.LeaderVersion,
					"from_version", r.res.StartVersion, "topology_version", r.res.Version, "took", r.res.Took.Round(time.Millisecond).String())
				return nil
			case ctx.Err() != nil:
				return fmt.Errorf("%w (%v)", errStoppedWaiting, ctx.Err())
			case errors.Is(r.err, raftstore.ErrClosed):
				return fmt.Errorf("%w (%v)", errStoppedWaiting, r.err)
			}
			log.Warn("could not confirm the leader's topology; accepting clients with this node's last topology, which may miss changes committed while it was down",
				"topology_version", st.Current().Version(), "waited", max.String(), "err", r.err)
			return nil
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				cancel()
				<-done
				return fmt.Errorf("%w (%s)", errStoppedWaiting, sig)
			}
		}
	}
}
