package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/test/socialapp"
)

// demoOptions are the flags of "shardproxy dev" that run the reference
// social app (test/socialapp) in the same process, in front of the proxy:
// the way "make demo" shows the system.
type demoOptions struct {
	enabled      bool
	listen       string
	users, posts int
}

func addDemoFlags(f *pflag.FlagSet, o *demoOptions) {
	f.BoolVar(&o.enabled, "socialapp", false, "also run the reference social app: its sharding section (unless the config has one), schema and seed data through the proxy, and its HTTP API")
	f.StringVar(&o.listen, "app-listen", "127.0.0.1:8080", "HTTP address of the social app (with --socialapp)")
	f.IntVar(&o.users, "seed-users", 10000, "users to seed when the app's database is empty (with --socialapp)")
	f.IntVar(&o.posts, "seed-posts", 100000, "posts to seed when the app's database is empty (with --socialapp)")
}

func (o demoOptions) validate() error {
	if !o.enabled {
		return nil
	}
	if o.users < 1 || o.posts < 0 {
		return fmt.Errorf("--seed-users must be at least 1 and --seed-posts not negative, got %d and %d", o.users, o.posts)
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--app-listen: %w", err)
	}
	return nil
}

// demoApp is the social app running against the proxy. Its setup (schema,
// seed, HTTP listener) runs in the background once the proxy accepts
// clients; stop ends it and must be called before the proxy shuts down,
// so that its connections do not hold the shutdown up.
type demoApp struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // why the app gave up, set before done closes; nil after stop

	mu    sync.Mutex
	store *socialapp.Store
	srv   *http.Server
}

// demoEnv is where the app finds the proxy.
type demoEnv struct {
	proxy, admin net.Addr // admin is nil when the admin listener is off
	adminToken   string
	raft         bool // the topology comes from Raft (seeded after start)
}

// startDemoApp prepares and serves the app in the background: it waits for
// the topology, connects through the proxy, creates the schema, seeds
// unless users exist, serves the API and prints what to try on out. failed
// is called (once, from the background goroutine) when the app cannot run.
func startDemoApp(o demoOptions, env demoEnv, out io.Writer, log *slog.Logger, failed func()) *demoApp {
	ctx, cancel := context.WithCancel(context.Background())
	a := &demoApp{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		err := a.run(ctx, o, env, out, log)
		if err != nil && ctx.Err() == nil {
			a.err = err
			log.Error("the social app stopped; shutting down", "err", err)
			a.closeStore() // so the proxy's shutdown need not wait for it
			failed()
		}
	}()
	return a
}

