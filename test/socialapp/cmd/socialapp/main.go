// Command socialapp runs the reference social app (see package
// test/socialapp): its HTTP API, schema migration, a data seeder and a load
// generator. The only setting is the database DSN.
//
//	socialapp migrate --dsn postgres://app@127.0.0.1:6432/app
//	socialapp seed    --dsn ... --users 10000 --posts 100000
//	socialapp serve   --dsn ... --listen 127.0.0.1:8080
//	socialapp load    --url http://127.0.0.1:8080 --users 20 --duration 30s --rate 500
//	socialapp load    --dsn ... (drives the store directly, no HTTP)
//
// The DSN may also come from $SOCIALAPP_DSN (or $DATABASE_URL).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shardproxy/shardproxy/test/socialapp"
)

const usage = `usage: socialapp <command> [flags]

commands:
  serve    --dsn DSN [--listen 127.0.0.1:8080]     serve the JSON HTTP API
  migrate  --dsn DSN                                create the schema (idempotent)
  seed     --dsn DSN [--users 10000] [--posts 100000] [--follows 10] [--workers 4]
  load     --dsn DSN | --url URL [--users 10] [--duration 30s] [--rate 0]

The DSN defaults to $SOCIALAPP_DSN, then $DATABASE_URL. Run "socialapp <command> -h" for flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "socialapp:", err)
		os.Exit(1)
	}
}

// run executes one command; stdout gets results, stderr progress and logs.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("socialapp "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	defDSN := os.Getenv("SOCIALAPP_DSN")
	if defDSN == "" {
		defDSN = os.Getenv("DATABASE_URL")
	}
	dsn := fs.String("dsn", defDSN, "PostgreSQL connection string (URL or key=value)")
	switch cmd {
	case "serve":
		listen := fs.String("listen", "127.0.0.1:8080", "HTTP listen address")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return serve(ctx, *dsn, *listen, stderr)
	case "migrate":
		if err := fs.Parse(args); err != nil {
			return err
		}
		store, err := open(ctx, *dsn)
		if err != nil {
			return err
		}
		defer store.Close()
		if err := store.Migrate(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "schema is up to date")
		return nil
	case "seed":
		var o socialapp.SeedOptions
		fs.IntVar(&o.Users, "users", 10000, "users to create")
		fs.IntVar(&o.Posts, "posts", 100000, "posts to create")
		fs.IntVar(&o.FollowsPerUser, "follows", 10, "average follows per user")
		fs.Float64Var(&o.LikesPerPost, "likes", 2, "average likes per post")
		fs.IntVar(&o.Comments, "comments", 0, "comments to create (default posts/5)")
		fs.IntVar(&o.Workers, "workers", 4, "concurrent connections")
		fs.IntVar(&o.BatchRows, "batch", 500, "rows per INSERT")
		seed := fs.Uint64("seed", 0, "random seed (0 = random)")
		migrate := fs.Bool("migrate", true, "create the schema first if needed")
		if err := fs.Parse(args); err != nil {
			return err
		}
		o.Seed = *seed
		store, err := open(ctx, *dsn)
		if err != nil {
			return err
		}
		defer store.Close()
		if *migrate {
			if err := store.Migrate(ctx); err != nil {
				return err
			}
		}
		bar := socialapp.NewProgressBar(stderr)
		o.Progress = bar.Update
		res, err := store.Seed(ctx, o)
		bar.Finish()
		if err != nil {
			return err
		}
		if res.AnalyzeErr != nil {
			fmt.Fprintf(stderr, "warning: ANALYZE after seeding failed: %v\n", res.AnalyzeErr)
		}
		fmt.Fprintf(stdout, "seeded %d users, %d follows, %d posts, %d likes, %d comments in %s\n",
			res.Users, res.Follows, res.Posts, res.Likes, res.Comments, res.Elapsed.Round(time.Millisecond))
		return nil
	case "load":
		var o socialapp.LoadOptions
		url := fs.String("url", "", "drive the HTTP API at this base URL instead of the database")
		fs.IntVar(&o.Users, "users", 10, "simulated users acting at once")
		fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to run")
		fs.Float64Var(&o.Rate, "rate", 0, "target requests per second in total (0 = as fast as possible)")
		seed := fs.Uint64("seed", 0, "random seed (0 = random)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		o.Seed = *seed
		var client socialapp.Client
		if *url != "" {
			client = &socialapp.HTTPClient{BaseURL: *url}
		} else {
			store, err := open(ctx, withPoolSize(*dsn, o.Users))
			if err != nil {
				return err
			}
			defer store.Close()
			client = socialapp.StoreClient{S: store}
		}
		target := *url
		if target == "" {
			target = "the database directly"
		}
		fmt.Fprintf(stderr, "load: %d users for %s against %s\n", o.Users, o.Duration, target)
		rep, err := socialapp.Load(ctx, client, o)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, rep.String())
		if rep.Errors > 0 {
			return fmt.Errorf("%d requests failed", rep.Errors)
		}
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func open(ctx context.Context, dsn string) (*socialapp.Store, error) {
	if dsn == "" {
		return nil, errors.New("--dsn is required (or set SOCIALAPP_DSN)")
	}
	return socialapp.Open(ctx, dsn)
}

// withPoolSize adds pool_max_conns=n to a DSN that does not set it, so each
// simulated user can have a connection.
func withPoolSize(dsn string, n int) string {
	if dsn == "" || strings.Contains(dsn, "pool_max_conns") {
		return dsn
	}
	if strings.Contains(dsn, "://") {
		if strings.Contains(dsn, "?") {
			return fmt.Sprintf("%s&pool_max_conns=%d", dsn, n)
		}
		return fmt.Sprintf("%s?pool_max_conns=%d", dsn, n)
	}
	return fmt.Sprintf("%s pool_max_conns=%d", dsn, n)
}

func serve(ctx context.Context, dsn, listen string, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	store, err := open(ctx, dsn)
	if err != nil {
		return err
	}
	defer store.Close()
	srv := &http.Server{Addr: listen, Handler: socialapp.NewAPI(store, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("socialapp listening", "addr", listen)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
