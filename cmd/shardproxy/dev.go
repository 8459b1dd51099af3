package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
)

// devOptions are the flags of "shardproxy dev".
type devOptions struct {
	shards, replicas int
	dataDir          string
	listen, admin    string
	configPath       string
	cpuQuota         float64
	pgPort           int
	cluster          clusterFlags
	demo             demoOptions
}

const pidFileName = "shardproxy.pid"

func newDevCommand() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start local PostgreSQL servers and the proxy in front of them",
		Long: `dev starts N PostgreSQL primaries, each with M streaming replicas, from the
installed server binaries (as the postgres OS user when run as root), and
runs the proxy in front of them. Loopback clients are trusted, so
"psql -h 127.0.0.1 -p 6432 -U postgres postgres" connects.

Data lives under --data and survives a restart with the same directory.
Ctrl-C or SIGTERM stops the proxy and every server it started.

With --config, users, auth and pool settings come from that file; its
shards are replaced by the local servers.

With --socialapp, the reference social app runs too (what "make demo"
does): the proxy gets the app's sharding section (unless the config has
one), the app creates its schema and, when its database is empty, seeds
--seed-users users and --seed-posts posts through the proxy, then serves its
HTTP API on --app-listen. Ctrl-C stops the app first, then the proxy and
the servers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.shards, "shards", 1, "number of shards (primaries)")
	f.IntVar(&o.replicas, "replicas", 0, "streaming replicas per primary")
	f.StringVar(&o.dataDir, "data", "./data", "directory for the servers' data (kept between runs)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:6432", "client address of the proxy")
	f.StringVar(&o.admin, "admin", "127.0.0.1:9930", `metrics/admin HTTP address ("" = off)`)
	f.StringVar(&o.configPath, "config", "", "config file for users, auth and pool settings (shards are replaced)")
	f.IntVar(&o.pgPort, "pg-port", 0, "first PostgreSQL port: the servers get N, N+1, ... (shard0, its replicas, shard1, ...); 0 = free ports from 61000 up, the same again on a rerun when free. Fixed ports keep a Raft topology's shard addresses valid across runs")
	f.Float64Var(&o.cpuQuota, "cpu-quota", 0, "CPU quota per PostgreSQL instance in cores, e.g. 0.25 (0 = none; needs cgroup v1)")
	addClusterFlags(f, &o.cluster)
	addDemoFlags(f, &o.demo)
	return cmd
}

func runDev(cmd *cobra.Command, o devOptions) error {
	if o.shards < 1 {
		return fmt.Errorf("--shards must be at least 1, got %d", o.shards)
	}
	if o.replicas < 0 {
		return fmt.Errorf("--replicas must not be negative, got %d", o.replicas)
	}
	if o.cpuQuota < 0 {
		return fmt.Errorf("--cpu-quota must not be negative, got %g", o.cpuQuota)
	}
	if last := o.pgPort + o.shards*(1+o.replicas) - 1; o.pgPort < 0 || o.pgPort > 0 && (o.pgPort < 1024 || last > 65535) {
		return fmt.Errorf("--pg-port %d: the servers need ports %d-%d, which must lie in 1024-65535", o.pgPort, o.pgPort, last)
	}
	if err := o.demo.validate(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("--data: %w", err)
	}

	// Validate everything that does not need the servers before starting them.
	cfg, err := devBaseConfig(o.configPath)
	if err != nil {
		return err
	}
	if o.configPath == "" || cmd.Flags().Changed("listen") {
		cfg.Listen = o.listen
	}
	if o.configPath == "" || cmd.Flags().Changed("admin") || cfg.AdminListen == "" && !cmd.Flags().Changed("admin") {
		cfg.AdminListen = o.admin
	}
	cfg.Auth.TrustLoopback = true
	o.cluster.apply(cmd, &cfg)
	if o.demo.enabled && len(cfg.Sharding.Tables) == 0 {
		spec, err := socialapp.ShardingSpec()
		if err != nil {
			return err
		}
		cfg.Sharding = spec
	}
	// Judge the flags before starting servers (dev supplies the shards).
	probe := cfg
	probe.Shards = []config.Shard{{Name: "dev", Primary: config.Endpoint{Host: "127.0.0.1", Port: 5432}}}
	if err := probe.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}

	pidPath := filepath.Join(dataDir, pidFileName)
	if err := claimPIDFile(pidPath); err != nil {
		return err
	}
	defer os.Remove(pidPath)

	log, level := newLogger(cfg)
	sigs := notifySignals()
	defer signal.Stop(sigs)

	fmt.Fprintf(cmd.OutOrStdout(), "starting %d shard(s) with %d replica(s) each in %s ...\n", o.shards, o.replicas, dataDir)
	cluster, err := startCluster(sigs, pgcluster.Options{
		Shards:   o.shards,
		Replicas: o.replicas,
		DataDir:  dataDir,
		CPUQuota: o.cpuQuota,
		BasePort: o.pgPort,
		Logger:   log,
	})
	if errors.Is(err, errInterrupted) {
		log.Info("interrupted while starting PostgreSQL")
		return nil
	}
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer func() {
		log.Info("stopping PostgreSQL servers")
		if err := cluster.Stop(); err != nil {
			log.Error("stopping PostgreSQL servers", "err", err)
		}
	}()

	shards := clusterShards(cluster)
	cfg.Shards = shards
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}

	reload := func() (config.Config, error) {
		next, err := devBaseConfig(o.configPath)
		if err != nil {
			return config.Config{}, err
		}
		next.Listen, next.AdminListen = cfg.Listen, cfg.AdminListen
		next.Raft, next.AdminToken = cfg.Raft, cfg.AdminToken
		next.Auth.TrustLoopback = true
		next.Shards = shards
		if len(next.Sharding.Tables) == 0 {
			next.Sharding = cfg.Sharding
		}
		next.ApplyDefaults()
		if err := next.Validate(); err != nil {
			return config.Config{}, fmt.Errorf("config: %w", err)
		}
		setLevel(level, next)
		return next, nil
	}
	out := cmd.OutOrStdout()
	if !o.demo.enabled {
		return runProxy(context.Background(), cfg, log, sigs, reload, func(client, admin net.Addr) {
			printDevBanner(out, cfg.Pool.Mode, client, admin, cluster, pidPath)
		})
	}

	// With the app: a stop signal stops the app before the proxy sees it,
	// and an app that cannot run stops everything.
	var app *demoApp
	var appMu sync.Mutex
	stopApp := func() {
		appMu.Lock()
		a := app
		appMu.Unlock()
		if a != nil {
			a.stop()
		}
	}
	relay := make(chan os.Signal, 4)
	relayDone := make(chan struct{})
	defer close(relayDone)
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig != syscall.SIGHUP {
					stopApp()
				}
				relay <- sig
			case <-relayDone:
				return
			}
		}
	}()
	err = runProxy(context.Background(), cfg, log, relay, reload, func(client, admin net.Addr) {
		printDevBanner(out, cfg.Pool.Mode, client, admin, cluster, pidPath)
		appMu.Lock()
		env := demoEnv{proxy: client, admin: admin, adminToken: cfg.AdminToken, raft: cfg.Raft.Enabled()}
		app = startDemoApp(o.demo, env, out, log, func() {
			select {
			case relay <- syscall.SIGTERM:
			default:
			}
		})
		appMu.Unlock()
	})
	stopApp()
	if err == nil && app != nil && app.err != nil {
		err = fmt.Errorf("social app: %w", app.err)
	}
	return err
}

var errInterrupted = errors.New("interrupted")

// startCluster starts the servers; SIGTERM/SIGINT on sigs meanwhile aborts
// the start (pgcluster stops what it started) and yields errInterrupted.
// Signals that arrive after the servers are up stay in sigs for runProxy.
func startCluster(sigs <-chan os.Signal, opts pgcluster.Options) (*pgcluster.Cluster, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopWatch, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case sig := <-sigs:
				if sig != syscall.SIGHUP {
					cancel()
					return
				}
			case <-stopWatch:
				return
			}
		}
	}()
	cluster, err := pgcluster.Start(ctx, opts)
	close(stopWatch)
	<-watchDone
	if ctx.Err() != nil {
		if cluster != nil {
			_ = cluster.Stop()
		}
		return nil, errInterrupted
	}
	return cluster, err
}

// devBaseConfig returns the defaults, or the file's settings when path is
// set. The file may leave shards out: dev supplies them.
func devBaseConfig(path string) (config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Config{}, fmt.Errorf("config: %w", err)
	}
	var c config.Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return config.Config{}, fmt.Errorf("%s: config: %w", path, err)
	}
	c.ApplyDefaults()
	// Validate with a placeholder shard so only the file's own keys are judged.
	probe := c
	probe.Shards = []config.Shard{{Name: "dev", Primary: config.Endpoint{Host: "127.0.0.1", Port: 5432}}}
	probe.Auth.TrustLoopback = true
	if err := probe.Validate(); err != nil {
		return config.Config{}, fmt.Errorf("%s: config: %w", path, err)
	}
	return c, nil
}

// clusterShards turns the started servers into config shards, named like
// the cluster's shards (shard0, shard1, ...).
func clusterShards(c *pgcluster.Cluster) []config.Shard {
	shards := make([]config.Shard, 0, len(c.Shards))
	for _, s := range c.Shards {
		sh := config.Shard{
			Name:    s.Name,
			Primary: config.Endpoint{Host: s.Primary.Host, Port: s.Primary.Port},
		}
		for _, r := range s.Replicas {
			sh.Replicas = append(sh.Replicas, config.Endpoint{Host: r.Host, Port: r.Port})
		}
		shards = append(shards, sh)
	}
	return shards
}

// claimPIDFile writes our PID to path, refusing when a live process already
// holds it (a second dev run on the same data directory).
func claimPIDFile(path string) error {
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pid != os.Getpid() {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("shardproxy dev is already running on %s (pid %d); stop it with: kill %d", filepath.Dir(path), pid, pid)
			}
		}
	}
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func printDevBanner(w io.Writer, mode string, client, admin net.Addr, c *pgcluster.Cluster, pidPath string) {
	host, port, _ := net.SplitHostPort(client.String())
	var b strings.Builder
	fmt.Fprintf(&b, "\nshardproxy is ready (version %s; %s pooling; loopback clients are trusted)\n\n", version, mode)
	fmt.Fprintf(&b, "  connect:   psql -h %s -p %s -U postgres postgres\n", host, port)
	fmt.Fprintf(&b, "  url:       postgres://postgres@%s/postgres?sslmode=disable\n", client)
	if admin != nil {
		fmt.Fprintf(&b, "  metrics:   http://%s/metrics\n", admin)
		fmt.Fprintf(&b, "  admin:     shardctl --server http://%s status\n", admin)
	}
	fmt.Fprintf(&b, "\n  shards (direct, bypassing the proxy):\n")
	for _, s := range c.Shards {
		fmt.Fprintf(&b, "    %-18s %s  (psql -h %s -p %d -U postgres postgres)\n", s.Primary.Name, s.Primary.Addr(), s.Primary.Host, s.Primary.Port)
		for _, r := range s.Replicas {
			fmt.Fprintf(&b, "    %-18s %s  (streaming replica)\n", r.Name, r.Addr())
		}
	}
	fmt.Fprintf(&b, "\n  stop:      Ctrl-C, or kill $(cat %s)\n\n", pidPath)
	io.WriteString(w, b.String())
}