func (a *demoApp) run(ctx context.Context, o demoOptions, env demoEnv, out io.Writer, log *slog.Logger) error {
	if err := waitForTopology(ctx, env); err != nil {
		return err
	}
	dsn := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", env.proxy)
	store, err := socialapp.Open(ctx, dsn+"&pool_max_conns=16&application_name=socialapp")
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.store = store
	a.mu.Unlock()
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	st, err := store.Stats(ctx)
	if err != nil {
		return err
	}
	if st.Users > 0 {
		fmt.Fprintf(out, "social app: reusing the data already there (%d users, %d posts)\n", st.Users, st.Posts)
	} else {
		fmt.Fprintf(out, "social app: seeding %d users and %d posts through the proxy ...\n", o.users, o.posts)
		bar := socialapp.NewProgressBar(out)
		res, err := store.Seed(ctx, socialapp.SeedOptions{Users: o.users, Posts: o.posts, Progress: bar.Update})
		bar.Finish()
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		fmt.Fprintf(out, "social app: seeded %d users, %d follows, %d posts, %d likes, %d comments in %s\n",
			res.Users, res.Follows, res.Posts, res.Likes, res.Comments, res.Elapsed.Round(time.Second))
		if st, err = store.Stats(ctx); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--app-listen: %w", err)
	}
	srv := &http.Server{Handler: socialapp.NewAPI(store, log.With("component", "socialapp")), ReadHeaderTimeout: 10 * time.Second}
	a.mu.Lock()
	if ctx.Err() != nil { // stopped meanwhile
		a.mu.Unlock()
		ln.Close()
		return nil
	}
	a.srv = srv
	a.mu.Unlock()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	printDemoBanner(out, env.proxy, env.admin, ln.Addr(), st)
	select {
	case err := <-serveErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("social app HTTP server: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// waitForTopology waits until a Raft-replicated topology has been seeded
// (version ≥ 1 with shards): a newly bootstrapped node accepts clients
// before its first leader election, and DDL sent then would reach only the
// default shard. It asks the admin API; without one it cannot tell and
// returns at once.
func waitForTopology(ctx context.Context, env demoEnv) error {
	if !env.raft || env.admin == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl := &admin.Client{BaseURL: "http://" + env.admin.String(), Token: env.adminToken, HTTP: &http.Client{Timeout: 5 * time.Second}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var st admin.Status
		err := cl.Get(ctx, "/v1/status", nil, &st)
		if err == nil && st.TopologyVersion >= 1 && len(st.Shards) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Raft topology was not ready within a minute (last status error: %v)", err)
		case <-tick.C:
		}
	}
}

// stop ends seeding or serving and closes the app's connections; it
// returns once the background goroutine is done. Safe to call more than
// once.
func (a *demoApp) stop() {
	a.cancel()
	a.mu.Lock()
	srv := a.srv
	a.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	<-a.done
	a.closeStore()
}

func (a *demoApp) closeStore() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.store != nil {
		a.store.Close()
		a.store = nil
	}
}

// printDemoBanner says what to try once the app serves.
func printDemoBanner(w io.Writer, proxyAddr, adminAddr, appAddr net.Addr, st socialapp.Stats) {
	host, port, _ := net.SplitHostPort(proxyAddr.String())
	app := "http://" + appAddr.String()
	u := st.MinUserID
	var b strings.Builder
	fmt.Fprintf(&b, "\nthe social app is ready at %s (%d users, %d posts, sharded by user over the shards above)\n\n", app, st.Users, st.Posts)
	fmt.Fprintf(&b, "  try the API:\n")
	fmt.Fprintf(&b, "    curl %s/users/%d                  # a profile (followers are counted on every shard)\n", app, u)
	fmt.Fprintf(&b, "    curl '%s/users/%d/timeline?limit=5'  # posts of followed users, merged newest first\n", app, u)
	fmt.Fprintf(&b, "    curl '%s/trending?hours=24&limit=5'\n", app)
	fmt.Fprintf(&b, "    curl '%s/users?prefix=Ada&limit=5'\n", app)
	fmt.Fprintf(&b, "    curl -X POST %s/users -d '{\"name\":\"New User\",\"email\":\"new@example.com\",\"country_code\":\"SE\"}'\n", app)
	fmt.Fprintf(&b, "    bin/socialapp load --url %s --users 10 --duration 20s   # load: throughput, p50/p95/p99, errors\n\n", app)
	fmt.Fprintf(&b, "  try SQL through the proxy:\n")
	fmt.Fprintf(&b, "    psql -h %s -p %s -U postgres postgres\n", host, port)
	fmt.Fprintf(&b, "      SELECT count(*) FROM posts;                        -- summed over every shard\n")
	fmt.Fprintf(&b, "      SET shardproxy.show_routes = on;                   -- a NOTICE says where each statement went\n")
	fmt.Fprintf(&b, "      SELECT * FROM posts WHERE author_id = %d ORDER BY created_at DESC LIMIT 3;\n", u)
	fmt.Fprintf(&b, "      EXPLAIN SELECT author_id, count(*) FROM posts GROUP BY 1 ORDER BY 2 DESC LIMIT 5;\n")
	if adminAddr != nil {
		fmt.Fprintf(&b, "\n  try the control plane:\n")
		fmt.Fprintf(&b, "    bin/shardctl --server http://%s status\n", adminAddr)
		fmt.Fprintf(&b, "    bin/shardctl --server http://%s key users %d    # which shard holds user %d\n", adminAddr, u, u)
		fmt.Fprintf(&b, "    curl -s http://%s/metrics | grep ^shardproxy_\n", adminAddr)
	}
	fmt.Fprintf(&b, "\n  stop everything: Ctrl-C (or make demo-stop)\n\n")
	io.WriteString(w, b.String())
}
